// Streaming CSV masking (RFC 4180: ',' between cells, CRLF or LF between
// records, '"'-quoted cells with '""' for a quote, which may hold commas and
// line breaks). The header row names the columns: a `columns:` rule with a bare
// name (`email`) masks that column's cells whole; the detectors scan every cell
// (the header's too), unquoted first. Bytes go out as they came except masked
// cells, which are re-quoted when they were quoted or now need it. A chunk may
// split anything anywhere. A cell longer than maxCell under masking goes out
// as "****" (fail closed), so memory stays bounded.
//
// Not RFC 4180 (a quote inside an unquoted cell, bytes after a closing quote,
// a body ending inside quotes): from there on the rest is masked as text by
// StreamMasker (detectors still apply; column rules cannot), and `malformed`
// says so.

import type { MaskingCounts } from '../../session/session.js';
import type { MaskingSet } from './ruleset.js';
import { maskFindings, maskValue, type MaskContext } from './strategies.js';
import { StreamMasker } from './stream.js';
import type { Strategy } from './types.js';

export interface CsvStreamOptions {
  /** Longest cell held for masking (default 1 MiB). */
  maxCell?: number;
}

const START = 0; // a cell begins
const UNQ = 1; // in an unquoted cell
const QUOTED = 2; // inside quotes
const QQ = 3; // after a quote inside a quoted cell: '"' (escaped quote) or the cell's end

const HEADER_NAME_MAX = 64 * 1024;
const STOP = new Uint8Array(256); // ends an unquoted cell (or makes it malformed)
for (const c of [0x2c, 0x0a, 0x0d, 0x22]) STOP[c] = 1;

interface Rule {
  strategy: Strategy;
  pattern: string;
}

export class CsvStreamMasker {
  readonly flags = { malformed: false, malformedAt: -1, oversized: 0 };
  private readonly columns: Record<string, number> = {};
  private readonly detectors: Record<string, number> = {};
  private changedAny = false;
  private readonly maxCell: number;

  private st = START;
  private row = 0;
  private col = 0;
  private readonly rules: (Rule | null)[] = [];
  private quoted = false;
  /** The last record ended with CR: a LF right after it belongs to the same line break. */
  private afterCR = false;
  private hasEsc = false;
  private tokStart = 0;
  private tokLen = 0;
  private tokHold = false;
  private tokSkip = false;
  private hold = Buffer.alloc(0);
  private holdLen = 0;
  private emitFrom = 0;
  private consumed = 0;
  private fb: StreamMasker | null = null;
  private fbPass = false;
  private ended = false;

  constructor(
    private readonly set: MaskingSet,
    private readonly ctx: MaskContext,
    private readonly emit: (b: Buffer) => void,
    opts: CsvStreamOptions = {},
  ) {
    this.maxCell = Math.max(opts.maxCell ?? 1024 * 1024, 64);
  }

  get changed(): boolean {
    return this.changedAny || (this.fb !== null && Object.keys(this.fb.counts).length > 0);
  }

  get counts(): MaskingCounts {
    const detectors = { ...this.detectors };
    if (this.fb) for (const [k, v] of Object.entries(this.fb.counts)) detectors[k] = (detectors[k] ?? 0) + v;
    return { columns: { ...this.columns }, detectors };
  }

  push(buf: Buffer): void {
    if (this.ended || buf.length === 0) return;
    if (this.fb !== null || this.fbPass) return this.fbPush(buf);
    const n = buf.length;
    this.emitFrom = 0;
    this.tokStart = 0;
    let i = 0;
    let st = this.st;
    while (i < n) {
      if (st === START) {
        if (this.afterCR) {
          this.afterCR = false;
          if (buf[i] === 0x0a) {
            i++;
            continue;
          }
        }
        this.startCell(i);
        if (buf[i] === 0x22) {
          this.quoted = true;
          st = QUOTED;
          i++;
        } else st = UNQ;
      } else if (st === UNQ) {
        while (i < n && STOP[buf[i]!] === 0) i++;
        if (i === n) break;
        if (buf[i] === 0x22) return this.fail(buf, i);
        this.endCell(buf, i);
        st = START;
        i++;
      } else if (st === QUOTED) {
        const q = buf.indexOf(0x22, i);
        if (q < 0) {
          i = n;
          break;
        }
        i = q + 1;
        st = QQ;
      } else {
        const c = buf[i]!;
        if (c === 0x22) {
          this.hasEsc = true;
          st = QUOTED;
          i++;
        } else if (c === 0x2c || c === 0x0a || c === 0x0d) {
          this.endCell(buf, i);
          st = START;
          i++;
        } else return this.fail(buf, i);
      }
    }
    this.st = st;
    if (this.tokHold) {
      this.out(buf, this.tokStart);
      const add = n - this.tokStart;
      if (this.tokLen + add > this.maxCell) {
        this.oversizeOut();
        this.tokHold = false;
        this.tokSkip = true;
        this.holdLen = 0;
      } else this.append(buf, this.tokStart, n);
      this.tokLen += add;
    } else if (this.tokSkip) {
      this.out(buf, this.tokStart);
    } else this.out(buf, n);
    this.consumed += n;
  }

  end(): void {
    if (this.ended) return;
    if (this.fb === null && !this.fbPass) {
      this.tokStart = 0;
      this.emitFrom = 0;
      const empty = Buffer.alloc(0);
      if (this.st === QUOTED) this.fail(empty, 0);
      else if (this.st === UNQ || this.st === QQ) this.endCell(empty, 0);
    }
    this.ended = true;
    this.fb?.end();
  }

  private startCell(i: number): void {
    this.tokStart = i;
    this.tokLen = 0;
    this.holdLen = 0;
    this.quoted = false;
    this.hasEsc = false;
    this.tokSkip = false;
    this.tokHold = this.row === 0 || this.set.scanner !== null || (this.rules[this.col] ?? null) !== null;
  }

  /** The cell under way ends at i (the separator, not consumed here); a separator moves the column/row. */
  private endCell(buf: Buffer, i: number): void {
    const sep = i < buf.length ? buf[i]! : -1;
    const header = this.row === 0;
    if (this.tokSkip) {
      this.tokSkip = false;
      this.emitFrom = i;
    } else if (this.tokHold) this.finishCell(buf, i, header);
    this.tokHold = false;
    if (sep === 0x2c) this.col++;
    else if (sep === 0x0a || sep === 0x0d) {
      this.afterCR = sep === 0x0d;
      this.row++;
      this.col = 0;
    }
  }

  private finishCell(buf: Buffer, i: number, header: boolean): void {
    const held = this.holdLen;
    const len = this.tokLen + (i - this.tokStart);
    const rule = header ? null : (this.rules[this.col] ?? null);
    if (len > this.maxCell) {
      this.holdLen = 0;
      if (header) this.rules[this.col] = null;
      this.out(buf, this.tokStart);
      this.oversizeOut();
      this.emitFrom = i;
      return;
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
    // The cell's value: unquoted, '""' as '"'.
    let v = raw;
    let vs = rs;
    let ve = re;
    if (this.quoted) {
      vs++;
      ve--;
      if (this.hasEsc) {
        v = Buffer.from(raw.subarray(vs, ve).toString('latin1').replaceAll('""', '"'), 'latin1');
        vs = 0;
        ve = v.length;
      }
    }
    if (header) {
      const name = ve - vs > HEADER_NAME_MAX ? '' : v.toString('utf8', vs, ve);
      this.rules[this.col] = name === '' ? null : (this.set.columnRule({ column: name }) ?? null);
    }
    let rep: Buffer | null = null;
    if (ve === vs) {
      // An empty cell (or a blank line) has nothing to hide.
    } else if (rule !== null) {
      this.columns[rule.pattern] = (this.columns[rule.pattern] ?? 0) + 1;
      rep = maskValue(rule.strategy, v.subarray(vs, ve), this.ctx) ?? Buffer.alloc(0);
    } else if (this.set.scanner !== null) {
      const f = this.set.scanner.scan(v, vs, ve);
      if (f.length > 0) {
        for (const x of f) this.detectors[x.detector] = (this.detectors[x.detector] ?? 0) + 1;
        rep = maskFindings(v, vs, ve, f, this.set.strategyFor, this.ctx);
      }
    }
    if (rep !== null) {
      this.out(buf, this.tokStart);
      this.emit(csvCell(rep, this.quoted));
      this.emitFrom = i;
      this.changedAny = true;
    } else if (held > 0) {
      this.out(buf, this.tokStart);
      this.emit(Buffer.from(this.hold.subarray(0, held)));
    }
  }

  private oversizeOut(): void {
    this.flags.oversized++;
    const r = this.row === 0 ? null : (this.rules[this.col] ?? null);
    if (r !== null) this.columns[r.pattern] = (this.columns[r.pattern] ?? 0) + 1;
    this.emit(Buffer.from(this.quoted ? '"****"' : '****'));
    this.changedAny = true;
  }

  private out(buf: Buffer, to: number): void {
    const from = this.emitFrom;
    if (to > from) this.emit(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
    this.emitFrom = to;
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

  private fail(buf: Buffer, i: number): void {
    this.flags.malformed = true;
    this.flags.malformedAt = this.consumed + i;
    let held: Buffer | null = null;
    if (this.tokHold) {
      this.out(buf, this.tokStart);
      if (this.holdLen > 0) held = Buffer.from(this.hold.subarray(0, this.holdLen));
    } else if (this.tokSkip) this.emitFrom = Math.max(i, this.emitFrom);
    else this.out(buf, i);
    this.tokHold = this.tokSkip = false;
    this.holdLen = 0;
    const scanner = this.set.scanner;
    if (scanner !== null) this.fb = new StreamMasker(scanner, this.set.strategyFor, this.ctx, (b) => this.emit(b));
    else this.fbPass = true;
    if (held !== null) this.fbPush(held);
    if (this.emitFrom < buf.length) this.fbPush(Buffer.from(buf.subarray(this.emitFrom)));
    this.consumed += buf.length;
  }

  private fbPush(b: Buffer): void {
    if (this.fb !== null) this.fb.push(b);
    else this.emit(b);
  }
}

/** A masked cell as CSV: quoted when it was, or when it now holds a comma, quote or line break. */
function csvCell(v: Buffer, quoted: boolean): Buffer {
  let q = quoted;
  let quotes = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === 0x22) quotes++;
    if (c === 0x22 || c === 0x2c || c === 0x0a || c === 0x0d) q = true;
  }
  if (!q) return v;
  const out = Buffer.allocUnsafe(v.length + quotes + 2);
  let o = 0;
  out[o++] = 0x22;
  for (let i = 0; i < v.length; i++) {
    out[o++] = v[i]!;
    if (v[i] === 0x22) out[o++] = 0x22;
  }
  out[o] = 0x22;
  return out;
}
