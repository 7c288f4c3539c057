// Where, at the end of the bytes seen so far, a value may still be under way:
// what stream masking must hold back until more bytes (or the end) decide it.
// Each function takes the range [lo, hi) and returns the earliest offset from
// which a match of its detector could start and still reach or pass hi, or hi
// when none can. They err on the early side (hold more), never on the late side.
//
// Only private keys (and custom patterns) span lines; the other detectors look
// at the last line: after the last '\n' / '\r'. Stream masking blanks
// terminal control sequences first (blankEscapes), so no value starts inside one.
import { ALNUM, B64URL, CT, DIGIT, DOT, LABEL, LOCAL, LPAREN, NUMSEP, PLUS, SP, UPPER } from './bytes.js';
import { headerHasAlg } from './text.js';

const NL = 0x0a;
const CR = 0x0d;
const ESC = 0x1b;
const BEL = 0x07;
const AT = 0x40;

/** Bounds of the detectors with a maximum length, in bytes. */
export const MAX_LOCAL = 64;
export const MAX_DOMAIN = 253;
/** Cards (19 digits in groups), SSNs, NANP phones and E.164 (15 digits, bracketed groups) all fit in 64 bytes. */
export const MAX_NUMBER = 64;
/** 34 characters in groups of 4 with single spaces. */
export const MAX_IBAN = 42;
export const AWS_LEN = 20;
/** "-----BEGIN " + a label of up to 41 characters + "-----". */
export const MAX_PEM_HEADER = 57;
/** A JWT's first segment (its JSON header) longer than this is not a JWT (text.ts). */
export const MAX_JWT_HEADER = 4096;
/** The longest value of a detector with a bound: an email (local part, '@', domain). */
export const MAX_BOUNDED = MAX_LOCAL + 1 + MAX_DOMAIN;

/** Start of the last line in [lo, hi): after its last '\n' or '\r'. */
export function lineStart(buf: Buffer, lo: number, hi: number): number {
  if (hi <= lo) return lo;
  const a = buf.lastIndexOf(NL, hi - 1);
  const b = buf.lastIndexOf(CR, hi - 1);
  const x = (a > b ? a : b) + 1;
  return x > lo ? x : lo;
}

/**
 * Terminal control sequences in buf[from, hi), from the ESC at `from` on, made
 * boundaries in place: a CSI (ESC [ … final byte) and the short escapes become
 * ESC bytes, which no detector takes into a value, so "\x1b[31m4111…" is seen
 * as a card after a colour change (the final 'm' no longer touches it). Of the
 * string sequences (OSC, DCS, …) only the introducer and terminator are
 * blanked: their payload (a hyperlink's URL) is still scanned. Returns the
 * start of a sequence still incomplete at hi, or hi.
 */
export function blankEscapes(buf: Buffer, from: number, hi: number): number {
  let e = from;
  while (e >= 0 && e < hi) {
    const open = e;
    let end: number;
    const c = e + 1 < hi ? buf[e + 1]! : -1;
    if (c < 0) return open;
    let j = e + 2;
    if (c === 0x5b) {
      // CSI: parameter and intermediate bytes, then one final byte.
      while (j < hi && buf[j]! >= 0x20 && buf[j]! <= 0x3f) j++;
      if (j >= hi) return open;
      end = buf[j]! >= 0x40 && buf[j]! <= 0x7e ? j + 1 : j;
      buf.fill(ESC, e, end);
    } else if (c === 0x5d || c === 0x50 || c === 0x58 || c === 0x5e || c === 0x5f) {
      // OSC, DCS, SOS, PM, APC: a string up to BEL or ESC \.
      let k = j;
      while (k < hi && buf[k] !== BEL && buf[k] !== ESC) k++;
      if (k >= hi || (buf[k] === ESC && k + 1 >= hi)) return open;
      buf[e + 1] = ESC;
      end = buf[k] === BEL ? k + 1 : buf[k + 1] === 0x5c ? k + 2 : k;
      buf.fill(ESC, k, end);
    } else if (c >= 0x20 && c <= 0x2f) {
      while (j < hi && buf[j]! >= 0x20 && buf[j]! <= 0x2f) j++;
      if (j >= hi) return open;
      end = j + 1;
      buf.fill(ESC, e, end);
    } else if (c === ESC) {
      end = e + 1; // a lone ESC; the next one starts its own sequence
    } else {
      end = e + 2;
      buf[e + 1] = ESC;
    }
    e = buf.indexOf(ESC, end);
  }
  return hi;
}

/** Email: a local part at the end, or local@domain with the domain still open. */
export function pendingEmail(buf: Buffer, ts: number, hi: number): number {
  let best = hi;
  // A run of local-part bytes (single dots) of at most 64 bytes could still get its '@'.
  let j = hi;
  while (j > ts && hi - j <= MAX_LOCAL) {
    const c = buf[j - 1]!;
    if ((CT[c]! & LOCAL) !== 0 || (c === DOT && !(j - 2 >= ts && buf[j - 2] === DOT))) j--;
    else break;
  }
  if (j < hi && hi - j <= MAX_LOCAL) best = j;
  // '@' and a domain that may go on.
  let k = hi;
  while (k > ts && hi - k <= MAX_DOMAIN && ((CT[buf[k - 1]!]! & LABEL) !== 0 || buf[k - 1] === DOT)) k--;
  if (k > ts && buf[k - 1] === AT && hi - k <= MAX_DOMAIN) {
    const p = k - 1;
    let s = p;
    while (s > ts && p - s <= MAX_LOCAL) {
      const c = buf[s - 1]!;
      if ((CT[c]! & LOCAL) !== 0) s--;
      else if (c === DOT && s - 1 > ts && buf[s - 2] !== DOT && s < p) s--;
      else break;
    }
    while (s < p && buf[s] === DOT) s++;
    if (s < p && buf[p - 1] !== DOT && p - s <= MAX_LOCAL && s < best) best = s;
  }
  return best;
}

/** Cards, SSNs, phones: a run of digits and number separators ('+', '(' included) reaching the end. */
export function pendingNumber(buf: Buffer, ts: number, hi: number): number {
  let j = hi;
  while (j > ts && hi - j < MAX_NUMBER && ((CT[buf[j - 1]!]! & (DIGIT | NUMSEP)) !== 0 || buf[j - 1] === PLUS)) j--;
  for (let i = j; i < hi; i++) {
    const c = buf[i]!;
    if ((CT[c]! & DIGIT) !== 0 || c === LPAREN || c === PLUS) return i;
  }
  return hi;
}

function isUD(c: number): boolean {
  return (CT[c]! & (UPPER | DIGIT)) !== 0;
}

/** Whether buf[i, hi) can begin an IBAN: CC, 2 digits, BBAN compact or in groups of 4. */
function ibanPrefix(buf: Buffer, i: number, hi: number): boolean {
  const n = hi - i;
  for (let k = 0; k < 4 && k < n; k++) if ((CT[buf[i + k]!]! & (k < 2 ? UPPER : DIGIT)) === 0) return false;
  if (n <= 4) return true;
  let bban = 0;
  if (buf[i + 4] === SP) {
    let g = 4; // the check digits end the first group
    for (let k = i + 4; k < hi; k++) {
      const c = buf[k]!;
      if (c === SP) {
        if (g !== 4) return false;
        g = 0;
      } else if (isUD(c) && g < 4) {
        g++;
        bban++;
      } else return false;
    }
  } else {
    for (let k = i + 4; k < hi; k++) {
      if (!isUD(buf[k]!)) return false;
      bban++;
    }
  }
  return bban <= 30;
}

export function pendingIban(buf: Buffer, ts: number, hi: number): number {
  for (let i = Math.max(ts, hi - MAX_IBAN); i < hi; i++) {
    if ((CT[buf[i]!]! & UPPER) === 0) continue;
    if (i > ts && (CT[buf[i - 1]!]! & ALNUM) !== 0) continue;
    if (ibanPrefix(buf, i, hi)) return i;
  }
  return hi;
}

const AWS_PREFIXES = ['AKIA', 'ASIA', 'ABIA', 'ACCA'].map((s) => Buffer.from(s));

function isWord(c: number): boolean {
  return (CT[c]! & ALNUM) !== 0 || c === 0x5f;
}

export function pendingAws(buf: Buffer, ts: number, hi: number): number {
  next: for (let i = Math.max(ts, hi - AWS_LEN); i < hi; i++) {
    if (buf[i] !== 0x41 || (i > ts && isWord(buf[i - 1]!))) continue;
    const n = hi - i;
    if (!AWS_PREFIXES.some((p) => buf.compare(p, 0, Math.min(4, n), i, i + Math.min(4, n)) === 0)) continue;
    for (let k = i + 4; k < hi; k++) if (!isUD(buf[k]!)) continue next;
    return i;
  }
  return hi;
}

/**
 * JWT: a base64url/dot run reaching the end that starts with (a prefix of)
 * "eyJ", whose header, once complete, decodes with an "alg", with at most 6
 * segments.
 */
export function pendingJwt(buf: Buffer, ts: number, hi: number): number {
  let r = hi;
  while (r > ts && ((CT[buf[r - 1]!]! & B64URL) !== 0 || buf[r - 1] === DOT)) r--;
  if (r === hi) return hi;
  const n = hi - r;
  if (buf[r] !== 0x65 || (n > 1 && buf[r + 1] !== 0x79) || (n > 2 && buf[r + 2] !== 0x4a)) return hi;
  let dot = -1;
  let dots = 0;
  for (let i = r; i < hi; i++) {
    if (buf[i] !== DOT) continue;
    if (dot < 0) dot = i;
    if (++dots > 5) return hi;
  }
  if (dot < 0) return n <= MAX_JWT_HEADER ? r : hi;
  return headerHasAlg(buf, r, dot) ? r : hi;
}

const BEGIN = Buffer.from('-----BEGIN ', 'latin1');
const KEY_TAIL = 'PRIVATE KEY';

/**
 * Private key: a "-----BEGIN …PRIVATE KEY-----" header (or the start of one)
 * whose matching END line has not arrived. Spans lines: looks at all of [lo, hi).
 */
export function pendingPrivateKey(buf: Buffer, lo: number, hi: number): number {
  let from = lo;
  for (;;) {
    const b = buf.indexOf(BEGIN, from);
    if (b < 0 || b + BEGIN.length > hi) break;
    const ls = b + BEGIN.length;
    let j = ls;
    while (j < hi && j - ls <= 40 && (buf[j] === SP || isUD(buf[j]!))) j++;
    if (j >= hi) return b; // the label is still arriving
    let dashes = 0;
    while (dashes < 5 && j + dashes < hi && buf[j + dashes] === 0x2d) dashes++;
    if (dashes < 5 && j + dashes >= hi) return b; // so is the header's end
    const label = buf.toString('latin1', ls, j);
    if (dashes < 5 || !(label.endsWith(KEY_TAIL) || label.endsWith(`${KEY_TAIL} BLOCK`))) {
      from = b + 1;
      continue;
    }
    const end = Buffer.from(`-----END ${label}-----`, 'latin1');
    const e = buf.indexOf(end, j + 5);
    if (e < 0 || e + end.length > hi) return b;
    from = e + end.length;
  }
  // The start of a header at the very end ("--", "-----BEG").
  for (let i = Math.max(lo, hi - BEGIN.length + 1); i < hi; i++) {
    if (buf[i] === 0x2d && buf.compare(BEGIN, 0, hi - i, i, hi) === 0) return i;
  }
  return hi;
}

/** Start of an incomplete UTF-8 character at the end of [lo, hi), or hi. */
export function utf8Tail(buf: Buffer, lo: number, hi: number): number {
  for (let k = 1; k <= 3 && hi - k >= lo; k++) {
    const c = buf[hi - k]!;
    if (c < 0x80) return hi;
    if (c >= 0xc0) {
      const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return k < need ? hi - k : hi;
    }
  }
  return hi;
}
