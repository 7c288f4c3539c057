// In-stream masking of Postgres results: DataRows rebuilt one at a time with
// correct lengths, ErrorResponse/NoticeResponse fields, with nothing buffered
// beyond the current message. Columns no rule can touch are skipped without
// reading their bytes; a row with nothing to mask goes out as the same slice.

import type { MaskingCounts, Session } from '../../core/sessions.js';
import type { ColumnRef, MaskingSet } from '../../policy/masking/ruleset.js';
import { maskFindings, maskValue } from '../../policy/masking/strategies.js';
import type { Finding, Strategy } from '../../policy/masking/types.js';
import type { CatalogCache } from './catalog.js';
import { B } from './constants.js';

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
}

interface RawColumn {
  name: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
  binary: boolean;
}

function parseRowDescription(buf: Buffer, s: number): RawColumn[] {
  const n = buf.readInt16BE(s + 5);
  const out: RawColumn[] = [];
  let o = s + 7;
  for (let i = 0; i < n; i++) {
    const z = buf.indexOf(0, o);
    const name = buf.toString('utf8', o, z);
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
const REDACTED = Buffer.from('****');

/** Copies src[s, e) to dst at d; a byte loop for short spans, where Buffer#copy's call overhead dominates. */
function copySpan(src: Buffer, s: number, e: number, dst: Buffer, d: number): number {
  const n = e - s;
  if (n > 48) src.copy(dst, d, s, e);
  else for (let i = 0; i < n; i++) dst[d + i] = src[s + i]!;
  return n;
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
  ) {}

  private get set(): MaskingSet | null {
    return this.session.masking();
  }

  /** Whether the backend handler must see messages of this type whole. */
  wants(type: number): boolean {
    switch (type) {
      case B.RowDescription:
        if (this.set) return true;
        this.plan = null;
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
    this.plan = null;
    if (!set) return null;
    const cols = parseRowDescription(buf, s);
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
      };
      if (p.act !== Act.None) any = true;
      return p;
    });
    this.plan = any ? plan : null;
  }

  /** A replacement for one column-rule value, valid for its type; null means SQL NULL. */
  private columnValue(p: ColPlan, buf: Buffer, vs: number, ve: number): Buffer | null {
    if (!p.textLike || p.strategy === 'null') return null;
    const start = p.versionByte ? vs + 1 : vs;
    const masked = p.strategy === 'redact' ? REDACTED : maskValue(p.strategy, buf.subarray(start, ve), this.session.maskContext);
    if (masked === null) return null;
    if (!p.json) return masked;
    const asJson = Buffer.from(JSON.stringify(masked.toString('utf8')), 'utf8');
    return p.versionByte ? Buffer.concat([Buffer.from([1]), asJson]) : asJson;
  }

  /** A DataRow: the rebuilt message, or null to forward it unchanged. */
  onDataRow(buf: Buffer, s: number, e: number): Buffer | null {
    const plan = this.plan!;
    const set = this.set;
    const ctx = this.session.maskContext;
    const n = buf.readInt16BE(s + 5);
    let o = s + 7;
    let repl: (Buffer | null | undefined)[] | null = null;
    let delta = 0;
    for (let i = 0; i < n; i++) {
      const len = buf.readInt32BE(o);
      o += 4;
      if (len < 0) continue;
      const vs = o;
      const ve = o + len;
      o = ve;
      const p = plan[i];
      if (!p || p.act === Act.None) continue;
      let r: Buffer | null;
      if (p.act === Act.Column) {
        r = this.columnValue(p, buf, vs, ve);
        this.counts.columns[p.rule] = (this.counts.columns[p.rule] ?? 0) + 1;
      } else {
        const ds = p.versionByte ? vs + 1 : vs;
        const f = set!.scanner!.scan(buf, ds, ve);
        if (f.length === 0) continue;
        for (const x of f) this.counts.detectors[x.detector] = (this.counts.detectors[x.detector] ?? 0) + 1;
        const masked = maskFindings(buf, ds, ve, f, set!.strategyFor, ctx);
        r = p.versionByte ? Buffer.concat([buf.subarray(vs, ds), masked]) : masked;
      }
      repl ??= new Array(n);
      repl[i] = r;
      delta += (r === null ? 0 : r.length) - len;
      this.dirty = true;
    }
    if (!repl) return null;
    // Rebuild: unchanged spans (length words and values) are copied in one go,
    // replaced columns are written in between.
    const out = Buffer.allocUnsafe(e - s + delta);
    out[0] = B.DataRow;
    out.writeInt32BE(e - s - 1 + delta, 1);
    out.writeInt16BE(n, 5);
    let w = 7;
    let spanStart = s + 7;
    o = s + 7;
    for (let i = 0; i < n; i++) {
      const colStart = o;
      const len = buf.readInt32BE(o);
      o += 4 + (len > 0 ? len : 0);
      const r = repl[i];
      if (r === undefined) continue;
      w += copySpan(buf, spanStart, colStart, out, w);
      spanStart = o;
      if (r === null) {
        out.writeInt32BE(NULL_LEN, w);
        w += 4;
      } else {
        out.writeInt32BE(r.length, w);
        w += 4 + copySpan(r, 0, r.length, out, w + 4);
      }
    }
    copySpan(buf, spanStart, e, out, w);
    return out;
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
    const where = {
      schema: fields.find((f) => f[0] === 0x73 /* s */)?.[1].toString('utf8'),
      table: fields.find((f) => f[0] === 0x74 /* t */)?.[1].toString('utf8'),
    };
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
      const text = v.toString('utf8');
      const key = KEY_DETAIL.exec(text);
      if (key && key[1]!.split(',').some((c) => set.columnRule({ ...where, column: c.trim().replace(/^"|"$/g, '') }))) {
        this.dirty = true;
        this.counts.columns['(error detail)'] = (this.counts.columns['(error detail)'] ?? 0) + 1;
        return Buffer.from(`Key (${key[1]})=(****)${key[3]}`, 'utf8');
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
    return maskFindings(v, 0, v.length, f, set.strategyFor, this.session.maskContext);
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
    this.session.maskingApplied(this.counts);
    this.counts = { columns: {}, detectors: {} };
    this.dirty = false;
  }
}
