// The scanner: one pass over the bytes of a value with a per-scanner trigger
// table. Almost every byte is a table lookup and a `continue`; the precise
// validators (numeric.ts, text.ts, iban.ts) run only at candidates:
//   digit       → the numeric span around it (digits joined by up to two of
//                 space - . ( ) ); cards/SSNs/phones only when the span has
//                 enough digits; IBAN when the span follows two capitals
//   '@'         → email
//   '-'         → "-----BEGIN …PRIVATE KEY-----"
//   'A'         → AKIA/ASIA/ABIA/ACCA access key id
//   'J'         → "eyJ" JWT
// Custom RE2 detectors run over the whole value, only when configured.
import RE2 from 're2';
import { ALNUM, CT, NUMSEP, PLUS, UPPER, DASH } from './bytes.js';
import { matchIban } from './iban.js';
import { M, matchCard, matchE164, matchNanp, matchSsn } from './numeric.js';
import { matchAwsKey, matchEmail, matchJwt, matchPrivateKey } from './text.js';
import { isDetectorName, isStrategy, DETECTOR_NAMES, type CustomDetector, type DetectorName, type Finding } from './types.js';

const NONE: readonly Finding[] = Object.freeze([]);

const T_DIGIT = 1;
const T_AT = 2;
const T_DASH = 3;
const T_A = 4;
const T_J = 5;

// Span classes (a private copy of the table: module imports are slower to
// read in hot loops than an object field).
const DIGIT_SEP = 1;
const NUM_SEP = 2;
const UPPER_SEP = 3;
const SPAN_CT = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  if (c >= 0x30 && c <= 0x39) SPAN_CT[c] = DIGIT_SEP;
  else if ((CT[c]! & NUMSEP) !== 0) SPAN_CT[c] = NUM_SEP;
  else if ((CT[c]! & UPPER) !== 0) SPAN_CT[c] = UPPER_SEP;
}

const CUSTOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

interface Compiled {
  name: string;
  re: RE2;
}

export class Scanner {
  readonly #trig = new Uint8Array(256);
  readonly #ct = SPAN_CT;
  #ab: ArrayBufferLike | null = null;
  #w: Int32Array<ArrayBufferLike> = new Int32Array(0);
  // Enabled detectors as plain booleans (hot-path reads).
  readonly #card: boolean;
  readonly #ssn: boolean;
  readonly #phone: boolean;
  readonly #iban: boolean;
  readonly #custom: Compiled[] = [];
  #acc: Finding[] | null = null;
  #base = 0;

  constructor(detectors: readonly DetectorName[], custom: readonly CustomDetector[]) {
    const on = Object.fromEntries(DETECTOR_NAMES.map((d) => [d, false])) as Record<DetectorName, boolean>;
    for (const d of detectors) {
      if (!isDetectorName(d)) throw new Error(`masking: unknown detector "${String(d)}" (known: ${DETECTOR_NAMES.join(', ')})`);
      on[d] = true;
    }
    this.#card = on.credit_card;
    this.#ssn = on.us_ssn;
    this.#phone = on.phone;
    this.#iban = on.iban;
    if (on.credit_card || on.us_ssn || on.phone || on.iban) for (let c = 0x30; c <= 0x39; c++) this.#trig[c] = T_DIGIT;
    if (on.email) this.#trig[0x40] = T_AT;
    if (on.private_key) this.#trig[DASH] = T_DASH;
    if (on.aws_access_key) this.#trig[0x41] = T_A;
    if (on.jwt) this.#trig[0x4a] = T_J;
    for (const c of custom) this.#custom.push(compileCustom(c));
  }

  /** Findings in buf[start, end), offsets relative to start, sorted, non-overlapping. */
  scan(buf: Buffer, start: number, end: number): readonly Finding[] {
    this.#acc = null;
    this.#base = start;
    const T = this.#trig;
    const ct = this.#ct;
    const W = this.#words(buf);
    const off = buf.byteOffset;
    let i = start;
    for (;;) {
      // The hot loop: skip bytes that trigger nothing, four at a time on
      // aligned words with no byte in 0x2d..0x4a (where every built-in
      // trigger lives: - 0-9 @ A J).
      while (i < end) {
        if (((off + i) & 3) === 0 && end - i >= 4) {
          const w = W[(off + i) >> 2]!;
          const x7 = w & 0x7f7f7f7f;
          if (((0xcacacaca - x7) & ~w & (x7 + 0x53535353) & 0x80808080) === 0) {
            i += 4;
            continue;
          }
        }
        if (T[buf[i]!] !== 0) break;
        i++;
      }
      if (i >= end) break;
      const k = T[buf[i]!]!;
      let e = -1;
      if (k === T_DIGIT) {
        // Numeric span: digit runs joined by one or two of space - . ( )
        const s = i;
        let digits = 0;
        let big = 0; // runs of >= 3 digits
        for (;;) {
          const r = i;
          while (i < end && ct[buf[i]!] === DIGIT_SEP) i++;
          digits += i - r;
          if (i - r >= 3) big++;
          if (i >= end || ct[buf[i]!] !== NUM_SEP) break;
          let q = i + 1;
          if (q < end && ct[buf[q]!] === NUM_SEP) q++;
          if (q >= end || ct[buf[q]!] !== DIGIT_SEP) break;
          i = q;
        }
        if (s > start && ct[buf[s - 1]!] === UPPER_SEP) this.#ibanAt(buf, s, start, end);
        // Cards need 13 digits in runs of >= 3; SSN and NANP phones need 9+
        // digits with two runs of >= 3; E.164 needs the '+'.
        if (digits >= 8 && ((digits >= 13 && big > 0) || (digits >= 9 && big > 1) || (s > start && buf[s - 1] === PLUS))) {
          this.#numbers(buf, s, i, start, end, digits);
        }
        continue;
      } else if (k === T_AT) {
        if ((e = matchEmail(buf, i, start, end)) > 0) this.#add(M.start, e, 'email');
      } else if (k === T_DASH) {
        if (buf[i + 1] === DASH && (e = matchPrivateKey(buf, i, start, end)) > 0) this.#add(i, e, 'private_key');
      } else if (k === T_A) {
        if ((e = matchAwsKey(buf, i, start, end)) > 0) this.#add(i, e, 'aws_access_key');
      } else if (i - 2 >= start && buf[i - 1] === 0x79 && buf[i - 2] === 0x65) {
        if ((e = matchJwt(buf, i - 2, start, end)) > 0) this.#add(i - 2, e, 'jwt');
      }
      i = e > i ? e | 0 : i + 1;
    }
    if (this.#custom.length > 0) this.#scanCustom(buf, start, end);
    const acc = this.#acc as Finding[] | null;
    this.#acc = null;
    if (acc === null) return NONE;
    return acc.length === 1 ? acc : resolveOverlaps(acc);
  }

  #ibanAt(buf: Buffer, s: number, lo: number, hi: number): void {
    if (this.#iban && s - 2 >= lo && (CT[buf[s - 2]!]! & UPPER) !== 0) {
      const e = matchIban(buf, s - 2, lo, hi);
      if (e > 0) this.#add(s - 2, e, 'iban');
    }
  }

  /**
   * Runs card/SSN/phone validators at each digit group of the span [s, e).
   * A group is skipped when the digits left in the span from it cannot make
   * the detector's minimum, or when a letter/digit right before the span
   * blocks its first group (every numeric detector needs a boundary there).
   */
  #numbers(buf: Buffer, s: number, e: number, lo: number, hi: number, digits: number): void {
    let x: number;
    let rem = digits;
    const b = s > lo ? buf[s - 1]! : 0x20;
    const blocked = (CT[b]! & ALNUM) !== 0;
    for (let g = s; g < e; ) {
      let r = g + 1;
      while (r < e && buf[r]! >= 0x30 && buf[r]! <= 0x39) r++;
      const run = r - g;
      if (!(g === s && blocked)) {
        if (this.#card && rem >= 13 && run >= 3 && (x = matchCard(buf, g, lo, hi)) > 0) this.#add(g, x, 'credit_card');
        if (this.#ssn && run === 3 && rem >= 9 && buf[r] === DASH && (x = matchSsn(buf, g, lo, hi)) > 0) this.#add(g, x, 'us_ssn');
        if (this.#phone) {
          if (rem >= 10 && (run === 3 || (run === 1 && buf[g] === 0x31)) && (x = matchNanp(buf, g, lo, hi)) > 0) {
            this.#add(M.start, x, 'phone');
          }
          if (g > lo && buf[g - 1] === PLUS && (x = matchE164(buf, g - 1, lo, hi)) > 0) this.#add(g - 1, x, 'phone');
        }
      }
      rem -= run;
      if (rem < 9 && !this.#phone) break;
      g = r;
      while (g < e && !(buf[g]! >= 0x30 && buf[g]! <= 0x39)) g++;
    }
  }

  /** An Int32Array over buf's memory (cached for the last ArrayBuffer seen). */
  #words(buf: Buffer): Int32Array<ArrayBufferLike> {
    const ab = buf.buffer;
    if (ab !== this.#ab) {
      this.#ab = ab;
      this.#w = new Int32Array(ab, 0, ab.byteLength >>> 2);
    }
    return this.#w;
  }

  #scanCustom(buf: Buffer, start: number, end: number): void {
    const sub = buf.subarray(start, end);
    for (const { name, re } of this.#custom) {
      re.lastIndex = 0;
      for (let m = re.exec(sub); m !== null; m = re.exec(sub)) {
        const len = m[0].length;
        if (len === 0) {
          re.lastIndex = m.index + 1; // patterns that match "" are rejected, but be safe
          continue;
        }
        this.#add(start + m.index, start + m.index + len, name);
      }
    }
  }

  #add(s: number, e: number, detector: string): void {
    const f: Finding = { start: s - this.#base, end: e - this.#base, detector };
    if (this.#acc === null) this.#acc = [f];
    else this.#acc.push(f);
  }
}

function compileCustom(c: CustomDetector): Compiled {
  const name = String(c?.name ?? '');
  if (!CUSTOM_NAME.test(name)) {
    throw new Error(`masking: custom detector name ${JSON.stringify(name)} must be 1-64 of [A-Za-z0-9_.:-]`);
  }
  if (isDetectorName(name)) throw new Error(`masking: custom detector "${name}" reuses a built-in detector name`);
  if (!isStrategy(String(c.strategy))) {
    throw new Error(`masking: custom detector "${name}": unknown strategy ${JSON.stringify(c.strategy)}`);
  }
  if (typeof c.pattern !== 'string' || c.pattern === '') {
    throw new Error(`masking: custom detector "${name}": pattern must be a non-empty RE2 string`);
  }
  let re: RE2;
  try {
    re = new RE2(c.pattern, 'g');
  } catch (err) {
    throw new Error(
      `masking: custom detector "${name}": invalid RE2 pattern ${JSON.stringify(c.pattern)}: ${(err as Error).message}`,
    );
  }
  if (new RE2(c.pattern).test('')) {
    throw new Error(`masking: custom detector "${name}": pattern ${JSON.stringify(c.pattern)} matches the empty string`);
  }
  return { name, re };
}

/**
 * Longest wins, then earliest. A finding that overlaps a winner is trimmed to
 * the part the winner does not cover (so no byte any detector flagged stays
 * unmasked), and dropped when nothing is left.
 */
export function resolveOverlaps(fs: Finding[]): Finding[] {
  fs.sort((a, b) => b.end - b.start - (a.end - a.start) || a.start - b.start);
  const out: Finding[] = [];
  for (const f of fs) {
    let pieces: [number, number][] = [[f.start, f.end]];
    for (const w of out) {
      if (w.end <= f.start || w.start >= f.end) continue;
      const next: [number, number][] = [];
      for (const [s, e] of pieces) {
        if (w.end <= s || w.start >= e) next.push([s, e]);
        else {
          if (s < w.start) next.push([s, w.start]);
          if (w.end < e) next.push([w.end, e]);
        }
      }
      pieces = next;
    }
    for (const [s, e] of pieces) out.push(s === f.start && e === f.end ? f : { start: s, end: e, detector: f.detector });
  }
  return out.sort((a, b) => a.start - b.start);
}
