// Validators for textual secrets: email addresses, AWS access key ids, JWTs
// and PEM private keys. Same contract as numeric.ts: return the end of the
// match (exclusive) or -1, and store a start before the trigger in M.start.
import { at, ALNUM, B64URL, CT, DOT, LABEL, LOCAL, LOWER, UPPER, DIGIT } from './bytes.js';
import { M } from './numeric.js';

const MAX_LOCAL = 64;
const MAX_DOMAIN = 253;

/**
 * Email around the '@' at p. Local part: letters, digits, ! # $ % & * + - / = ? ^ _ ~,
 * UTF-8 characters (RFC 6531) and single dots (not leading/trailing/doubled),
 * at most 64 bytes; this is RFC 5322 atext minus ' ` { | }, which delimit
 * addresses in SQL, JSON and templates. Domain: labels of [A-Za-z0-9-] (1–63,
 * no leading/trailing '-'), at least two labels, TLD of >= 2 letters, at most
 * 253 bytes. Quoted local parts, IP-literal domains and non-ASCII (IDN)
 * domains are not matched.
 */
export function matchEmail(buf: Buffer, p: number, lo: number, hi: number): number {
  // local part, backwards
  let s = p;
  while (s > lo && p - s <= MAX_LOCAL) {
    const c = buf[s - 1]!;
    if ((CT[c]! & LOCAL) !== 0) s--;
    else if (c === DOT && s - 1 > lo && buf[s - 2] !== DOT && s < p) s--;
    else break;
  }
  while (s < p && buf[s] === DOT) s++;
  if (s === p || buf[p - 1] === DOT || p - s > MAX_LOCAL) return -1;
  // domain, forwards
  let j = p + 1;
  let labels = 0;
  let tldStart = j;
  for (;;) {
    const ls = j;
    while (j < hi && (CT[buf[j]!]! & LABEL) !== 0) j++;
    if (j === ls || j - ls > 63 || buf[ls] === 0x2d || buf[j - 1] === 0x2d) return -1;
    labels++;
    tldStart = ls;
    if (j + 1 < hi && buf[j] === DOT && (CT[buf[j + 1]!]! & LABEL) !== 0) {
      j++;
      continue;
    }
    break;
  }
  if (labels < 2 || j - p - 1 > MAX_DOMAIN || j - tldStart < 2) return -1;
  for (let k = tldStart; k < j; k++) if ((CT[buf[k]!]! & (UPPER | LOWER)) === 0) return -1;
  const after = at(buf, j, lo, hi);
  if (after === 0x5f || after === 0x40) return -1; // "_" or a second "@"
  M.start = s;
  return j;
}

/** A letter, digit or '_' (c = -1 outside the value is not). */
function isWord(c: number): boolean {
  return c >= 0 && ((CT[c]! & ALNUM) !== 0 || c === 0x5f);
}

/**
 * AWS access key id at p: AKIA, ASIA, ABIA or ACCA followed by 16 of [A-Z0-9],
 * on word boundaries (no letter, digit or '_' on either side).
 */
export function matchAwsKey(buf: Buffer, p: number, lo: number, hi: number): number {
  if (p + 20 > hi || isWord(at(buf, p - 1, lo, hi))) return -1;
  const b = buf[p + 1]!;
  const c = buf[p + 2]!;
  const d = buf[p + 3]!;
  const ok =
    (b === 0x4b && c === 0x49 && d === 0x41) || // KIA
    (b === 0x53 && c === 0x49 && d === 0x41) || // SIA
    (b === 0x42 && c === 0x49 && d === 0x41) || // BIA
    (b === 0x43 && c === 0x43 && d === 0x41); // CCA
  if (!ok) return -1;
  for (let i = p + 4; i < p + 20; i++) if ((CT[buf[i]!]! & (UPPER | DIGIT)) === 0) return -1;
  if (isWord(at(buf, p + 20, lo, hi))) return -1;
  return p + 20;
}

/**
 * JWT starting with "eyJ" at p: 3 (JWS) or 5 (JWE) base64url segments joined
 * by '.', total >= 30 bytes, the first segment decoding to a JSON object with
 * a string "alg". The last JWS segment may be empty (alg "none"). Not preceded
 * by a base64url character or '.'.
 */
export function matchJwt(buf: Buffer, p: number, lo: number, hi: number): number {
  const before = at(buf, p - 1, lo, hi);
  if (before >= 0 && ((CT[before]! & B64URL) !== 0 || before === DOT)) return -1;
  const len = [0, 0, 0, 0, 0, 0];
  let j = p;
  let segs = 0;
  for (;;) {
    const s = j;
    while (j < hi && (CT[buf[j]!]! & B64URL) !== 0) j++;
    len[segs++] = j - s;
    if (segs === 6 || j >= hi || buf[j] !== DOT) break;
    j++;
  }
  if ((segs === 4 || segs === 6) && len[segs - 1] === 0) {
    segs--; // a trailing '.' ends a sentence, not a segment
    j--;
  }
  if (segs === 6) return -1; // more dotted parts: not a token
  // JWS: header.payload.signature (signature empty for alg "none");
  // JWE: header.key.iv.ciphertext.tag (key empty for "dir").
  const ok = segs === 3 ? len[1]! > 0 : segs === 5 && len[2]! > 0 && len[3]! > 0 && len[4]! > 0;
  if (!ok || j - p < 30) return -1;
  if (!headerHasAlg(buf, p, p + len[0]!)) return -1;
  return j;
}

export function headerHasAlg(buf: Buffer, s: number, e: number): boolean {
  if (e - s > 4096) return false;
  try {
    const h: unknown = JSON.parse(Buffer.from(buf.toString('latin1', s, e), 'base64url').toString('utf8'));
    return typeof h === 'object' && h !== null && typeof (h as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

const BEGIN = Buffer.from('-----BEGIN ', 'latin1');
const KEY_TAIL = 'PRIVATE KEY';

/**
 * PEM private key at the "-----BEGIN " at p: a header
 * "-----BEGIN <label>-----" where <label> (A–Z, 0–9, spaces, <= 40 bytes) ends
 * in "PRIVATE KEY" (RSA, EC, DSA, OPENSSH, ENCRYPTED, plain PKCS#8) or
 * "PRIVATE KEY BLOCK" (PGP), through the matching "-----END <label>-----".
 * Without a matching END in the value, the finding runs to the value's end.
 */
export function matchPrivateKey(buf: Buffer, p: number, lo: number, hi: number): number {
  if (p + BEGIN.length + KEY_TAIL.length + 5 > hi) return -1;
  for (let i = 0; i < BEGIN.length; i++) if (buf[p + i] !== BEGIN[i]) return -1;
  const ls = p + BEGIN.length;
  let j = ls;
  while (j < hi && j - ls <= 40 && (buf[j] === 0x20 || (CT[buf[j]!]! & (UPPER | DIGIT)) !== 0)) j++;
  if (j + 5 > hi || buf.toString('latin1', j, j + 5) !== '-----') return -1;
  const label = buf.toString('latin1', ls, j);
  if (!label.endsWith(KEY_TAIL) && !label.endsWith(`${KEY_TAIL} BLOCK`)) return -1;
  const endMarker = `-----END ${label}-----`;
  const e = buf.subarray(j + 5, hi).indexOf(endMarker, 0, 'latin1');
  return e < 0 ? hi : j + 5 + e + endMarker.length;
}
