// Streaming JSON masking: the bytes of a JSON body (or of NDJSON / JSON text
// sequences) go out exactly as they came, except string values with findings
// and values under a field rule, which are rewritten. Chunks may split a token
// at any byte (inside an escape, a UTF-8 sequence, a number, a literal); the
// output does not depend on where.
//
// Hand-written on purpose: JSON parsers build values (and lose the byte form),
// streaming tokenizers (e.g. stream-json, clarinet) emit decoded tokens, not
// the bytes, so none of them can re-emit an unmasked body byte for byte.
//
// How: one pass, a state machine over bytes with inner loops for whitespace,
// string content (a byte table stops only at '"', '\' and control bytes) and
// numbers. Unmasked bytes are passed on as views of the input chunk; only a
// value that may need masking and straddles a chunk edge is copied (held) until
// it ends. What is held is bounded: a string (or number) longer than
// maxString under masking is sent as "****" (fail closed) and the rest of it is
// dropped as it arrives; nesting deeper than maxDepth counts as malformed.
//
// Which values: every string value (member names are not) is scanned by the
// set's detectors, after its escapes are decoded (so "a\u0040b.com" is an
// email), and a rewritten string is re-escaped. Numbers of 13+ characters are
// scanned too (a card number sent as a JSON number); one with a finding becomes
// a string. Field rules (`fields:` JSON paths, and `columns:` rules with a bare
// name, which match a member of that name at any depth) mask a whole value:
// strings with maskValue, numbers and booleans become a JSON string ("****",
// "h:…"), strategy null gives null, null stays null; under an object or array
// every scalar inside is masked so. The first field rule that matches wins,
// then column rules; a rule on a container wins over rules inside it.
//
// Paths run as a small NFA: per nesting level, one bitmask of live step
// positions per path (json-path.ts). Member names are decoded only while some
// path is live or a column rule exists, and interned by their bytes, so a
// repeated name costs a hash and a compare, not a string.
//
// Malformed input fails closed: from the first bad byte on (or from the start
// of the value under way), the rest of the body goes through StreamMasker as
// text, so the detectors still apply; `malformed` says so. A body that ends
// inside a value counts as malformed too.

import type { MaskingCounts } from '../../session/session.js';
import type { JsonFieldRule, MaskingSet } from './ruleset.js';
import type { Scanner } from './scanner.js';
import { copyBytes } from './bytes.js';
import { findingRoom, maskFindingInto, maskValueInto, WHOLE_VALUE_SLACK, type MaskContext } from './strategies.js';
import { StreamMasker } from './stream.js';
import type { Finding, Strategy } from './types.js';

export interface JsonStreamOptions {
  /** Values separated by whitespace (NDJSON, JSON lines, RFC 7464 sequences). */
  multi?: boolean;
  /** Longest string or number value held for masking (default 1 MiB); longer ones go out as "****". */
  maxString?: number;
  /** Deepest nesting accepted (default 1000); deeper is handled as malformed. */
  maxDepth?: number;
}

export interface JsonMaskFlags {
  /** The body was not valid JSON from byte `malformedAt` on (or ended inside a value): the rest was masked as text. */
  malformed: boolean;
  malformedAt: number;
  /** Values too long to hold, sent as "****". */
  oversized: number;
}

/** A rule as the masker uses it: field rules and column rules both have these. */
interface Rule {
  strategy: Strategy;
  pattern: string;
}

interface Sink {
  push(b: Buffer): void;
  end(): void;
}

// States between and inside tokens.
const VALUE = 0; // a value (top level, after ':' or after ',' in an array)
const ARR_FIRST = 1; // a value or ']'
const OBJ_FIRST = 2; // a member name or '}'
const KEY = 3; // a member name (after ',')
const COLON = 4;
const AFTER = 5; // after a value: ',' or a close bracket; at top level the next document
const STR = 6;
const NUM = 7;
const LIT = 8;
const DONE = 9; // single document complete: whitespace only

const OBJ = 1;
const ARR = 2;

// Byte classes.
const WS = new Uint8Array(256); // 1: JSON whitespace; 2: RS (0x1e), whitespace between records of a JSON text sequence
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1;
WS[0x1e] = 2;
const STRSPEC = new Uint8Array(256); // 1 '"', 2 '\', 3 control (not allowed in strings)
for (let c = 0; c < 0x20; c++) STRSPEC[c] = 3;
STRSPEC[0x22] = 1;
STRSPEC[0x5c] = 2;
const ESC1 = new Uint8Array(256); // the byte after '\' (u handled apart)
for (const ch of '"\\/bfnrt') ESC1[ch.charCodeAt(0)] = 1;
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;

// Number grammar: NT[state << 8 | byte] = next state, N_END (the number ended before this byte) or N_BAD.
// 0 after '-', 1 after a leading 0, 2 integer digits, 3 after '.', 4 fraction digits,
// 5 after e/E, 6 after the exponent sign, 7 exponent digits.
const N_END = 0xfe;
const N_BAD = 0xff;
const NT = new Uint8Array(8 * 256).fill(N_BAD);
{
  const accepting = [1, 2, 4, 7];
  for (const s of accepting) for (let c = 0; c < 256; c++) NT[(s << 8) | c] = N_END;
  const set = (s: number, chars: string, to: number): void => {
    for (const ch of chars) NT[(s << 8) | ch.charCodeAt(0)] = to;
  };
  const D = '0123456789';
  set(0, '0', 1);
  set(0, '123456789', 2);
  set(1, '.', 3);
  set(1, 'eE', 5);
  set(1, D, N_BAD); // "01"
  set(2, D, 2);
  set(2, '.', 3);
  set(2, 'eE', 5);
  set(3, D, 4);
  set(4, D, 4);
  set(4, 'eE', 5);
  set(5, '+-', 6);
  set(5, D, 7);
  set(6, D, 7);
  set(7, D, 7);
  // A number touching a letter, '.', '-', '+' or a digit where the grammar has none is malformed, not two tokens.
  for (const s of accepting) for (const ch of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.+-0123456789') {
    if (NT[(s << 8) | ch.charCodeAt(0)] === N_END) NT[(s << 8) | ch.charCodeAt(0)] = N_BAD;
  }
}

const LITERALS = [Buffer.from('true'), Buffer.from('false'), Buffer.from('null')];
const TRUE = 0;
const NULL_LIT = 2;
const NULL_BUF = Buffer.from('null');
const REDACTED_STR = Buffer.from('"****"');

// JSON string escaping of masked output: 0 as is, else the escape's second byte (u: \u00XX).
const QESC = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) QESC[c] = 0x75;
QESC[0x22] = 0x22;
QESC[0x5c] = 0x5c;
QESC[0x08] = 0x62;
QESC[0x0c] = 0x66;
QESC[0x0a] = 0x6e;
QESC[0x0d] = 0x72;
QESC[0x09] = 0x74;
const HEXCH = Buffer.from('0123456789abcdef');

/**
 * Decodes the JSON string content src[s, e) (escapes already validated) into dst as UTF-8;
 * returns the length. dst needs e - s bytes (an escape never decodes longer than it is written).
 * A lone surrogate becomes U+FFFD.
 */
export function decodeJsonString(src: Buffer, s: number, e: number, dst: Buffer): number {
  let o = 0;
  let i = s;
  while (i < e) {
    const c = src[i]!;
    if (c !== 0x5c) {
      dst[o++] = c;
      i++;
      continue;
    }
    const x = src[i + 1]!;
    i += 2;
    switch (x) {
      case 0x62: dst[o++] = 0x08; continue; // prettier-ignore
      case 0x66: dst[o++] = 0x0c; continue; // prettier-ignore
      case 0x6e: dst[o++] = 0x0a; continue; // prettier-ignore
      case 0x72: dst[o++] = 0x0d; continue; // prettier-ignore
      case 0x74: dst[o++] = 0x09; continue; // prettier-ignore
      case 0x75: break;
      default: dst[o++] = x; continue; // " \ /  prettier-ignore
    }
    let cp = hex4(src, i);
    i += 4;
    if (cp >= 0xd800 && cp < 0xdc00) {
      if (i + 6 <= e && src[i] === 0x5c && src[i + 1] === 0x75) {
        const lo = hex4(src, i + 2);
        if (lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i += 6;
        } else cp = 0xfffd;
      } else cp = 0xfffd;
    } else if (cp >= 0xdc00 && cp < 0xe000) cp = 0xfffd;
    if (cp < 0x80) dst[o++] = cp;
    else if (cp < 0x800) {
      dst[o++] = 0xc0 | (cp >> 6);
      dst[o++] = 0x80 | (cp & 63);
    } else if (cp < 0x10000) {
      dst[o++] = 0xe0 | (cp >> 12);
      dst[o++] = 0x80 | ((cp >> 6) & 63);
      dst[o++] = 0x80 | (cp & 63);
    } else {
      dst[o++] = 0xf0 | (cp >> 18);
      dst[o++] = 0x80 | ((cp >> 12) & 63);
      dst[o++] = 0x80 | ((cp >> 6) & 63);
      dst[o++] = 0x80 | (cp & 63);
    }
  }
  return o;
}

function hex4(b: Buffer, i: number): number {
  return (HEX[b[i]!]! << 12) | (HEX[b[i + 1]!]! << 8) | (HEX[b[i + 2]!]! << 4) | HEX[b[i + 3]!]!;
}

interface KeyEntry {
  raw: Buffer;
  hash: number;
  name: string;
  /** The column rule for this name; undefined: not looked up yet. */
  col: Rule | null | undefined;
  /** Per path: the steps (as bits) this name matches as a member. */
  masks: Int32Array;
  /** The name that came after this one last time (objects of one array repeat their names in order). */
  next: KeyEntry | null;
}

const SLICE = 8192;

interface KeyCache {
  table: Int32Array;
  entries: KeyEntry[];
}

/** The part of a masker that depends only on its rule set. */
interface Plan {
  rootRule: JsonFieldRule | null;
  paths: readonly JsonFieldRule[];
  np: number;
  descMask: Int32Array;
  anyMask: Int32Array;
  finMask: Int32Array;
  idxSteps: (number[] | null)[];
  keys: KeyCache;
  overlong: KeyEntry;
}

const plans = new WeakMap<MaskingSet, Plan>();

function planFor(set: MaskingSet): Plan {
  let plan = plans.get(set);
  if (plan) return plan;
  const paths = set.jsonFields.filter((f) => f.steps.length > 0);
  const np = paths.length;
  const descMask = new Int32Array(np);
  const anyMask = new Int32Array(np);
  const finMask = new Int32Array(np);
  const idxSteps: (number[] | null)[] = [];
  for (let p = 0; p < np; p++) {
    const steps = paths[p]!.steps;
    let ix: number[] | null = null;
    steps.forEach((st, k) => {
      if (st.desc) descMask[p]! |= 1 << k;
      if (st.name === null && st.index < 0) anyMask[p]! |= 1 << k;
      if (st.index >= 0) (ix ??= []).push(k, st.index);
    });
    finMask[p] = 1 << steps.length;
    idxSteps.push(ix);
  }
  plan = {
    rootRule: set.jsonFields.find((f) => f.steps.length === 0) ?? null,
    paths,
    np,
    descMask,
    anyMask,
    finMask,
    idxSteps,
    keys: { table: new Int32Array(KEY_TABLE), entries: [] },
    overlong: { raw: Buffer.alloc(0), hash: 0, name: OVERLONG_KEY, col: null, masks: anyMask, next: null },
  };
  plans.set(set, plan);
  return plan;
}
const KEY_TABLE = 8192; // open addressing, at most half full
const KEY_CACHE_MAX = KEY_TABLE / 2;
const KEY_MAX = 64 * 1024;
/** The name of a member name longer than KEY_MAX: matches only `*` steps. */
const OVERLONG_KEY = '\u0000overlong';

export class JsonStreamMasker {
  readonly flags: JsonMaskFlags = { malformed: false, malformedAt: -1, oversized: 0 };
  private readonly columns: Record<string, number> = {};
  private readonly detectors: Record<string, number> = {};
  private changedAny = false;

  private readonly multi: boolean;
  private readonly maxString: number;
  private readonly maxDepth: number;
  private readonly scanner: Scanner | null;
  private readonly strategyFor: (d: string) => Strategy;
  private readonly paths: readonly JsonFieldRule[];
  private readonly np: number;
  private readonly hasCol: boolean;
  private readonly rootRule: Rule | null;

  private st = VALUE;
  private depth = 0;
  private kinds = new Uint8Array(16);
  private idx = new Int32Array(16);
  private live = new Uint8Array(17);
  private nfa: Int32Array;
  private rules: (Rule | null)[] = [null];
  /** Per depth: the last member name of the open object, and the first name of the last object there. */
  private prevKey: (KeyEntry | null)[] = [null];
  private firstKey: (KeyEntry | null)[] = [null];
  /** The rule of the value about to start. */
  private vRule: Rule | null = null;

  // The token under way.
  private tokStart = 0; // where it started in the current chunk (0 when in an earlier one)
  private tokRule: Rule | null = null;
  private tokHold = false; // its bytes are held until it ends (it may be rewritten)
  private tokSkip = false; // too long: "****" went out, the rest is dropped
  private tokLen = 0; // bytes of it in earlier chunks
  private isKey = false;
  private keyNeeded = false;
  private hasEsc = false;
  private esc = 0; // 1: after '\'; 2..5: hex digits of \u left + 1
  private numSt = 0;
  private lit = 0;
  private litPos = 0;

  /** The chunk being pushed, its memory and its offset there (for out()). */
  private cur: Buffer | null = null;
  private ab: ArrayBufferLike | null = null;
  private off = 0;
  private hold = Buffer.alloc(0);
  private holdLen = 0;
  private scratch = Buffer.alloc(0);
  private scratch2 = Buffer.alloc(0);
  /** Interned member names, shared by every masker of the rule set. */
  private readonly keys: KeyCache;
  // Per path, as bits of step positions: steps that go on at any depth, any-child steps, the end.
  private readonly descMask: Int32Array;
  private readonly anyMask: Int32Array;
  private readonly finMask: Int32Array;
  /** Per path: [position, index, …] of its [n] steps, or null. */
  private readonly idxSteps: (number[] | null)[];
  private readonly overlong: KeyEntry;
  private readonly minScan: number;

  // Output of the current chunk: while nothing in it is rewritten its bytes go out as views of
  // it; from the first rewrite on, the chunk's output is built in ob (one Buffer per chunk).
  private ob: Buffer | null = null;
  private obLen = 0;
  private chunkLen = 0;
  private emitFrom = 0;
  private consumed = 0;
  private fb: Sink | null = null;
  private fbCounts: Record<string, number> | null = null;
  private ended = false;

  constructor(
    private readonly set: MaskingSet,
    private readonly ctx: MaskContext,
    private readonly emit: (b: Buffer) => void,
    opts: JsonStreamOptions = {},
  ) {
    this.multi = opts.multi === true;
    this.maxString = Math.max(opts.maxString ?? 1024 * 1024, 64);
    this.maxDepth = Math.max(opts.maxDepth ?? 1000, 1);
    this.scanner = set.scanner;
    this.strategyFor = set.strategyFor;
    this.hasCol = set.hasBareColumnRules;
    // What depends only on the rule set is compiled once per set and shared (a masker is made per response).
    const plan = planFor(set);
    this.rootRule = plan.rootRule;
    this.paths = plan.paths;
    this.np = plan.np;
    this.nfa = new Int32Array(17 * Math.max(this.np, 1));
    this.descMask = plan.descMask;
    this.anyMask = plan.anyMask;
    this.finMask = plan.finMask;
    this.idxSteps = plan.idxSteps;
    this.keys = plan.keys;
    this.overlong = plan.overlong;
    this.minScan = this.scanner?.minFindingLength ?? 1;
  }

  /** Whether any byte of the output differs from the input so far. */
  get changed(): boolean {
    return this.changedAny || (this.fbCounts !== null && Object.keys(this.fbCounts).length > 0);
  }

  /** Masked so far: per rule pattern (a value under a rule on a container counts each scalar) and per detector. */
  get counts(): MaskingCounts {
    const detectors = { ...this.detectors };
    if (this.fbCounts) for (const [k, v] of Object.entries(this.fbCounts)) detectors[k] = (detectors[k] ?? 0) + v;
    return { columns: { ...this.columns }, detectors };
  }

  push(buf: Buffer): void {
    if (this.ended || buf.length === 0) return;
    if (this.fb !== null) {
      this.fb.push(buf);
      return;
    }
    const n = buf.length;
    this.cur = buf;
    this.ab = buf.buffer;
    this.off = buf.byteOffset;
    this.emitFrom = 0;
    this.tokStart = 0;
    this.chunkLen = n;
    // In slices, so the tokenizer is a function called often (optimised whole, with feedback
    // for every path) rather than one long loop V8 can only optimise on stack.
    let i = 0;
    while (i < n) {
      i = this.run(buf, i, Math.min(n, i + SLICE));
      if (i < 0) return;
    }
    this.chunkEnd(buf, n);
  }

  /** Tokenizes buf[i, n); returns where it stopped (n), or -1 when the body turned out malformed. */
  private run(buf: Buffer, i: number, n: number): number {
    let st = this.st;
    const multi = this.multi;
    while (i < n) {
      switch (st) {
        case STR: {
          if (this.esc !== 0) {
            i = this.escape(buf, i, n);
            if (i < 0) return this.failed(buf, -i - 1);
            if (this.esc !== 0) break;
          }
          let c = 0;
          // Four bytes per test while none is special (one branch per four bytes), then byte by byte.
          while (i + 4 <= n && (STRSPEC[buf[i]!]! | STRSPEC[buf[i + 1]!]! | STRSPEC[buf[i + 2]!]! | STRSPEC[buf[i + 3]!]!) === 0) i += 4;
          while (i < n && (c = STRSPEC[buf[i]!]!) === 0) i++;
          if (i === n) break;
          i++;
          if (c === 1) st = this.isKey ? this.endKey(buf, i) : this.endString(buf, i);
          else if (c === 2) {
            this.hasEsc = true;
            this.esc = 1;
          } else return this.failed(buf, i - 1);
          break;
        }
        case AFTER: {
          let c = buf[i]!;
          while (WS[c] === 1 || (WS[c] === 2 && multi)) {
            if (++i === n) break;
            c = buf[i]!;
          }
          if (i === n) break;
          const d = this.depth;
          if (d === 0) {
            if (!multi) {
              st = DONE;
              break;
            }
            st = VALUE;
            break;
          }
          if (c === 0x2c) {
            st = this.kinds[d] === OBJ ? KEY : VALUE;
            i++;
          } else if ((c === 0x7d && this.kinds[d] === OBJ) || (c === 0x5d && this.kinds[d] === ARR)) {
            this.depth = d - 1;
            i++;
          } else return this.failed(buf, i);
          break;
        }
        case VALUE:
        case ARR_FIRST: {
          let c = buf[i]!;
          while (WS[c] === 1 || (WS[c] === 2 && multi && this.depth === 0)) {
            if (++i === n) break;
            c = buf[i]!;
          }
          if (i === n) break;
          if (c === 0x5d && st === ARR_FIRST) {
            this.depth--;
            st = AFTER;
            i++;
            break;
          }
          this.valueRule();
          if (c === 0x22) {
            this.startToken(i, false);
            this.hasEsc = false;
            st = STR;
            i++;
          } else if (c === 0x7b || c === 0x5b) {
            if (this.depth >= this.maxDepth) return this.failed(buf, i);
            this.open(c === 0x7b ? OBJ : ARR);
            st = c === 0x7b ? OBJ_FIRST : ARR_FIRST;
            i++;
          } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
            this.startToken(i, false);
            this.numSt = c === 0x2d ? 0 : c === 0x30 ? 1 : 2;
            st = NUM;
            i++;
          } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
            this.startToken(i, false);
            this.lit = c === 0x74 ? TRUE : c === 0x66 ? 1 : NULL_LIT;
            this.litPos = 1;
            st = LIT;
            i++;
          } else return this.failed(buf, i);
          break;
        }
        case NUM: {
          let s = this.numSt;
          let x = 0;
          while (i < n && (x = NT[(s << 8) | buf[i]!]!) < N_END) {
            s = x;
            i++;
          }
          this.numSt = s;
          if (i === n) break;
          if (x === N_BAD) return this.failed(buf, i);
          st = this.endNumber(buf, i);
          break;
        }
        case LIT: {
          const L = LITERALS[this.lit]!;
          let p = this.litPos;
          while (i < n && p < L.length) {
            if (buf[i] !== L[p]) return this.failed(buf, i);
            i++;
            p++;
          }
          this.litPos = p;
          if (p === L.length) st = this.endLiteral(buf, i);
          break;
        }
        case OBJ_FIRST:
        case KEY:
        case COLON: {
          let c = buf[i]!;
          while (WS[c] === 1) {
            if (++i === n) break;
            c = buf[i]!;
          }
          if (i === n) break;
          if (st === COLON) {
            if (c !== 0x3a) return this.failed(buf, i);
            st = VALUE;
          } else if (c === 0x22) {
            const d = this.depth;
            const needed = this.rules[d] === null && (this.hasCol || this.live[d] === 1);
            if (needed) {
              // Objects of one array repeat their names in order: when the name that followed the
              // previous one last time is here byte for byte, closing quote included, it is that
              // name (its bytes were validated when it was interned), so it is not tokenized.
              const prev = this.prevKey[d]!;
              const cand = prev === null ? this.firstKey[d]! : prev.next;
              if (cand !== null) {
                const r = cand.raw;
                const len = r.length;
                const s = i + 1;
                if (s + len < n && buf[s + len] === 0x22) {
                  let k = 0;
                  while (k < len && r[k] === buf[s + k]) k++;
                  if (k === len) {
                    this.prevKey[d] = cand;
                    st = this.keyRule(d, cand);
                    i = s + len + 1;
                    break;
                  }
                }
              }
            }
            this.keyNeeded = needed;
            this.startToken(i, true);
            this.hasEsc = false;
            st = STR;
          } else if (c === 0x7d && st === OBJ_FIRST) {
            this.depth--;
            st = AFTER;
          } else return this.failed(buf, i);
          i++;
          break;
        }
        case DONE: {
          while (i < n && WS[buf[i]!] === 1) i++;
          if (i < n) return this.failed(buf, i);
          break;
        }
      }
    }
    this.st = st;
    return i;
  }

  private failed(buf: Buffer, i: number): number {
    this.fail(buf, i);
    return -1;
  }

  private chunkEnd(buf: Buffer, n: number): void {
    const st = this.st;
    // The chunk's end: pass on what is decided, hold the value under way.
    if (this.tokHold && (st === STR || st === NUM || st === LIT)) {
      const add = n - this.tokStart;
      if (this.tokLen + add > this.maxString && st !== LIT) {
        this.out(buf, this.tokStart);
        this.oversize();
      } else if (!this.isKey) this.append(buf, this.tokStart, n);
      this.tokLen += add;
      this.flushOut(buf, this.tokStart);
    } else if (this.tokSkip) {
      this.flushOut(buf, this.tokStart);
      this.tokLen += n - this.tokStart;
    } else {
      if (st === STR && this.isKey && this.keyNeeded) {
        // Member names are not rewritten: they flow; only their bytes are kept to match rules.
        const add = n - this.tokStart;
        if (this.tokLen + add <= KEY_MAX) this.append(buf, this.tokStart, n);
        this.tokLen += add;
      }
      this.flushOut(buf, n);
    }
    this.consumed += n;
  }

  /** The body ended. */
  end(): void {
    if (this.ended) return;
    if (this.fb === null) {
      this.tokStart = 0;
      this.emitFrom = 0;
      if (this.st === NUM && this.depth === 0) {
        const empty = Buffer.alloc(0);
        this.st = this.endNumber(empty, 0);
        this.flushOut(empty, 0);
      }
      const st = this.st;
      const complete = this.depth === 0 && (st === AFTER || st === DONE || st === VALUE);
      if (!complete) this.fail(Buffer.alloc(0), 0);
    }
    this.ended = true;
    this.fb?.end();
  }

  // ---- tokens ----

  private startToken(i: number, key: boolean): void {
    this.tokStart = i;
    this.tokLen = 0;
    this.holdLen = 0;
    this.isKey = key;
    this.tokSkip = false;
    if (key) {
      this.tokHold = false;
      return;
    }
    this.tokRule = this.vRule;
    this.tokHold = this.vRule !== null || this.scanner !== null;
  }

  /** Sets vRule (and the path state of the child slot) for a value starting in the current container. */
  private valueRule(): void {
    const d = this.depth;
    if (d === 0) {
      this.vRule = this.rootRule;
      if (this.np > 0) {
        this.nfa.fill(1, this.np, 2 * this.np);
        this.live[1] = 1;
      } else this.live[1] = 0;
      return;
    }
    if (this.kinds[d] !== ARR) return; // a member's rule was set by its name
    const inherited = this.rules[d]!;
    if (inherited !== null) this.vRule = inherited;
    else if (this.live[d] === 1) this.vRule = this.step(d, null, this.idx[d]!);
    else {
      this.vRule = null;
      this.live[d + 1] = 0;
    }
    this.idx[d]++;
  }

  private open(kind: number): void {
    const d = ++this.depth;
    if (d + 1 >= this.kinds.length) this.grow();
    this.kinds[d] = kind;
    this.idx[d] = 0;
    this.rules[d] = this.vRule;
    this.prevKey[d] = null;
    if (d >= this.firstKey.length) this.firstKey.push(null);
  }

  private grow(): void {
    const size = this.kinds.length * 2;
    const k = new Uint8Array(size);
    k.set(this.kinds);
    this.kinds = k;
    const x = new Int32Array(size);
    x.set(this.idx);
    this.idx = x;
    const l = new Uint8Array(size + 1);
    l.set(this.live);
    this.live = l;
    const f = new Int32Array((size + 1) * Math.max(this.np, 1));
    f.set(this.nfa);
    this.nfa = f;
  }

  /**
   * Steps every path from the container at depth d into child slot d + 1, for a member whose name
   * matches the steps in masks (per path), or (masks null) for array element `index`. Returns the
   * first field rule that now matches.
   */
  private step(d: number, masks: Int32Array | null, index: number): Rule | null {
    const np = this.np;
    const nfa = this.nfa;
    const base = d * np;
    let matched: Rule | null = null;
    let any = 0;
    for (let p = 0; p < np; p++) {
      const cur = nfa[base + p]!;
      let nx = 0;
      if (cur !== 0) {
        const m = masks !== null ? masks[p]! : this.elementMask(p, index);
        nx = ((cur & m) << 1) | (cur & this.descMask[p]!);
        if (matched === null && (nx & this.finMask[p]!) !== 0) matched = this.paths[p]!;
      }
      nfa[base + np + p] = nx;
      any |= nx;
    }
    this.live[d + 1] = any !== 0 ? 1 : 0;
    return matched;
  }

  private elementMask(p: number, index: number): number {
    let m = this.anyMask[p]!;
    const ix = this.idxSteps[p]!;
    if (ix !== null) for (let j = 0; j < ix.length; j += 2) if (ix[j + 1] === index) m |= 1 << ix[j]!;
    return m;
  }

  /** A member name ended at i (after its quote): the rule of its value. */
  private endKey(buf: Buffer, i: number): number {
    const d = this.depth;
    const inherited = this.rules[d]!;
    if (inherited !== null) {
      this.vRule = inherited;
      return COLON;
    }
    if (!this.keyNeeded) {
      this.vRule = null;
      this.live[d + 1] = 0;
      return COLON;
    }
    const len = this.tokLen + (i - this.tokStart);
    let e: KeyEntry;
    if (len > KEY_MAX) e = this.overlong;
    else if (this.holdLen === 0) e = this.lookup(d, buf, this.tokStart + 1, i - 1);
    else {
      this.append(buf, 0, i);
      e = this.lookup(d, this.hold, 1, this.holdLen - 1);
    }
    this.holdLen = 0;
    return this.keyRule(d, e);
  }

  /** The member name e of the object at depth d was read: the rule of its value. */
  private keyRule(d: number, e: KeyEntry): number {
    let rule: Rule | null = null;
    if (this.live[d] === 1) rule = this.step(d, e.masks, -1);
    else this.live[d + 1] = 0;
    if (rule === null && this.hasCol) {
      if (e.col === undefined) e.col = this.set.columnRule({ column: e.name }) ?? null;
      rule = e.col;
    }
    this.vRule = rule;
    return COLON;
  }

  /** The member name in b[s, e) of the object at depth d: the one that followed the previous name last time, else interned. */
  private lookup(d: number, b: Buffer, s: number, e: number): KeyEntry {
    const prev = this.prevKey[d]!;
    const cand = prev === null ? this.firstKey[d]! : prev.next;
    let en: KeyEntry | null = null;
    if (cand !== null && cand.raw.length === e - s) {
      const r = cand.raw;
      let i = 0;
      while (i < r.length && r[i] === b[s + i]) i++;
      if (i === r.length) en = cand;
    }
    if (en === null) {
      en = this.intern(b, s, e);
      if (prev === null) this.firstKey[d] = en;
      else prev.next = en;
    }
    this.prevKey[d] = en;
    return en;
  }

  /** The member name in b[s, e) (raw, escapes and all), interned by its bytes. */
  private intern(b: Buffer, s: number, e: number): KeyEntry {
    let h = 0x811c9dc5;
    for (let i = s; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    const table = this.keys.table;
    let slot = h & (KEY_TABLE - 1);
    for (let x = table[slot]!; x !== 0; x = table[slot]!) {
      const en = this.keys.entries[x - 1]!;
      const r = en.raw;
      if (en.hash === h && r.length === e - s) {
        let i = 0;
        while (i < r.length && r[i] === b[s + i]) i++;
        if (i === r.length) return en;
      }
      slot = (slot + 1) & (KEY_TABLE - 1);
    }
    let name: string;
    if (this.hasEsc) {
      const dst = this.scratchFor(e - s);
      name = dst.toString('utf8', 0, decodeJsonString(b, s, e, dst));
    } else name = b.toString('utf8', s, e);
    if (this.keys.entries.length >= KEY_CACHE_MAX) {
      table.fill(0);
      this.keys.entries = [];
      slot = h & (KEY_TABLE - 1);
    }
    const masks = new Int32Array(this.np);
    for (let p = 0; p < this.np; p++) {
      const steps = this.paths[p]!.steps;
      for (let k = 0; k < steps.length; k++) {
        const st = steps[k]!;
        if (st.name !== null ? st.name === name : st.index < 0) masks[p]! |= 1 << k;
      }
    }
    const entry: KeyEntry = { raw: Buffer.from(b.subarray(s, e)), hash: h, name, col: undefined, masks, next: null };
    this.keys.entries.push(entry);
    table[slot] = this.keys.entries.length;
    return entry;
  }

  /** A string value ended at i (after its quote). */
  private endString(buf: Buffer, i: number): number {
    const st = this.depth === 0 && !this.multi ? DONE : AFTER;
    if (this.tokSkip) {
      this.tokSkip = false;
      this.emitFrom = i;
      return st;
    }
    if (!this.tokHold) return st;
    this.tokHold = false;
    const held = this.holdLen;
    const rule = this.tokRule;
    const len = this.tokLen + (i - this.tokStart);
    if (rule === null && len - 2 < this.minScan) {
      // Too short to hold a finding (escapes only make the value shorter).
      this.holdLen = 0;
      this.keep(buf, held);
      return st;
    }
    if (len > this.maxString) {
      this.holdLen = 0;
      this.out(buf, this.tokStart);
      this.oversizeOut();
      this.emitFrom = i;
      return st;
    }
    let raw = buf;
    let rs = this.tokStart;
    let re = i;
    if (held > 0) {
      this.append(buf, 0, i);
      raw = this.hold;
      rs = 0;
      re = this.holdLen;
    }
    this.holdLen = 0;
    let v = raw;
    let vs = rs + 1;
    let ve = re - 1;
    if (this.hasEsc) {
      v = this.scratchFor(ve - vs);
      ve = decodeJsonString(raw, vs, ve, v);
      vs = 0;
    }
    if (rule !== null) {
      this.out(buf, this.tokStart);
      this.writeWhole(rule, v, vs, ve, !this.hasEsc);
      this.rewritten(i);
      return st;
    }
    const f = this.scanner!.scan(v, vs, ve);
    if (f.length === 0) {
      this.keep(buf, held);
      return st;
    }
    this.out(buf, this.tokStart);
    this.writeFindings(v, vs, ve, f, !this.hasEsc);
    this.rewritten(i);
    return st;
  }

  private endNumber(buf: Buffer, i: number): number {
    const st = this.depth === 0 && !this.multi ? DONE : AFTER;
    if (this.tokSkip) {
      this.tokSkip = false;
      this.emitFrom = i;
      return st;
    }
    if (!this.tokHold) return st;
    this.tokHold = false;
    const held = this.holdLen;
    const len = this.tokLen + (i - this.tokStart);
    const rule = this.tokRule;
    if (rule === null && len < 13) {
      this.holdLen = 0;
      this.keep(buf, held); // too short for a card
      return st;
    }
    if (len > this.maxString) {
      this.holdLen = 0;
      this.out(buf, this.tokStart);
      this.oversizeOut();
      this.emitFrom = i;
      return st;
    }
    let raw = buf;
    let rs = this.tokStart;
    let re = i;
    if (held > 0) {
      this.append(buf, 0, i);
      raw = this.hold;
      rs = 0;
      re = this.holdLen;
    }
    this.holdLen = 0;
    if (rule !== null) {
      this.out(buf, this.tokStart);
      this.writeWhole(rule, raw, rs, re, true);
      this.rewritten(i);
      return st;
    }
    const f = this.scanner!.scan(raw, rs, re);
    if (f.length === 0) {
      this.keep(buf, held);
      return st;
    }
    this.out(buf, this.tokStart);
    this.writeFindings(raw, rs, re, f, true);
    this.rewritten(i);
    return st;
  }

  private endLiteral(buf: Buffer, i: number): number {
    const st = this.depth === 0 && !this.multi ? DONE : AFTER;
    if (!this.tokHold) return st;
    this.tokHold = false;
    const held = this.holdLen;
    this.holdLen = 0;
    const rule = this.tokRule;
    // null carries nothing to hide; a boolean under a rule is masked like its text.
    if (rule === null || this.lit === NULL_LIT) {
      this.keep(buf, held);
      return st;
    }
    const L = LITERALS[this.lit]!;
    this.out(buf, this.tokStart);
    this.writeWhole(rule, L, 0, L.length, true);
    this.rewritten(i);
    return st;
  }

  /**
   * v[s, e) with its findings masked, as a JSON string, into the output: maskFindings' result
   * without its intermediate Buffers. plain: v has no byte JSON must escape (a string that had no
   * escapes, a number), so neither has the result (replacements are made of its bytes, '*', '@',
   * markers and hex tokens): it is written straight into the output.
   */
  private writeFindings(v: Buffer, s: number, e: number, f: readonly Finding[], plain: boolean): void {
    const ctx = this.ctx;
    if (plain) {
      let room = e - s + 2;
      for (let k = 0; k < f.length; k++) room += findingRoom(0, f[k]!.detector);
      const ob = this.reserve(room);
      let o = this.obLen;
      ob[o++] = 0x22;
      let cur = s;
      for (let k = 0; k < f.length; k++) {
        const x = f[k]!;
        const fs = s + x.start;
        const fe = s + x.end;
        this.detectors[x.detector] = (this.detectors[x.detector] ?? 0) + 1;
        o = copyBytes(v, cur, fs, ob, o);
        o = maskFindingInto(this.strategyFor(x.detector), v, fs, fe, x.detector, ctx, ob, o);
        cur = fe;
      }
      o = copyBytes(v, cur, e, ob, o);
      ob[o++] = 0x22;
      this.obLen = o;
      return;
    }
    this.reserve(2);
    this.ob![this.obLen++] = 0x22;
    let cur = s;
    for (let k = 0; k < f.length; k++) {
      const x = f[k]!;
      const fs = s + x.start;
      const fe = s + x.end;
      this.detectors[x.detector] = (this.detectors[x.detector] ?? 0) + 1;
      this.escapeInto(v, cur, fs);
      const rep = this.scratch2For(findingRoom(fe - fs, x.detector));
      const n = maskFindingInto(this.strategyFor(x.detector), v, fs, fe, x.detector, ctx, rep, 0);
      this.escapeInto(rep, 0, n);
      cur = fe;
    }
    this.escapeInto(v, cur, e);
    this.reserve(1);
    this.ob![this.obLen++] = 0x22;
  }

  /** A whole value under a rule, as JSON: a string, or null for strategy null. plain: as for writeFindings. */
  private writeWhole(rule: Rule, v: Buffer, s: number, e: number, plain: boolean): void {
    this.columns[rule.pattern] = (this.columns[rule.pattern] ?? 0) + 1;
    const need = e - s + WHOLE_VALUE_SLACK;
    if (plain) {
      const ob = this.reserve(need + 2);
      const o = this.obLen;
      const n = maskValueInto(rule.strategy, v, s, e, this.ctx, ob, o + 1);
      if (n < 0) this.write(NULL_BUF, 0, 4);
      else {
        ob[o] = 0x22;
        ob[n] = 0x22;
        this.obLen = n + 1;
      }
      return;
    }
    const sc = this.scratch2For(need);
    const n = maskValueInto(rule.strategy, v, s, e, this.ctx, sc, 0);
    if (n < 0) this.write(NULL_BUF, 0, 4);
    else this.quote(sc, 0, n);
  }

  private scratch2For(n: number): Buffer {
    if (this.scratch2.length < n) this.scratch2 = Buffer.allocUnsafe(Math.max(n, this.scratch2.length * 2, 256));
    return this.scratch2;
  }

  /** The held token, replaced, ended at i: the input goes on from there. */
  private rewritten(i: number): void {
    this.emitFrom = i;
    this.changedAny = true;
  }

  /** The held token goes out as it was: the part held from earlier chunks now, the part in this chunk flows on. */
  private keep(buf: Buffer, held: number): void {
    if (held === 0) return;
    this.out(buf, this.tokStart);
    this.write(this.hold, 0, held);
  }

  /** The value under way is too long to hold: "****" now, the rest of it dropped as it comes. */
  private oversize(): void {
    this.oversizeOut();
    this.holdLen = 0;
    this.tokHold = false;
    this.tokSkip = true;
  }

  private oversizeOut(): void {
    this.flags.oversized++;
    const r = this.tokRule;
    if (r !== null) this.columns[r.pattern] = (this.columns[r.pattern] ?? 0) + 1;
    this.write(REDACTED_STR, 0, REDACTED_STR.length);
    this.changedAny = true;
  }

  /** Validates escape bytes from i; returns where the string goes on, or -(bad byte's index) - 1. */
  private escape(buf: Buffer, i: number, n: number): number {
    let e = this.esc;
    while (i < n && e !== 0) {
      const c = buf[i]!;
      if (e === 1) {
        if (c === 0x75) e = 5;
        else if (ESC1[c] === 1) e = 0;
        else return -i - 1;
      } else {
        if (HEX[c]! < 0) return -i - 1;
        e = e === 2 ? 0 : e - 1;
      }
      i++;
    }
    this.esc = e;
    return i;
  }

  // ---- output and buffers ----

  /** Room for n more bytes in ob (started on the chunk's first rewrite). */
  private reserve(n: number): Buffer {
    const ob = this.ob;
    if (ob === null) return (this.ob = Buffer.allocUnsafe(Math.max(this.chunkLen + (this.chunkLen >> 3) + 256, n * 2)));
    if (this.obLen + n <= ob.length) return ob;
    const next = Buffer.allocUnsafe(Math.max(ob.length * 2, this.obLen + n));
    ob.copy(next, 0, 0, this.obLen);
    return (this.ob = next);
  }

  /** Copies buf[emitFrom, to) to the output. */
  private out(buf: Buffer, to: number): void {
    const from = this.emitFrom;
    this.emitFrom = to;
    if (to <= from) return;
    const len = to - from;
    const ob = this.reserve(len);
    if (len > 32 && buf === this.cur) {
      // Spans between rewrites: a view over the chunk's memory and set() cost less than Buffer#copy
      // (argument checks) or a byte loop.
      ob.set(new Uint8Array(this.ab!, this.off + from, len), this.obLen);
      this.obLen += len;
    } else this.obLen = copyBytes(buf, from, to, ob, this.obLen);
  }

  private write(b: Buffer, s: number, e: number): void {
    const ob = this.reserve(e - s);
    this.obLen = copyBytes(b, s, e, ob, this.obLen);
  }

  /** v[s, e) as a JSON string literal, into the output. */
  private quote(v: Buffer, s: number, e: number): void {
    this.reserve(e - s + 2);
    this.ob![this.obLen++] = 0x22;
    this.escapeInto(v, s, e);
    this.ob![this.obLen++] = 0x22;
  }

  /** v[s, e) JSON-escaped into the output. */
  private escapeInto(v: Buffer, s: number, e: number): void {
    if (e <= s) return;
    const ob = this.reserve((e - s) * 6);
    let o = this.obLen;
    for (let i = s; i < e; i++) {
      const c = v[i]!;
      const q = QESC[c]!;
      if (q === 0) ob[o++] = c;
      else if (q !== 0x75) {
        ob[o++] = 0x5c;
        ob[o++] = q;
      } else {
        ob[o++] = 0x5c;
        ob[o++] = 0x75;
        ob[o++] = 0x30;
        ob[o++] = 0x30;
        ob[o++] = HEXCH[c >> 4]!;
        ob[o++] = HEXCH[c & 15]!;
      }
    }
    this.obLen = o;
  }

  /** What is decided up to `to` in buf goes out: a view of buf while nothing was rewritten, else ob. */
  private flushOut(buf: Buffer, to: number): void {
    if (this.ob === null) {
      const from = this.emitFrom;
      if (to > from) this.emit(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
      this.emitFrom = to;
      return;
    }
    this.out(buf, to);
    const ob = this.ob;
    const n = this.obLen;
    this.ob = null;
    this.obLen = 0;
    if (n > 0) this.emit(ob.subarray(0, n));
  }

  private append(buf: Buffer, s: number, e: number): void {
    const need = this.holdLen + (e - s);
    if (need > this.hold.length) {
      const next = Buffer.allocUnsafe(Math.max(need, this.hold.length * 2, 256));
      this.hold.copy(next, 0, 0, this.holdLen);
      this.hold = next;
    }
    buf.copy(this.hold, this.holdLen, s, e);
    this.holdLen = need;
  }

  private scratchFor(n: number): Buffer {
    if (this.scratch.length < n) this.scratch = Buffer.allocUnsafe(Math.max(n, this.scratch.length * 2, 256));
    return this.scratch;
  }

  /**
   * Not JSON from buf[i] on: what is not out yet (the value under way from its start, or from i)
   * goes to a text masker with the rest of the body.
   */
  private fail(buf: Buffer, i: number): void {
    this.flags.malformed = true;
    this.flags.malformedAt = this.consumed + i;
    let held: Buffer | null = null;
    if (this.tokHold) {
      this.flushOut(buf, this.tokStart);
      if (this.holdLen > 0) held = Buffer.from(this.hold.subarray(0, this.holdLen));
    } else if (this.tokSkip) {
      this.emitFrom = Math.max(i, this.emitFrom); // the rest of a value already sent as "****"
      this.flushOut(buf, this.emitFrom);
    } else this.flushOut(buf, i);
    this.tokSkip = false;
    this.holdLen = 0;
    this.tokHold = false;
    const scanner = this.scanner;
    if (scanner !== null) {
      const sm = new StreamMasker(scanner, this.strategyFor, this.ctx, (b) => this.emit(b));
      this.fbCounts = sm.counts;
      this.fb = sm;
    } else {
      const emit = this.emit;
      this.fb = { push: (b) => emit(b), end: () => {} };
    }
    if (held !== null) this.fb.push(held);
    if (this.emitFrom < buf.length) this.fb.push(Buffer.from(buf.subarray(this.emitFrom)));
    this.consumed += buf.length;
  }
}
