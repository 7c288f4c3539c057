// In-stream masking of Postgres results: DataRows rebuilt one at a time with
// correct lengths, ErrorResponse/NoticeResponse fields, with nothing buffered
// beyond the current message. Columns no rule can touch are skipped without
// reading their bytes; a row with nothing to mask goes out as the same slice.

import type { MaskingCounts, Session } from '../../session/session.js';
import type { ColumnRef, MaskingSet } from '../../policy/masking/ruleset.js';
import { copyBytes } from '../../policy/masking/bytes.js';
import { maskFindings, maskValue, maskValueInto, WHOLE_VALUE_SLACK } from '../../policy/masking/strategies.js';
import type { Finding, Strategy } from '../../policy/masking/types.js';
import type { CatalogCache } from './catalog.js';
import { ClientText, type PgTextCodec } from './encoding.js';
import type { MaskContext } from '../../policy/masking/strategies.js';
import { B } from './constants.js';
import { ProtocolViolation } from './framer.js';
import type { OutSlab } from './out-slab.js';

// Type OIDs whose text form is the value itself.
const TEXT = 25;
const VARCHAR = 1043;
const BPCHAR = 1042;
const NAME = 19;
const CHAR = 18;
export const JSON_ = 114;
export const JSONB = 3802;
const XML = 142;
const UNKNOWN = 705;
/** Types that may carry free text in binary format (jsonb with its version byte). */
const BINARY_TEXTLIKE = new Set([TEXT, VARCHAR, BPCHAR, NAME, JSON_, JSONB, UNKNOWN, XML]);
/** In text format also "char" and user-defined types (domains over text, citext, enums): OIDs from 16384 up. */
export const isTextLike = (oid: number, binary: boolean) =>
  binary ? BINARY_TEXTLIKE.has(oid) : BINARY_TEXTLIKE.has(oid) || oid === CHAR || oid >= 16384;

/** What masking does to one result column (shared with the COPY masker). */
export const enum Act {
  None,
  Detect,
  Column,
}

export interface ColumnPlan {
  act: Act;
  strategy: Strategy;
  /** For accounting: the column rule pattern. */
  rule: string;
  textLike: boolean;
  json: boolean;
}

interface ColPlan extends ColumnPlan {
  /** jsonb in binary: one version byte before the text. */
  versionByte: boolean;
  /** Values masked by the column rule since the last flush (counted here: no keyed store per row). */
  masked: number;
}

interface RawColumn {
  name: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
  binary: boolean;
}

function parseRowDescription(buf: Buffer, s: number, codec: PgTextCodec): RawColumn[] {
  const n = buf.readInt16BE(s + 5);
  const out: RawColumn[] = [];
  let o = s + 7;
  for (let i = 0; i < n; i++) {
    const z = buf.indexOf(0, o);
    const name = codec.decode(buf, o, z);
    o = z + 1;
    out.push({
      name,
      tableOid: buf.readUInt32BE(o),
      attnum: buf.readInt16BE(o + 4),
      typeOid: buf.readUInt32BE(o + 6),
      binary: buf.readInt16BE(o + 16) === 1,
    });
    o += 18;
  }
  return out;
}

const NULL_LEN = -1;

function putInt32(b: Buffer, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = v >>> 16;
  b[at + 2] = v >>> 8;
  b[at + 3] = v;
}

const FIELD_SKIP = new Set([0x53, 0x56, 0x43, 0x50, 0x70, 0x46, 0x4c, 0x52, 0x73, 0x74, 0x63, 0x64, 0x6e]); // S V C P p F L R s t c d n
const KEY_DETAIL = /^Key \((.+?)\)=\((.*)\)( .*)$/s;
const FAILING_ROW = /^Failing row contains \(.*\)\.?$/s;

export class PgMasker {
  private plan: ColPlan[] | null = null;
  private counts: MaskingCounts = { columns: {}, detectors: {} };
  private dirty = false;
  /** Columns of the last RowDescription, while its catalog lookup runs. */
  private pendingCols: RawColumn[] | null = null;

  constructor(
    private readonly session: Session,
    private readonly catalog: CatalogCache | null,
    /** The client's encoding: names and error texts are read in it, and masks written in it. */
    private readonly text: ClientText = new ClientText(),
  ) {}

  private ctxBase: MaskContext | null = null;
  private ctxBytewise: MaskContext | null = null;

  /** The masking context for the client's current encoding (partial counts bytes unless it is UTF-8). */
  maskContextFor(codec: PgTextCodec = this.text.codec): MaskContext {
    const base = this.session.maskContext;
    if (codec.utf8) return base;
    if (this.ctxBase !== base || !this.ctxBytewise) {
      this.ctxBase = base;
      this.ctxBytewise = { ...base, bytesAreChars: true };
    }
    return this.ctxBytewise;
  }

  private get set(): MaskingSet | null {
    return this.session.masking();
  }

  /** Whether the backend handler must see messages of this type whole. */
  wants(type: number): boolean {
    switch (type) {
      case B.RowDescription:
        if (this.set) return true;
        this.setPlan(null);
        return false;
      case B.DataRow:
        return this.plan !== null;
      case B.ErrorResponse:
      case B.NoticeResponse:
        return this.set !== null;
      default:
        return false;
    }
  }

  /**
   * A RowDescription: builds the column plan. Returns a promise when table OIDs
   * must be looked up first (the caller pauses the stream until it settles).
   */
  onRowDescription(buf: Buffer, s: number): Promise<void> | null {
    const set = this.set;
    this.setPlan(null);
    if (!set) return null;
    const cols = parseRowDescription(buf, s, this.text.codec);
    if (set.hasColumnRules && this.catalog) {
      const missing = [...new Set(cols.filter((c) => c.tableOid !== 0 && !this.catalog!.cached(c.tableOid)).map((c) => c.tableOid))];
      if (missing.length) {
        this.pendingCols = cols;
        return this.catalog.load(missing).then(() => {
          this.buildPlan(this.pendingCols!);
          this.pendingCols = null;
        });
      }
    }
    this.buildPlan(cols);
    return null;
  }

  private buildPlan(cols: RawColumn[]): void {
    const set = this.set;
    if (!set) return;
    let any = false;
    const plan = cols.map((c): ColPlan => {
      const textLike = isTextLike(c.typeOid, c.binary);
      const ref: ColumnRef = (c.tableOid !== 0 && this.catalog?.cached(c.tableOid)?.get(c.attnum)) || { column: c.name };
      const rule = set.hasColumnRules ? set.columnRule(ref) : undefined;
      const p: ColPlan = {
        act: rule ? Act.Column : textLike && set.scanner ? Act.Detect : Act.None,
        strategy: rule?.strategy ?? 'redact',
        rule: rule?.pattern ?? '',
        textLike,
        json: c.typeOid === JSON_ || c.typeOid === JSONB,
        versionByte: c.binary && c.typeOid === JSONB,
        masked: 0,
      };
      if (p.act !== Act.None) any = true;
      return p;
    });
    this.setPlan(any ? plan : null);
  }

  /** Replaces the plan; the old one's counts go into counts first. */
  private setPlan(plan: ColPlan[] | null): void {
    this.countPlan();
    this.plan = plan;
  }

  /** Moves the plan's per-column counts into counts. */
  private countPlan(): void {
    if (this.plan === null) return;
    for (const p of this.plan) {
      if (p.masked === 0) continue;
      this.counts.columns[p.rule] = (this.counts.columns[p.rule] ?? 0) + p.masked;
      p.masked = 0;
    }
  }

  /**
   * A column-rule value written at out.pos (the length word is the caller's): returns the new
   * offset, or -1 for SQL NULL. Valid for its type: JSON columns get a JSON string.
   */
  private columnValueInto(p: ColPlan, buf: Buffer, vs: number, ve: number, out: OutSlab): number {
    if (!p.textLike || p.strategy === 'null') return -1;
    const start = p.versionByte ? vs + 1 : vs;
    const codec = this.text.codec;
    if (!p.json) return maskValueInto(p.strategy, buf, start, ve, this.maskContextFor(codec), out.buf, out.pos);
    const masked = maskValue(p.strategy, buf.subarray(start, ve), this.maskContextFor(codec));
    if (masked === null) return -1;
    const asJson = codec.encode(JSON.stringify(codec.decode(masked)));
    out.ensure(asJson.length + 1);
    let w = out.pos;
    if (p.versionByte) out.buf[w++] = 1;
    return w + asJson.copy(out.buf, w);
  }

  /**
   * A DataRow: rewritten into `out` (returns true: the original is dropped), or false to forward it
   * unchanged. Columns are copied as they are read; nothing is written until the first column that
   * changes, so a row no rule touches costs no copy at all.
   */
  onDataRow(buf: Buffer, s: number, e: number, out: OutSlab): boolean {
    const plan = this.plan!;
    const set = this.set;
    const n = (buf[s + 5]! << 8) | buf[s + 6]!;
    let o = s + 7;
    /** Source bytes [s, copied) are in out (or need no copy yet when started is false). */
    let copied = s;
    let started = false;
    for (let i = 0; i < n; i++) {
      const colStart = o;
      // Big-endian int32 by hand: readInt32BE's checks cost more than the read, once per column.
      const len = (buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!;
      o += 4;
      if (len < 0) continue;
      const vs = o;
      const ve = o + len;
      if (ve > e) throw new ProtocolViolation(`DataRow column ${i + 1} of ${len} bytes runs past the end of its message`);
      o = ve;
      const p = plan[i];
      if (!p || p.act === Act.None) continue;
      let findings: readonly Finding[] | null = null;
      if (p.act === Act.Detect) {
        findings = set!.scanner!.scan(buf, p.versionByte ? vs + 1 : vs, ve);
        if (findings.length === 0) continue;
      }
      // This column changes: bring out up to its length word.
      if (!started) {
        started = true;
        out.begin(e - s + WHOLE_VALUE_SLACK + 64);
      }
      out.ensure(colStart - copied + 4 + len + WHOLE_VALUE_SLACK);
      out.pos = copyBytes(buf, copied, colStart, out.buf, out.pos);
      copied = ve;
      out.pos += 4;
      let end: number;
      if (findings === null) {
        end = this.columnValueInto(p, buf, vs, ve, out);
        p.masked++;
      } else {
        for (const x of findings) this.counts.detectors[x.detector] = (this.counts.detectors[x.detector] ?? 0) + 1;
        const ds = p.versionByte ? vs + 1 : vs;
        const masked = maskFindings(buf, ds, ve, findings, set!.strategyFor, this.maskContextFor());
        out.ensure(4 + (ds - vs) + masked.length);
        end = copyBytes(buf, vs, ds, out.buf, out.pos);
        end = copyBytes(masked, 0, masked.length, out.buf, end);
      }
      // out.buf may have moved (ensure): the length word is relative to the message start.
      const at = out.pos - 4;
      if (end < 0) {
        putInt32(out.buf, at, NULL_LEN);
        out.pos = at + 4;
      } else {
        putInt32(out.buf, at, end - at - 4);
        out.pos = end;
      }
      this.dirty = true;
    }
    if (!started) return false;
    out.ensure(e - copied);
    out.pos = copyBytes(buf, copied, e, out.buf, out.pos);
    // The message length: everything written since begin, minus the type byte.
    putInt32(out.buf, out.messageStart + 1, out.pos - out.messageStart - 1);
    return true;
  }

  /** ErrorResponse/NoticeResponse with sensitive values masked, or null when unchanged. */
  onNotice(buf: Buffer, s: number, e: number): Buffer | null {
    const set = this.set;
    if (!set) return null;
    const fields: [number, Buffer][] = [];
    let o = s + 5;
    while (o < e && buf[o] !== 0) {
      const z = buf.indexOf(0, o + 1);
      fields.push([buf[o]!, buf.subarray(o + 1, z)]);
      o = z + 1;
    }
    // Schema and table of a constraint violation, for table-qualified column rules.
    const codec = this.text.codec;
    const s_ = fields.find((f) => f[0] === 0x73 /* s */)?.[1];
    const t_ = fields.find((f) => f[0] === 0x74 /* t */)?.[1];
    const where = { schema: s_ && codec.decode(s_), table: t_ && codec.decode(t_) };
    let changed = false;
    for (const f of fields) {
      if (FIELD_SKIP.has(f[0])) continue;
      const m = this.maskField(f[0], f[1], set, where);
      if (m !== f[1]) {
        f[1] = m;
        changed = true;
      }
    }
    if (!changed) return null;
    let len = 4 + 1;
    for (const [, v] of fields) len += 2 + v.length;
    const out = Buffer.allocUnsafe(1 + len);
    out[0] = buf[s]!;
    out.writeInt32BE(len, 1);
    let w = 5;
    for (const [c, v] of fields) {
      out[w++] = c;
      v.copy(out, w);
      w += v.length;
      out[w++] = 0;
    }
    out[w] = 0;
    return out;
  }

  private maskField(code: number, v: Buffer, set: MaskingSet, where: { schema?: string; table?: string }): Buffer {
    // DETAIL of unique/foreign-key violations names columns: mask the values of masked columns.
    if (code === 0x44 /* D */ && set.hasColumnRules) {
      const codec = this.text.codec;
      const text = codec.decode(v);
      const key = KEY_DETAIL.exec(text);
      if (key && key[1]!.split(',').some((c) => set.columnRule({ ...where, column: c.trim().replace(/^"|"$/g, '') }))) {
        this.dirty = true;
        this.counts.columns['(error detail)'] = (this.counts.columns['(error detail)'] ?? 0) + 1;
        return codec.encode(`Key (${key[1]})=(****)${key[3]}`);
      }
      if (FAILING_ROW.test(text)) {
        this.dirty = true;
        this.counts.columns['(error detail)'] = (this.counts.columns['(error detail)'] ?? 0) + 1;
        return Buffer.from('Failing row contains (****).', 'utf8');
      }
    }
    if (!set.scanner) return v;
    const f = set.scanner.scan(v, 0, v.length);
    if (f.length === 0) return v;
    for (const x of f) this.counts.detectors[x.detector] = (this.counts.detectors[x.detector] ?? 0) + 1;
    this.dirty = true;
    return maskFindings(v, 0, v.length, f, set.strategyFor, this.maskContextFor());
  }

  /** One value masked by a column rule elsewhere in this statement's results (COPY). */
  countColumn(rule: string): void {
    this.counts.columns[rule] = (this.counts.columns[rule] ?? 0) + 1;
    this.dirty = true;
  }

  /** Detector findings masked elsewhere in this statement's results (COPY). */
  countFindings(findings: readonly Finding[]): void {
    for (const x of findings) this.counts.detectors[x.detector] = (this.counts.detectors[x.detector] ?? 0) + 1;
    if (findings.length) this.dirty = true;
  }

  /** End of a statement's results: one audit event with the counts. */
  flush(): void {
    if (!this.dirty) return;
    this.countPlan();
    this.session.maskingApplied(this.counts);
    this.counts = { columns: {}, detectors: {} };
    this.dirty = false;
  }
}
