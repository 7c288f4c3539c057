// The scanner: a cheap byte-level prefilter over a value, then the precise
// validators (numeric.ts, text.ts, iban.ts) only around candidates. Values
// with nothing sensitive (the common case) create no strings, run no regex
// and allocate nothing.
//
// Prefilter: a small automaton (automaton.ts; 43 states with every detector
// on), state = TABLE[state << 8 | byte], stepped two bytes at a time through a pair
// table while nothing triggers; values of 64+ bytes also skip aligned 4-byte
// words with no byte in 0x2b..0x5a (+ , - . / 0-9 : ; < = > ? @ A-Z). No
// branch depends on digit-vs-letter, so random mixes (UUIDs, hashes,
// timestamps) cost no branch mispredictions. A validator runs only when
//   a run reaches 13 digits, or, after a separator (space - . ( )) between
//     digit runs, 7 digits in runs of >= 3 → the numeric region around it
//     (#region: cards, SSNs 3-2-4, NANP phones 3-3-4). Plain numbers up to 12
//     digits, dates (4-2-2) and times (2:2:2) never get there.
//   a digit 1-9 after '+'      → E.164 phone (its groups may be short)
//   a digit after two capitals → IBAN ("DE89…")
//   '@'                        → email
//   "--"                       → "-----BEGIN …PRIVATE KEY-----"
//   'A'                        → AKIA/ASIA/ABIA/ACCA access key id
//   'J'                        → JWT, when after "ey"
// Disabled detectors are left out of the automaton. Custom RE2 detectors run
// over the whole value, only when configured (an RE2.Set pass first).
import RE2 from 're2';
import { ALNUM, CT, DASH, DIGIT, NUMSEP, PLUS } from './bytes.js';
import * as automaton from './automaton.js';
import { matchIban } from './iban.js';
import { M, matchCard, matchE164, matchNanp, matchSsn } from './numeric.js';
import { matchAwsKey, matchEmail, matchJwt, matchPrivateKey } from './text.js';
import * as pending from './pending.js';
import { prefixClosure } from './prefix.js';
import { isDetectorName, isStrategy, DETECTOR_NAMES, type CustomDetector, type DetectorName, type Finding } from './types.js';

const NONE: readonly Finding[] = Object.freeze([]);

// Byte classes for #region (P table).
const P_DIGIT = 1;
const P_KEEP = 2; // digits and number separators
// Values of LONG_VALUE bytes or more also use the word skip.
const LONG_VALUE = 64;
// Local copies: the hot loops read module-local constants faster than imports.
const NSTATES = 64;
const REGION = 64;
if (NSTATES !== automaton.NSTATES || REGION !== automaton.REGION) throw new Error('masking: automaton constants differ');

const CUSTOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

interface Compiled {
  name: string;
  re: RE2;
  /** Finds where a match may still be under way at the end (prefix.ts); null: not analysed. */
  open: RE2 | null;
}

export class Scanner {
  readonly #p = new Uint8Array(256);
  readonly #dfa = new Uint8Array(NSTATES * 256);
  // The same automaton over byte pairs: bytes with identical columns share a
  // class (< 16 classes), a pair indexes (class1 << 4 | class2).
  readonly #dfa2 = new Uint8Array(NSTATES * 256);
  readonly #clsHi = new Uint8Array(256);
  readonly #clsLo = new Uint8Array(256);
  #wbuf: Buffer | null = null;
  #w: Int32Array<ArrayBufferLike> = new Int32Array(0);
  readonly #card: boolean;
  readonly #ssn: boolean;
  readonly #phone: boolean;
  readonly #on: Record<DetectorName, boolean>;
  readonly #custom: Compiled[] = [];
  readonly #customSet: { test(s: Buffer): boolean } | null = null;
  #acc: Finding[] | null = null;
  #base = 0;
  #st = 0;

  constructor(detectors: readonly DetectorName[], custom: readonly CustomDetector[]) {
    const on = Object.fromEntries(DETECTOR_NAMES.map((d) => [d, false])) as Record<DetectorName, boolean>;
    for (const d of detectors) {
      if (!isDetectorName(d)) throw new Error(`masking: unknown detector "${String(d)}" (known: ${DETECTOR_NAMES.join(', ')})`);
      on[d] = true;
    }
    this.#on = on;
    this.#card = on.credit_card;
    this.#ssn = on.us_ssn;
    this.#phone = on.phone;
    const P = this.#p;
    for (let c = 0; c < 256; c++) {
      if ((CT[c]! & DIGIT) !== 0) P[c] = P_DIGIT | P_KEEP;
      else if ((CT[c]! & NUMSEP) !== 0) P[c] = P_KEEP;
    }
    automaton.buildAutomaton(on, this.#dfa);
    automaton.buildPairs(this.#dfa, this.#dfa2, this.#clsHi, this.#clsLo);
    for (const c of custom) this.#custom.push(compileCustom(c));
    // One automaton over all custom patterns answers "anything here?" in a
    // single pass; the patterns run one by one only on values that match.
    if (this.#custom.length > 0) this.#customSet = new RE2.Set(custom.map((c) => c.pattern));
  }

  /**
   * The shortest value that can hold a finding: 6 bytes with the built-in detectors only (the
   * shortest is an email, "a@b.co"), 1 with custom patterns. Shorter values need no scan.
   */
  get minFindingLength(): number {
    return this.#custom.length > 0 ? 1 : 6;
  }

  /** Findings in buf[start, end), offsets relative to start, sorted, non-overlapping. */
  scan(buf: Buffer, start: number, end: number): readonly Finding[] {
    this.#acc = null;
    this.#base = start;
    if (end - start >= LONG_VALUE) this.#runLong(buf, start, end);
    else this.#run(buf, start, end);
    if (this.#customSet !== null) this.#scanCustom(buf, start, end);
    const acc = this.#acc as Finding[] | null;
    this.#acc = null;
    if (acc === null) return NONE;
    return acc.length === 1 ? acc : resolveOverlaps(acc);
  }

  /** The detector whose value may be under way at the offset the last pending() call returned ('' for none). */
  pendingDetector = '';

  /**
   * For stream masking: the earliest offset in [lo, hi) from which the bytes
   * may still belong to a value that is not complete at hi (more bytes could
   * make or extend a match), or hi when every value is decided. Bytes before
   * it can be scanned and sent; the rest must wait for more bytes. Sets
   * pendingDetector to the detector of that value.
   */
  pending(buf: Buffer, lo: number, hi: number): number {
    const on = this.#on;
    let v = hi;
    let det = '';
    const take = (x: number, d: string): void => {
      if (x < v) {
        v = x;
        det = d;
      }
    };
    const ls = pending.lineStart(buf, lo, hi);
    if (ls < hi) {
      if (on.email) take(pending.pendingEmail(buf, ls, hi), 'email');
      if (this.#card || this.#ssn || this.#phone) take(pending.pendingNumber(buf, ls, hi), 'number');
      if (on.iban) take(pending.pendingIban(buf, ls, hi), 'iban');
      if (on.aws_access_key) take(pending.pendingAws(buf, ls, hi), 'aws_access_key');
      if (on.jwt) take(pending.pendingJwt(buf, ls, hi), 'jwt');
    }
    if (on.private_key) take(pending.pendingPrivateKey(buf, lo, hi), 'private_key');
    if (this.#custom.length > 0) {
      take(pending.utf8Tail(buf, lo, hi), '');
      const sub = lo === 0 && hi === buf.length ? buf : buf.subarray(lo, hi);
      for (const c of this.#custom) {
        if (c.open === null) {
          take(ls, c.name); // not analysed: the whole last line may belong to a match
          continue;
        }
        const m = c.open.exec(sub);
        if (m !== null && m.index < sub.length) take(lo + m.index, c.name);
      }
    }
    this.pendingDetector = det;
    return v;
  }

  /** The prefilter over [start, end), two bytes per step while nothing triggers. */
  #run(buf: Buffer, start: number, end: number): void {
    const t = this.#dfa;
    const t2 = this.#dfa2;
    const hi = this.#clsHi;
    const lo = this.#clsLo;
    let st = 0;
    let i = start;
    while (i < end) {
      if (i + 1 < end) {
        const n2 = t2[(st << 8) | (hi[buf[i]!]! + lo[buf[i + 1]!]!)]!;
        if (n2 < NSTATES) {
          st = n2;
          i += 2;
          continue;
        }
      }
      st = t[(st << 8) | buf[i]!]!;
      if (st >= NSTATES) {
        i = this.#fire(buf, i, st, start, end);
        st = this.#st;
      } else i++;
    }
  }

  /**
   * #run for long values (free text, COPY lines, terminal output): also skips
   * four bytes at once when an aligned word has no byte in 0x2b..0x5a
   * (+ , - . / 0-9 : ; < = > ? @ A-Z). Nothing in such a word can trigger or
   * count, and it breaks any number (no span has 3 separators in a row), so
   * the state restarts at 0.
   */
  #runLong(buf: Buffer, start: number, end: number): void {
    const t = this.#dfa;
    const t2 = this.#dfa2;
    const hi = this.#clsHi;
    const lo = this.#clsLo;
    const W = this.#words(buf);
    const off = buf.byteOffset;
    let st = 0;
    let i = start;
    while (i < end) {
      if (((off + i) & 3) === 0 && i + 4 <= end) {
        const w = W[(off + i) >> 2]!;
        const x7 = w & 0x7f7f7f7f;
        if (((0xdadadada - x7) & ~w & (x7 + 0x55555555) & 0x80808080) === 0) {
          st = 0;
          i += 4;
          continue;
        }
      }
      if (i + 1 < end) {
        const n2 = t2[(st << 8) | (hi[buf[i]!]! + lo[buf[i + 1]!]!)]!;
        if (n2 < NSTATES) {
          st = n2;
          i += 2;
          continue;
        }
      }
      st = t[(st << 8) | buf[i]!]!;
      if (st >= NSTATES) {
        i = this.#fire(buf, i, st, start, end);
        st = this.#st;
      } else i++;
    }
  }

  /** Handles trigger state st at byte i; returns where to go on, leaves the state in #st. */
  #fire(buf: Buffer, i: number, st: number, lo: number, hi: number): number {
    let next: number;
    if (st === REGION) {
      next = this.#region(buf, i, lo, hi);
      this.#st = 0;
    } else {
      next = this.#special(buf, i, lo, hi);
      this.#st = st & (NSTATES - 1);
    }
    if (next > i) {
      this.#st = 0;
      return next;
    }
    return i + 1;
  }

  /** At a trigger byte: runs its validator; returns the end of a match, or -1. */
  #special(buf: Buffer, i: number, lo: number, hi: number): number {
    const c = buf[i]!;
    let e = -1;
    if (c === 0x40) {
      if ((e = matchEmail(buf, i, lo, hi)) > 0) this.#add(M.start, e, 'email');
    } else if (c === DASH) {
      if ((e = matchPrivateKey(buf, i - 1, lo, hi)) > 0) this.#add(i - 1, e, 'private_key');
    } else if (c === 0x41) {
      if ((e = matchAwsKey(buf, i, lo, hi)) > 0) this.#add(i, e, 'aws_access_key');
    } else if (c === 0x4a) {
      if (i - 2 >= lo && buf[i - 1] === 0x79 && buf[i - 2] === 0x65 && (e = matchJwt(buf, i - 2, lo, hi)) > 0) {
        this.#add(i - 2, e, 'jwt');
      }
    } else if (buf[i - 1] === PLUS) {
      if ((e = matchE164(buf, i - 1, lo, hi)) > 0) this.#add(i - 1, e, 'phone');
    } else if ((e = matchIban(buf, i - 2, lo, hi)) > 0) {
      this.#add(i - 2, e, 'iban'); // a digit after two capitals
    }
    return e;
  }

  /**
   * The numeric region around digit i (digits and separators, no other byte),
   * split into spans: digit runs joined by at most two separators. Each span
   * with enough digits goes to #numbers. Returns the region's end.
   */
  #region(buf: Buffer, i: number, lo: number, hi: number): number {
    const P = this.#p;
    let s = i;
    while (s > lo && (P[buf[s - 1]!]! & P_KEEP) !== 0) s--;
    while ((P[buf[s]!]! & P_DIGIT) === 0) s++;
    let j = s;
    for (;;) {
      const ss = j;
      let digits = 0;
      let big = 0; // runs of >= 3 digits
      for (;;) {
        const r = j;
        while (j < hi && (P[buf[j]!]! & P_DIGIT) !== 0) j++;
        digits += j - r;
        if (j - r >= 3) big++;
        if (j >= hi || (CT[buf[j]!]! & NUMSEP) === 0) break;
        let q = j + 1;
        if (q < hi && (CT[buf[q]!]! & NUMSEP) !== 0) q++;
        if (q >= hi || (P[buf[q]!]! & P_DIGIT) === 0) break;
        j = q;
      }
      // Cards need 13 digits in runs of >= 3; SSN and NANP phones need 9+
      // digits with two runs of >= 3.
      if ((digits >= 13 && big > 0) || (digits >= 9 && big > 1)) {
        this.#numbers(buf, ss, j, lo, hi, digits);
      }
      let q = j;
      while (q < hi && (P[buf[q]!]! & (P_KEEP | P_DIGIT)) === P_KEEP) q++;
      if (q < hi && (P[buf[q]!]! & P_DIGIT) !== 0) {
        j = q;
        continue;
      }
      break;
    }
    return j;
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
    const blocked = s > lo && (CT[buf[s - 1]!]! & ALNUM) !== 0;
    for (let g = s; g < e; ) {
      let r = g + 1;
      while (r < e && buf[r]! >= 0x30 && buf[r]! <= 0x39) r++;
      const run = r - g;
      if (!(g === s && blocked)) {
        if (this.#card && rem >= 13 && run >= 3 && (x = matchCard(buf, g, lo, hi)) > 0) this.#add(g, x, 'credit_card');
        if (this.#ssn && run === 3 && rem >= 9 && buf[r] === DASH && (x = matchSsn(buf, g, lo, hi)) > 0) this.#add(g, x, 'us_ssn');
        if (this.#phone && rem >= 10 && (run === 3 || (run === 1 && buf[g] === 0x31)) && (x = matchNanp(buf, g, lo, hi)) > 0) {
          this.#add(M.start, x, 'phone');
        }
      }
      rem -= run;
      if (rem < 9) break;
      g = r;
      while (g < e && !(buf[g]! >= 0x30 && buf[g]! <= 0x39)) g++;
    }
  }

  /**
   * An Int32Array over buf's memory. Reading buf.buffer costs ~40 ns, so the
   * view is cached for the last Buffer scanned (fields of one chunk share it);
   * the scanner keeps a reference to that one Buffer.
   */
  #words(buf: Buffer): Int32Array<ArrayBufferLike> {
    if (buf !== this.#wbuf) {
      const ab = buf.buffer;
      if (ab !== this.#w.buffer) this.#w = new Int32Array(ab, 0, ab.byteLength >>> 2);
      this.#wbuf = buf;
    }
    return this.#w;
  }

  #scanCustom(buf: Buffer, start: number, end: number): void {
    const sub = buf.subarray(start, end);
    if (!this.#customSet!.test(sub)) return;
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
  let open: RE2 | null = null;
  const closure = prefixClosure(c.pattern);
  if (closure !== null) {
    try {
      open = new RE2(closure);
    } catch {
      open = null; // too large for RE2: streams hold the whole last line
    }
  }
  return { name, re, open };
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
