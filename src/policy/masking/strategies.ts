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
import { copyBytes } from './bytes.js';
import type { Finding, Strategy } from './types.js';

export interface MaskContext {
  hmacKey: Buffer;
  /**
   * The text is not UTF-8 (a Postgres client_encoding such as LATIN1): "characters"
   * kept by partial are then counted as bytes, which never keeps more than KEEP.
   */
  bytesAreChars?: boolean;
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
      return partial(value, detector, ctx.bytesAreChars === true);
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


/**
 * Bytes maskFindingInto may write for a finding of len bytes: the value's own length plus a
 * marker's (11 + the detector's name, which is ASCII) or a hash token's (14).
 */
export function findingRoom(len: number, detector: string): number {
  return len + 16 + detector.length;
}

/**
 * The replacement maskFindings puts for one finding src[s, e) of `detector`, written into dst at o
 * (findingRoom(e - s, detector) bytes free); returns the offset after it. The same bytes as
 * maskValue (the redact marker for null), without a Buffer per finding for redact and partial.
 */
export function maskFindingInto(
  strategy: Strategy,
  src: Buffer,
  s: number,
  e: number,
  detector: string,
  ctx: MaskContext,
  dst: Buffer,
  o: number,
): number {
  switch (strategy) {
    case 'null':
    case 'redact':
      return markerInto(detector, dst, o);
    case 'hash': {
      const t = hashToken(src.subarray(s, e), ctx, detector);
      return copyBytes(t, 0, t.length, dst, o);
    }
    case 'partial':
      switch (detector) {
        case 'credit_card':
        case 'us_ssn':
        case 'phone':
          return starAllButLastInto(src, s, e, isDigitByte, dst, o);
        case 'iban':
          return starAllButLastInto(src, s, e, isAlnum, dst, o);
        case 'email': {
          const x = emailPartialInto(src, s, e, dst, o);
          return x >= 0 ? x : lastCharsInto(src, s, e, dst, o, ctx.bytesAreChars === true);
        }
        case 'private_key':
          return markerInto(detector, dst, o);
        default:
          return lastCharsInto(src, s, e, dst, o, ctx.bytesAreChars === true);
      }
    default:
      throw new Error(`masking: unknown strategy ${JSON.stringify(strategy)}`);
  }
}

function markerInto(detector: string, dst: Buffer, o: number): number {
  const m = redactMarker(detector);
  return copyBytes(m, 0, m.length, dst, o);
}

// ---- hash ----

// An HMAC costs ~3 µs (OpenSSL context set-up), so tokens of short values are
// cached per key (FIFO, bounded): repeated values (joins, group-bys, the same
// customer on many rows) cost a Map lookup.
const TOKEN_CACHE_MAX = 4096;
const TOKEN_CACHE_VALUE_MAX = 256;

interface TokenEntry {
  v: Buffer;
  t: Buffer;
  next: TokenEntry | null;
}

/**
 * Tokens of short values, by a 32-bit FNV-1a of their bytes; entries with the same hash are chained
 * and compared byte by byte. A lookup makes no string and no Buffer (a Map<string> keyed by the
 * value's latin1 form cost more than the rest of a masked row).
 */
class TokenCache {
  private readonly map = new Map<number, TokenEntry>();
  private size = 0;

  static hash(b: Buffer, s: number, e: number): number {
    let h = 0x811c9dc5;
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    return h;
  }

  get(h: number, b: Buffer, s: number, e: number): Buffer | undefined {
    for (let x: TokenEntry | null = this.map.get(h) ?? null; x !== null; x = x.next) {
      const v = x.v;
      if (v.length !== e - s) continue;
      let i = 0;
      while (i < v.length && v[i] === b[s + i]) i++;
      if (i === v.length) return x.t;
    }
    return undefined;
  }

  set(h: number, v: Buffer, t: Buffer): void {
    if (this.size >= TOKEN_CACHE_MAX) {
      // FIFO by bucket: drop the oldest hash's chain.
      const [oldest, first] = this.map.entries().next().value!;
      for (let x: TokenEntry | null = first; x !== null; x = x.next) this.size--;
      this.map.delete(oldest);
    }
    this.map.set(h, { v: Buffer.from(v), t, next: this.map.get(h) ?? null });
    this.size++;
  }
}

const tokenCaches = new WeakMap<Buffer, TokenCache>();

function checkedKey(ctx: MaskContext): Buffer {
  const key = ctx?.hmacKey;
  if (!Buffer.isBuffer(key) || key.length < 16) throw new Error('masking: hmacKey must be a Buffer of at least 16 bytes');
  return key;
}

// The last key's cache: one key serves every value of a stream, and a WeakMap lookup per hashed
// value cost as much as the token cache's own lookup.
let lastKey: Buffer | null = null;
let lastCache: TokenCache | null = null;

function cacheFor(key: Buffer): TokenCache {
  if (key === lastKey) return lastCache!;
  let cache = tokenCaches.get(key);
  if (cache === undefined) tokenCaches.set(key, (cache = new TokenCache()));
  lastKey = key;
  lastCache = cache;
  return cache;
}

function hashToken(value: Buffer, ctx: MaskContext, detector: string | undefined): Buffer {
  const key = checkedKey(ctx);
  const norm = normalize(value, detector);
  return cachedToken(key, norm, 0, norm.length);
}

/** The token of v[s, e), from the cache when it is short. */
function cachedToken(key: Buffer, v: Buffer, s: number, e: number): Buffer {
  if (e - s > TOKEN_CACHE_VALUE_MAX) return token(key, v.subarray(s, e));
  const cache = cacheFor(key);
  const h = TokenCache.hash(v, s, e);
  let t = cache.get(h, v, s, e);
  if (t === undefined) {
    const sub = v.subarray(s, e);
    t = token(key, sub);
    cache.set(h, sub, t);
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

function partial(v: Buffer, detector: string | undefined, bytewise: boolean): Buffer {
  switch (detector) {
    case 'credit_card':
    case 'us_ssn':
    case 'phone':
      return starAllButLast(v, isDigitByte);
    case 'iban':
      return starAllButLast(v, isAlnum);
    case 'email':
      return emailPartial(v) ?? lastChars(v, bytewise);
    case 'private_key':
      return redactMarker(detector);
    case undefined:
      return intoNew(v.length + WHOLE_VALUE_SLACK, (dst) => partialWholeInto(v, 0, v.length, dst, 0, bytewise));
    default:
      return lastChars(v, bytewise);
  }
}

/** A new Buffer of at most `room` bytes, filled by write (which returns the length written). */
function intoNew(room: number, write: (dst: Buffer) => number): Buffer {
  const out = Buffer.allocUnsafe(room);
  return out.subarray(0, write(out));
}

function starAllButLast(v: Buffer, is: (c: number) => boolean): Buffer {
  return intoNew(v.length, (dst) => starAllButLastInto(v, 0, v.length, is, dst, 0));
}

function emailPartial(v: Buffer): Buffer | null {
  const out = Buffer.allocUnsafe(v.length + 4);
  const n = emailPartialInto(v, 0, v.length, out, 0);
  return n < 0 ? null : out.subarray(0, n);
}

function lastChars(v: Buffer, bytewise: boolean): Buffer {
  return intoNew(v.length + 4, (dst) => lastCharsInto(v, 0, v.length, dst, 0, bytewise));
}

/** Bytes a whole-value replacement written by maskValueInto may take beyond the value's own length. */
export const WHOLE_VALUE_SLACK = 14;

/**
 * maskValue of a whole value (no detector), src[s, e), written into dst at o, which must have
 * (e - s) + WHOLE_VALUE_SLACK bytes free. Returns the offset after it, or -1 for SQL NULL. The
 * data path's form: no Buffer per value (the masker writes rows straight into its output).
 */
export function maskValueInto(strategy: Strategy, src: Buffer, s: number, e: number, ctx: MaskContext, dst: Buffer, o: number): number {
  switch (strategy) {
    case 'null':
      return -1;
    case 'redact':
      return starsInto(dst, o);
    case 'hash': {
      // A whole value is hashed as it is (no normalisation): no Buffer unless the cache misses.
      const t = cachedToken(checkedKey(ctx), src, s, e);
      for (let i = 0; i < t.length; i++) dst[o + i] = t[i]!;
      return o + t.length;
    }
    case 'partial':
      return partialWholeInto(src, s, e, dst, o, ctx.bytesAreChars === true);
    default:
      throw new Error(`masking: unknown strategy ${JSON.stringify(strategy)}`);
  }
}

/**
 * partial for a whole value: the email form, the digit form for number-like values, else the last
 * characters. One classifying pass, then one writing pass (every value of a masked column comes here).
 */
function partialWholeInto(v: Buffer, s: number, e: number, dst: Buffer, o: number, bytewise: boolean): number {
  let at = -1;
  let dot = -1;
  let space = false;
  let numeric = true;
  let digits = 0;
  for (let i = s; i < e; i++) {
    const c = v[i]!;
    if (c >= 0x30 && c <= 0x39) digits++;
    else if (c === 0x20) space = true;
    else if (c === 0x40) {
      at = i;
      dot = -1;
      numeric = false;
    } else if (c === 0x2e) {
      if (at >= 0 && dot < 0) dot = i;
    } else if (!(c === 0x2b || c === 0x28 || c === 0x29 || c === 0x2d || c === 0x2f)) numeric = false;
  }
  if (!space && at > s && dot > at + 1 && dot !== e - 1) return emailFormInto(v, at, e, dst, o);
  return numeric && digits >= 2 * KEEP ? starAllButLastInto(v, s, e, isDigitByte, dst, o) : lastCharsInto(v, s, e, dst, o, bytewise);
}

/** "****@" + the domain after v[at] ('@'), at dst[o]. */
function emailFormInto(v: Buffer, at: number, e: number, dst: Buffer, o: number): number {
  o = starsInto(dst, o);
  dst[o] = 0x40;
  return copyBytes(v, at + 1, e, dst, o + 1);
}

/** "****" at dst[o]; returns the offset after it. */
function starsInto(dst: Buffer, o: number): number {
  for (let i = 0; i < 4; i++) dst[o + i] = STAR;
  return o + 4;
}

/** v[s, e) with every byte matching `is` but the last KEEP replaced by '*' (all of them when fewer than 2×KEEP), at dst[o]. */
function starAllButLastInto(v: Buffer, s: number, e: number, is: (c: number) => boolean, dst: Buffer, o: number): number {
  let total = 0;
  for (let i = s; i < e; i++) if (is(v[i]!)) total++;
  const keepFrom = total >= 2 * KEEP ? total - KEEP : total;
  let seen = 0;
  for (let i = s; i < e; i++) {
    const c = v[i]!;
    dst[o++] = is(c) && seen++ < keepFrom ? STAR : c;
  }
  return o;
}

/** "****@domain" at dst[o] when v[s, e) is local@domain with a dotted, space-free domain; else -1 (nothing written). */
function emailPartialInto(v: Buffer, s: number, e: number, dst: Buffer, o: number): number {
  let at = -1;
  let dot = -1;
  for (let i = s; i < e; i++) {
    const c = v[i]!;
    if (c === 0x20) return -1;
    if (c === 0x40) {
      at = i;
      dot = -1;
    } else if (c === 0x2e && at >= 0 && dot < 0) dot = i;
  }
  if (at <= s || dot <= at + 1 || dot === e - 1) return -1;
  return emailFormInto(v, at, e, dst, o);
}

/**
 * "****" + the last KEEP characters (whole UTF-8 characters; bytes when `bytewise`) when
 * v[s, e) has >= 2×KEEP characters, at dst[o].
 */
function lastCharsInto(v: Buffer, s: number, e: number, dst: Buffer, o: number, bytewise: boolean): number {
  let chars = 0;
  let cut = e;
  for (let i = e - 1; i >= s; i--) {
    if (!bytewise && (v[i]! & 0xc0) === 0x80) continue; // continuation byte
    chars++;
    if (chars === KEEP) cut = i;
    if (chars >= 2 * KEEP) break;
  }
  o = starsInto(dst, o);
  return chars < 2 * KEEP ? o : copyBytes(v, cut, e, dst, o);
}
