// Masking strategies: what replaces a whole value or one finding in a value.
//
// Output formats (UTF-8):
//   redact   whole value (no detector): "****"
//            finding / with detector:   "[REDACTED:<detector>]"  e.g. [REDACTED:credit_card]
//   partial  credit_card, us_ssn, phone: every digit but the last 4 becomes '*',
//              separators and '+' stay: "**** **** **** 1111", "***-**-6789", "+* (***) ***-4567"
//            email:  "****@" + domain: "****@example.com"
//            iban:   every letter/digit but the last 4 becomes '*': "**** **** **** **** **30 00"
//            private_key: as redact (nothing of a key is kept)
//            anything else (aws_access_key, jwt, custom, whole values): "****" + the
//              last 4 characters when the value has >= 8 characters, else "****".
//              A whole value (no detector) that looks like an email or like a
//              number (only digits and + ( ) - . / space, >= 8 digits) gets the
//              email / digit form above.
//   hash     "h:" + the first 12 hex chars (48 bits) of HMAC-SHA256(hmacKey, v),
//            where v is the value normalised per detector so the same datum gives
//            the same token in every spelling: digits only for credit_card,
//            us_ssn and phone; uppercase letters and digits for iban; ASCII
//            lowercase for email; the bytes as they are otherwise.
//   null     maskValue returns null (SQL NULL); inside text maskFindings uses
//            the redact marker.
// Returned Buffers may be shared (markers and hash tokens are cached): treat
// them as read-only.
import { createHmac } from 'node:crypto';
import type { Finding, Strategy } from './types.js';

export interface MaskContext {
  hmacKey: Buffer;
}

const STAR = 0x2a;
const STARS = Buffer.from('****');
const KEEP = 4;
const markers = new Map<string, Buffer>();

/** "[REDACTED:<detector>]" as UTF-8 (cached). */
export function redactMarker(detector: string): Buffer {
  let m = markers.get(detector);
  if (m === undefined) {
    m = Buffer.from(`[REDACTED:${detector}]`);
    if (markers.size < 1024) markers.set(detector, m);
  }
  return m;
}

/** The masked replacement of one value (detector undefined) or one finding. */
export function maskValue(strategy: Strategy, value: Buffer, ctx: MaskContext, detector?: string): Buffer | null {
  switch (strategy) {
    case 'null':
      return null;
    case 'redact':
      return detector === undefined ? STARS : redactMarker(detector);
    case 'hash':
      return hashToken(value, ctx, detector);
    case 'partial':
      return partial(value, detector);
    default:
      throw new Error(`masking: unknown strategy ${JSON.stringify(strategy)}`);
  }
}

/**
 * Rewrites the findings (offsets relative to start, sorted, non-overlapping)
 * inside buf[start, end). Returns buf itself when findings is empty; otherwise
 * a new Buffer holding only the rewritten value.
 */
export function maskFindings(
  buf: Buffer,
  start: number,
  end: number,
  findings: readonly Finding[],
  strategyFor: (detector: string) => Strategy,
  ctx: MaskContext,
): Buffer {
  if (findings.length === 0) return buf;
  const reps: Buffer[] = new Array<Buffer>(findings.length);
  let total = end - start;
  let cur = start;
  for (let k = 0; k < findings.length; k++) {
    const f = findings[k]!;
    const s = start + f.start;
    const e = start + f.end;
    if (s < cur || e <= s || e > end) {
      throw new RangeError('masking: findings must be sorted, non-overlapping and inside the range');
    }
    const strategy = strategyFor(f.detector);
    const rep =
      strategy === 'redact' || strategy === 'null'
        ? redactMarker(f.detector)
        : (maskValue(strategy, buf.subarray(s, e), ctx, f.detector) ?? redactMarker(f.detector));
    reps[k] = rep;
    total += rep.length - (e - s);
    cur = e;
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  cur = start;
  for (let k = 0; k < findings.length; k++) {
    const f = findings[k]!;
    o = copyBytes(buf, cur, start + f.start, out, o);
    o = copyBytes(reps[k]!, 0, reps[k]!.length, out, o);
    cur = start + f.end;
  }
  copyBytes(buf, cur, end, out, o);
  return out;
}

/** Copies src[s, e) to dst at o, returns the new offset (a loop beats a native call for short runs). */
function copyBytes(src: Buffer, s: number, e: number, dst: Buffer, o: number): number {
  if (e - s > 64) return o + src.copy(dst, o, s, e);
  for (let i = s; i < e; i++) dst[o++] = src[i]!;
  return o;
}

// ---- hash ----

// An HMAC costs ~3 µs (OpenSSL context set-up), so tokens of short values are
// cached per key (FIFO, bounded): repeated values (joins, group-bys, the same
// customer on many rows) cost a Map lookup.
const TOKEN_CACHE_MAX = 4096;
const TOKEN_CACHE_VALUE_MAX = 256;
const tokenCaches = new WeakMap<Buffer, Map<string, Buffer>>();

function hashToken(value: Buffer, ctx: MaskContext, detector: string | undefined): Buffer {
  const key = ctx?.hmacKey;
  if (!Buffer.isBuffer(key) || key.length < 16) throw new Error('masking: hmacKey must be a Buffer of at least 16 bytes');
  const norm = normalize(value, detector);
  if (norm.length > TOKEN_CACHE_VALUE_MAX) return token(key, norm);
  let cache = tokenCaches.get(key);
  if (cache === undefined) tokenCaches.set(key, (cache = new Map()));
  const k = norm.toString('latin1');
  let t = cache.get(k);
  if (t === undefined) {
    t = token(key, norm);
    if (cache.size >= TOKEN_CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(k, t);
  }
  return t;
}

function token(key: Buffer, v: Buffer): Buffer {
  const hex = createHmac('sha256', key).update(v).digest('hex');
  return Buffer.from(`h:${hex.slice(0, 12)}`, 'latin1');
}

function normalize(v: Buffer, detector: string | undefined): Buffer {
  switch (detector) {
    case 'credit_card':
    case 'us_ssn':
    case 'phone':
      return keepBytes(v, isDigitByte);
    case 'iban':
      return upper(keepBytes(v, isAlnum));
    case 'email':
      return asciiLower(Buffer.from(v));
    default:
      return v;
  }
}

function asciiLower(v: Buffer): Buffer {
  for (let i = 0; i < v.length; i++) if (v[i]! >= 0x41 && v[i]! <= 0x5a) v[i] = v[i]! + 0x20;
  return v;
}

function upper(v: Buffer): Buffer {
  for (let i = 0; i < v.length; i++) if (v[i]! >= 0x61 && v[i]! <= 0x7a) v[i] = v[i]! - 0x20;
  return v;
}

function keepBytes(v: Buffer, keep: (c: number) => boolean): Buffer {
  const out = Buffer.allocUnsafe(v.length);
  let n = 0;
  for (let i = 0; i < v.length; i++) if (keep(v[i]!)) out[n++] = v[i]!;
  return out.subarray(0, n);
}

function isDigitByte(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

// ---- partial ----

function partial(v: Buffer, detector: string | undefined): Buffer {
  switch (detector) {
    case 'credit_card':
    case 'us_ssn':
    case 'phone':
      return starAllButLast(v, isDigitByte);
    case 'iban':
      return starAllButLast(v, isAlnum);
    case 'email':
      return emailPartial(v) ?? lastChars(v);
    case 'private_key':
      return redactMarker(detector);
    case undefined:
      return emailPartial(v) ?? (looksNumeric(v) ? starAllButLast(v, isDigitByte) : lastChars(v));
    default:
      return lastChars(v);
  }
}

/** Copy of v with every byte matching `is` but the last KEEP replaced by '*'; all of them when fewer than 2×KEEP. */
function starAllButLast(v: Buffer, is: (c: number) => boolean): Buffer {
  let total = 0;
  for (let i = 0; i < v.length; i++) if (is(v[i]!)) total++;
  const keepFrom = total >= 2 * KEEP ? total - KEEP : total;
  const out = Buffer.allocUnsafe(v.length);
  let seen = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    out[i] = is(c) && seen++ < keepFrom ? STAR : c;
  }
  return out;
}

/** "****@domain" when v is local@domain with a dotted, space-free domain. */
function emailPartial(v: Buffer): Buffer | null {
  let at = -1;
  let dot = -1;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === 0x20) return null;
    if (c === 0x40) {
      at = i;
      dot = -1;
    } else if (c === 0x2e && at >= 0 && dot < 0) dot = i;
  }
  if (at <= 0 || dot <= at + 1 || dot === v.length - 1) return null;
  const out = Buffer.allocUnsafe(5 + v.length - at - 1);
  for (let i = 0; i < 4; i++) out[i] = STAR;
  out[4] = 0x40;
  copyBytes(v, at + 1, v.length, out, 5);
  return out;
}

function looksNumeric(v: Buffer): boolean {
  let digits = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c >= 0x30 && c <= 0x39) digits++;
    else if (!(c === 0x20 || c === 0x2b || c === 0x28 || c === 0x29 || c === 0x2d || c === 0x2e || c === 0x2f)) return false;
  }
  return digits >= 2 * KEEP;
}

/** "****" + the last KEEP characters (whole UTF-8 characters) when v has >= 2×KEEP characters. */
function lastChars(v: Buffer): Buffer {
  let chars = 0;
  let cut = v.length;
  for (let i = v.length - 1; i >= 0; i--) {
    if ((v[i]! & 0xc0) === 0x80) continue; // continuation byte
    chars++;
    if (chars === KEEP) cut = i;
    if (chars >= 2 * KEEP) break;
  }
  if (chars < 2 * KEEP) return STARS;
  const out = Buffer.allocUnsafe(4 + v.length - cut);
  for (let i = 0; i < 4; i++) out[i] = STAR;
  copyBytes(v, cut, v.length, out, 4);
  return out;
}
