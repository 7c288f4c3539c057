// Byte classes for the detectors. Everything here works on raw UTF-8 bytes:
// bytes >= 0x80 (parts of multibyte characters) are in no class but LOCAL
// (email local parts may be UTF-8), so elsewhere they act as boundaries.

export const DIGIT = 1;
export const UPPER = 2;
export const LOWER = 4;
export const ALNUM = DIGIT | UPPER | LOWER;
/** base64url alphabet: [A-Za-z0-9_-] */
export const B64URL = 8;
/** email local part, without '.': letters, digits, ! # $ % & * + - / = ? ^ _ ~ and UTF-8 */
export const LOCAL = 16;
/** domain label: [A-Za-z0-9-] */
export const LABEL = 32;
/** separators that may sit between digit groups of a number: space - . ( ) */
export const NUMSEP = 64;

export const CT = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) CT[c] = DIGIT | B64URL | LOCAL | LABEL;
for (let c = 0x41; c <= 0x5a; c++) CT[c] = UPPER | B64URL | LOCAL | LABEL;
for (let c = 0x61; c <= 0x7a; c++) CT[c] = LOWER | B64URL | LOCAL | LABEL;
CT[0x2d] = B64URL | LOCAL | LABEL | NUMSEP; // -
CT[0x5f] = B64URL | LOCAL; // _
for (const ch of '!#$%&*+/=?^~') CT[ch.charCodeAt(0)] |= LOCAL;
for (let c = 0x80; c <= 0xff; c++) CT[c] = LOCAL; // UTF-8 local parts (RFC 6531)
for (const ch of ' .()') CT[ch.charCodeAt(0)] |= NUMSEP;

export const SP = 0x20;
export const DASH = 0x2d;
export const DOT = 0x2e;
export const PLUS = 0x2b;
export const LPAREN = 0x28;
export const RPAREN = 0x29;

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The byte at p, or -1 outside [lo, hi). Out-of-range reads act as boundaries. */
export function at(buf: Buffer, p: number, lo: number, hi: number): number {
  return p >= lo && p < hi ? buf[p]! : -1;
}

export const CONT_DOT = 1;
export const CONT_DASH = 2;

/**
 * True when a number continues past its edge: p is the first byte outside the
 * number in direction dir (+1 right, -1 left). It continues when a letter or
 * digit touches it, or a '.' (CONT_DOT) or '-' (CONT_DASH) followed by a digit
 * does ("3.14", "1-555-…", "10.0.0.1").
 */
export function numberContinues(buf: Buffer, p: number, dir: 1 | -1, lo: number, hi: number, seps: number): boolean {
  const c = at(buf, p, lo, hi);
  if (c < 0) return false;
  if ((CT[c]! & ALNUM) !== 0) return true;
  if (!((c === DOT && (seps & CONT_DOT) !== 0) || (c === DASH && (seps & CONT_DASH) !== 0))) return false;
  const d = at(buf, p + dir, lo, hi);
  return d >= 0 && isDigit(d);
}

/**
 * Copies src[s, e) to dst at o and returns the offset after it. A byte loop for short spans, where
 * Buffer#copy's call overhead costs more than the copy (values, row spans of the masker).
 */
export function copyBytes(src: Buffer, s: number, e: number, dst: Buffer, o: number): number {
  if (e - s > 64) return o + src.copy(dst, o, s, e);
  for (let i = s; i < e; i++) dst[o++] = src[i]!;
  return o;
}
