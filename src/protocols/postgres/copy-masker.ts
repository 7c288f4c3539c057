// Masking of COPY … TO STDOUT output (text and CSV formats), per column, in the
// stream; binary COPY out is refused while masking applies (unless the rule sets
// allow it). COPY FROM and COPY to a server file are not masked: their data goes
// to the server.
//
// Which statement a CopyOutResponse belongs to: the frontend side records, in
// order, every request the server will answer (simple Query, Execute, Sync,
// FunctionCall) with the COPY … TO STDOUT statements among them, read from the
// parse tree; the backend side consumes those records as the answers arrive
// (an Execute ends at CommandComplete/EmptyQueryResponse/PortalSuspended/
// ErrorResponse, the rest at ReadyForQuery), so a CopyOutResponse pairs with the
// statement that produced it even when requests are pipelined or fail. A
// CopyOutResponse that pairs with nothing known is refused.
//
// Columns: `COPY t [(cols)]` is described as `SELECT cols|* FROM t`, `COPY
// (query)` as the query itself, on the catalog side connection (Parse +
// Describe: nothing runs); RowDescription gives each column's table OID and
// attnum, the catalog cache turns those into schema.table.column for the column
// rules. The backend stream is paused at the CopyOutResponse while that runs.
//
// Rows: one CopyData per row is what Postgres sends, but rows may be split
// across CopyData messages or several may share one; at most one partial row is
// held (bounded). Fields with nothing to mask are copied byte for byte; a
// CopyData with nothing to mask goes out as the same slice.
//
// Fail closed: a COPY is refused (an error instead of its data; the server's
// data and completion are dropped, the session goes on) when it is binary,
// when its statement or columns cannot be resolved (the side connection does
// not see the client's temporary tables, nor a search_path the client set),
// under client encodings whose multibyte characters can hide delimiters, and
// while standard_conforming_strings is off (the server would read the
// statement differently from Sluice). A row that does not split into the
// expected fields, or grows beyond the limit, stops the COPY the same way.

import { pgQuery } from '../../policy/sql/pgquery.js';
import type { Session } from '../../session/session.js';
import type { ColumnRef, MaskingSet } from '../../policy/masking/ruleset.js';
import { maskFindings, maskValue } from '../../policy/masking/strategies.js';
import type { Strategy } from '../../policy/masking/types.js';
import { LruCache } from '../../policy/lru.js';
import { isUnsafeClientEncoding } from '../../policy/sql/parser-safety.js';
import type { CatalogCache, DescribedColumn } from './catalog.js';
import { B, F } from './constants.js';
import { Act, isTextLike, JSON_, JSONB, type ColumnPlan, type PgMasker } from './masker.js';
import { errorResponse } from './messages.js';
import { ClientText, textCodec, type PgTextCodec } from './encoding.js';

// ---------------------------------------------------------------- COPY statements

export interface CopyOptions {
  format: 'text' | 'csv' | 'binary';
  /** One byte each. */
  delimiter: number;
  quote: number;
  escape: number;
  /** The NULL marker as it appears in the data. */
  null: Buffer;
  header: boolean;
  /** FORCE_QUOTE: every column, these column names, or none. */
  forceQuote: '*' | string[] | null;
  /** ENCODING option, when given. */
  encoding?: string;
}

export interface CopySpec {
  /** The COPY statement's own text. */
  text: string;
  /** SQL whose result columns are the COPY's columns; null when Sluice cannot build it. */
  describe: string | null;
  /** `COPY table` without a column list: the server leaves generated columns out. */
  wholeTable: boolean;
  /** null: options Sluice cannot read (the COPY is refused if the server runs it). */
  options: CopyOptions | null;
}

/** The raw parse tree is JSON whose shape libpg-query only loosely types. */
type J = any;

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

function defString(arg: J): string | undefined {
  if (arg === undefined) return undefined;
  if (arg.String) return String(arg.String.sval ?? '');
  if (arg.Integer) return String(arg.Integer.ival ?? 0);
  if (arg.Float) return String(arg.Float.fval ?? '');
  if (arg.Boolean) return arg.Boolean.boolval ? 'true' : 'false';
  if (arg.TypeName) return (arg.TypeName.names ?? []).map((n: J) => n.String?.sval ?? '').join('.');
  return undefined;
}

/** Postgres' defGetBoolean: no argument means true. undefined: not a boolean (e.g. MATCH). */
function defBoolean(arg: J): boolean | undefined {
  if (arg === undefined) return true;
  if (arg.Boolean) return arg.Boolean.boolval === true;
  if (arg.Integer) {
    const v = arg.Integer.ival ?? 0;
    return v === 0 ? false : v === 1 ? true : undefined;
  }
  const s = defString(arg)?.toLowerCase();
  if (s === 'true' || s === 'on' || s === 'yes' || s === '1') return true;
  if (s === 'false' || s === 'off' || s === 'no' || s === '0') return false;
  return undefined;
}

function oneByte(s: string | undefined): number | null {
  if (s === undefined) return null;
  const b = Buffer.from(s, 'utf8');
  return b.length === 1 ? b[0]! : -1;
}

/** The options of a CopyStmt (DefElem list), or null when they are not readable. */
export function copyOptions(list: J[] | undefined): CopyOptions | null {
  let format: CopyOptions['format'] = 'text';
  let delimiter: number | null = null;
  let quote: number | null = null;
  let escape: number | null = null;
  let nul: string | undefined;
  let header = false;
  let forceQuote: CopyOptions['forceQuote'] = null;
  let encoding: string | undefined;
  for (const item of list ?? []) {
    const d = item.DefElem;
    if (!d) return null;
    const arg = d.arg;
    switch (d.defname) {
      case 'format': {
        const f = defString(arg)?.toLowerCase();
        if (f !== 'text' && f !== 'csv' && f !== 'binary') return null;
        format = f;
        break;
      }
      case 'delimiter':
        delimiter = oneByte(defString(arg));
        break;
      case 'quote':
        quote = oneByte(defString(arg));
        break;
      case 'escape':
        escape = oneByte(defString(arg));
        break;
      case 'null':
        nul = defString(arg);
        if (nul === undefined) return null;
        break;
      case 'header': {
        const h = defBoolean(arg);
        if (h === undefined) return null;
        header = h;
        break;
      }
      case 'force_quote':
        if (arg?.A_Star) forceQuote = '*';
        else if (arg?.List) forceQuote = (arg.List.items ?? []).map((x: J) => String(x.String?.sval ?? ''));
        else return null;
        break;
      case 'encoding':
        encoding = defString(arg);
        break;
      default:
        break; // FROM-only options (the server rejects them for TO), or new ones that do not change the layout
    }
  }
  if (delimiter === -1 || quote === -1 || escape === -1) return null;
  const csv = format === 'csv';
  const delim = delimiter ?? (csv ? 0x2c : 0x09);
  const q = quote ?? 0x22;
  return {
    format,
    delimiter: delim,
    quote: q,
    escape: escape ?? q,
    null: Buffer.from(nul ?? (csv ? '' : '\\N'), 'utf8'),
    header,
    forceQuote,
    encoding,
  };
}

function relationName(rv: J): string {
  return [rv.catalogname, rv.schemaname, rv.relname].filter((x) => typeof x === 'string' && x !== '').map(quoteIdent).join('.');
}

/** The text between the parentheses right after COPY, found by tokens (strings and quoted names are single tokens). */
function innerQuery(stmt: Buffer): string | null {
  let tokens;
  try {
    tokens = pgQuery().scanSync(stmt.toString('utf8')).tokens;
  } catch {
    return null;
  }
  if (tokens.length < 3 || tokens[0]!.text.toLowerCase() !== 'copy' || tokens[1]!.text !== '(') return null;
  let depth = 0;
  for (let i = 1; i < tokens.length; i++) {
    const t = tokens[i]!.text;
    if (t === '(') depth++;
    else if (t === ')' && --depth === 0) return stmt.toString('utf8', tokens[1]!.end, tokens[i]!.start);
  }
  return null;
}

function specOf(n: J, text: Buffer): CopySpec {
  const stmt = text.toString('utf8').trim();
  let describe: string | null = null;
  let wholeTable = false;
  if (n.relation) {
    const cols: string[] = (n.attlist ?? []).map((x: J) => x.String?.sval).filter((x: unknown) => typeof x === 'string');
    wholeTable = cols.length === 0;
    describe = `SELECT ${wholeTable ? '*' : cols.map(quoteIdent).join(', ')} FROM ${relationName(n.relation)}`;
  } else if (n.query) {
    describe = innerQuery(text);
  }
  return { text: stmt, describe, wholeTable, options: copyOptions(n.options) };
}

/** The COPY … TO STDOUT statements of `sql`, in order (none when it does not parse). */
export function copySpecs(sql: string): CopySpec[] {
  if (!/copy/i.test(sql)) return [];
  let tree: J;
  try {
    tree = pgQuery().parseSync(sql);
  } catch {
    return [];
  }
  const bytes = Buffer.from(sql, 'utf8');
  const out: CopySpec[] = [];
  for (const r of tree.stmts ?? []) {
    const n = r.stmt?.CopyStmt;
    if (!n || n.is_from || n.is_program || n.filename !== undefined) continue;
    const start: number = r.stmt_location ?? 0;
    const len: number = r.stmt_len ?? 0;
    out.push(specOf(n, bytes.subarray(start, len > 0 ? start + len : bytes.length)));
  }
  return out;
}

const specCache = new LruCache<string, CopySpec[]>({ maxEntries: 2000, maxWeight: 16 * 1024 * 1024, weigh: (k) => k.length * 2 });

const NONE: CopySpec[] = [];

function copySpecsCached(sql: string): CopySpec[] {
  if (!/copy/i.test(sql)) return NONE;
  let s = specCache.get(sql);
  if (s === undefined) {
    s = copySpecs(sql);
    specCache.set(sql, s);
  }
  return s;
}

// ---------------------------------------------------------------- rows and fields

export class CopyRowTooLong extends Error {
  override name = 'CopyRowTooLong';
}

const NL = 0x0a;
const CR = 0x0d;
const BS = 0x5c;

// CSV scanning states.
const OUT = 0;
const IN = 1;
const IN_ESC = 2; // inside quotes, after an escape char (escape ≠ quote)
const IN_QUOTE = 3; // inside quotes, after a quote char (escape = quote): doubled quote or the closing one

/**
 * Splits a COPY TO data stream (text or CSV format) into rows, whatever the
 * chunking. Rows are reported whole, with their '\n'; a row still incomplete at
 * the end of a chunk is kept (copied) until the rest arrives, up to `maxPartial`
 * bytes (then CopyRowTooLong).
 */
export class CopyRowSplitter {
  private partial: Buffer[] = [];
  private partialLen = 0;
  private state = OUT;

  constructor(
    private readonly csv: boolean,
    private readonly quote: number,
    private readonly escape: number,
    private readonly maxPartial: number,
  ) {}

  /** Bytes of the incomplete row held. */
  get pending(): number {
    return this.partialLen;
  }

  /**
   * Feeds buf[start, end). `onRow(b, s, e, carried)`: a whole row is b[s, e);
   * carried is true when it began in an earlier chunk (b is then a new Buffer).
   */
  feed(buf: Buffer, start: number, end: number, onRow: (b: Buffer, s: number, e: number, carried: boolean) => void): void {
    let rowStart = start;
    let i = start;
    while (i < end) {
      const j = this.csv ? this.scanCsv(buf, i, end) : buf.indexOf(NL, i);
      if (j < 0 || j >= end) break;
      if (this.partialLen > 0) {
        this.partial.push(buf.subarray(rowStart, j + 1));
        const row = Buffer.concat(this.partial, this.partialLen + (j + 1 - rowStart));
        this.partial = [];
        this.partialLen = 0;
        onRow(row, 0, row.length, true);
      } else {
        onRow(buf, rowStart, j + 1, false);
      }
      rowStart = i = j + 1;
    }
    if (rowStart < end) {
      this.partialLen += end - rowStart;
      if (this.partialLen > this.maxPartial) throw new CopyRowTooLong(`a COPY row exceeds ${this.maxPartial} bytes`);
      this.partial.push(Buffer.from(buf.subarray(rowStart, end)));
    }
  }

  /** The held incomplete row (at CopyDone), and forgets it. */
  take(): Buffer | null {
    if (this.partialLen === 0) return null;
    const b = Buffer.concat(this.partial, this.partialLen);
    this.partial = [];
    this.partialLen = 0;
    this.state = OUT;
    return b;
  }

  /** Index of the next row-ending '\n' outside quotes in buf[i, end), or -1; keeps the quote state across chunks. */
  private scanCsv(buf: Buffer, i: number, end: number): number {
    const q = this.quote;
    const esc = this.escape;
    let st = this.state;
    while (i < end) {
      const c = buf[i]!;
      switch (st) {
        case OUT:
          if (c === NL) {
            this.state = OUT;
            return i;
          }
          if (c === q) st = IN;
          i++;
          break;
        case IN:
          if (c === esc && esc !== q) st = IN_ESC;
          else if (c === q) st = esc === q ? IN_QUOTE : OUT;
          i++;
          break;
        case IN_ESC:
          st = IN;
          if (c === q || c === esc) i++; // escaped: literal
          break; // else: the escape char was literal; read c again inside the quotes
        case IN_QUOTE:
          if (c === q) {
            st = IN; // doubled quote: literal
            i++;
          } else st = OUT; // closing quote; read c again outside
          break;
      }
    }
    this.state = st;
    return -1;
  }
}

/** Field bounds of a row's content buf[s, e) (no '\n'): pushes start, end pairs into `out`; returns the count. */
export function splitFields(buf: Buffer, s: number, e: number, o: CopyOptions, out: number[]): number {
  out.length = 0;
  const d = o.delimiter;
  let fs = s;
  if (o.format !== 'csv') {
    for (let i = s; i < e; i++) {
      const c = buf[i]!;
      if (c === BS) i++;
      else if (c === d) {
        out.push(fs, i);
        fs = i + 1;
      }
    }
  } else {
    const q = o.quote;
    const esc = o.escape;
    let st = OUT;
    for (let i = s; i < e; i++) {
      const c = buf[i]!;
      if (st === OUT) {
        if (c === d) {
          out.push(fs, i);
          fs = i + 1;
        } else if (c === q) st = IN;
      } else if (c === esc && esc !== q) {
        const n = buf[i + 1];
        if (i + 1 < e && (n === q || n === esc)) i++;
      } else if (c === q) {
        if (esc === q && i + 1 < e && buf[i + 1] === q) i++;
        else st = OUT;
      }
    }
  }
  out.push(fs, e);
  return out.length >> 1;
}

const isOctal = (c: number) => c >= 0x30 && c <= 0x37;
function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** The value of a text-format field (backslash escapes resolved, as Postgres' COPY FROM reads them). */
export function unescapeText(buf: Buffer, s: number, e: number): Buffer {
  const b = buf.indexOf(BS, s);
  if (b < 0 || b >= e) return buf.subarray(s, e);
  const out = Buffer.allocUnsafe(e - s);
  let w = 0;
  for (let i = s; i < e; i++) {
    let c = buf[i]!;
    if (c === BS && i + 1 < e) {
      c = buf[++i]!;
      switch (c) {
        case 0x62: c = 0x08; break; // b
        case 0x66: c = 0x0c; break; // f
        case 0x6e: c = 0x0a; break; // n
        case 0x72: c = 0x0d; break; // r
        case 0x74: c = 0x09; break; // t
        case 0x76: c = 0x0b; break; // v
        case 0x78: { // x: one or two hex digits
          const h1 = i + 1 < e ? hexVal(buf[i + 1]!) : -1;
          if (h1 >= 0) {
            i++;
            c = h1;
            const h2 = i + 1 < e ? hexVal(buf[i + 1]!) : -1;
            if (h2 >= 0) {
              i++;
              c = (c << 4) + h2;
            }
          }
          break;
        }
        default:
          if (isOctal(c)) {
            let v = c - 0x30;
            for (let k = 0; k < 2 && i + 1 < e && isOctal(buf[i + 1]!); k++) v = (v << 3) + (buf[++i]! - 0x30);
            c = v & 0xff;
          }
      }
    }
    out[w++] = c;
  }
  return out.subarray(0, w);
}

/** The value of a CSV field (quotes removed, escapes resolved). */
export function unescapeCsv(buf: Buffer, s: number, e: number, q: number, esc: number): Buffer {
  const f = buf.indexOf(q, s);
  if (f < 0 || f >= e) return buf.subarray(s, e);
  const out = Buffer.allocUnsafe(e - s);
  let w = 0;
  let inq = false;
  for (let i = s; i < e; i++) {
    const c = buf[i]!;
    if (!inq) {
      if (c === q) inq = true;
      else out[w++] = c;
    } else if (c === esc && esc !== q && i + 1 < e && (buf[i + 1] === q || buf[i + 1] === esc)) {
      out[w++] = buf[++i]!;
    } else if (c === q) {
      if (esc === q && i + 1 < e && buf[i + 1] === q) out[w++] = buf[++i]!;
      else inq = false;
    } else out[w++] = c;
  }
  return out.subarray(0, w);
}

const TEXT_ESC = new Uint8Array(256); // 0: as is; 1: backslash + byte; other: backslash + this letter
TEXT_ESC[BS] = 1;
TEXT_ESC[0x08] = 0x62;
TEXT_ESC[0x0c] = 0x66;
TEXT_ESC[NL] = 0x6e;
TEXT_ESC[CR] = 0x72;
TEXT_ESC[0x09] = 0x74;
TEXT_ESC[0x0b] = 0x76;

/** A value written as a text-format field (as Postgres' COPY TO writes it). */
export function escapeText(v: Buffer, delim: number): Buffer {
  let n = 0;
  for (const c of v) if (TEXT_ESC[c] !== 0 || c === delim) n++;
  if (n === 0) return v;
  const out = Buffer.allocUnsafe(v.length + n);
  let w = 0;
  for (const c of v) {
    const x = TEXT_ESC[c]!;
    if (x > 1) {
      out[w++] = BS;
      out[w++] = x;
    } else if (x === 1 || c === delim) {
      out[w++] = BS;
      out[w++] = c;
    } else out[w++] = c;
  }
  return out;
}

/** A value written as a CSV field (as Postgres' COPY TO writes it). */
export function escapeCsv(v: Buffer, o: CopyOptions, force: boolean, singleColumn: boolean): Buffer {
  const q = o.quote;
  const esc = o.escape;
  let quote = force || v.equals(o.null);
  if (!quote) {
    if (singleColumn && v.length === 2 && v[0] === BS && v[1] === 0x2e) quote = true; // the \. end marker
    else for (const c of v) if (c === o.delimiter || c === q || c === NL || c === CR) {
      quote = true;
      break;
    }
  }
  if (!quote) return v;
  let n = 2;
  for (const c of v) n += c === q || c === esc ? 2 : 1;
  const out = Buffer.allocUnsafe(n);
  let w = 0;
  out[w++] = q;
  for (const c of v) {
    if (c === q || c === esc) out[w++] = esc;
    out[w++] = c;
  }
  out[w++] = q;
  return out;
}

// ---------------------------------------------------------------- the protocol side

interface ColPlan extends ColumnPlan {
  forceQuote: boolean;
}

/** A request the server answers: an Execute (ends at its completion), a simple Query, or a Sync/FunctionCall (end at ReadyForQuery). */
type Entry = { kind: 'x'; spec: CopySpec | null } | { kind: 'q'; specs: CopySpec[] } | { kind: 's' };

const enum Mode {
  /** Not in a COPY OUT Sluice touches: nothing wanted. */
  Idle,
  /** Rows are masked. */
  Mask,
  /** Refused: CopyData, CopyDone and the completion are dropped (an error went to the client instead). */
  Swallow,
}

/** Largest incomplete row held across CopyData messages. */
export const MAX_PARTIAL_ROW = 64 * 1024 * 1024;

class CopyAbort extends Error {}

const cstr = (buf: Buffer, o: number, end: number): [string, number] => {
  const z = buf.indexOf(0, o);
  const e = z < 0 || z >= end ? end : z;
  return [buf.toString('utf8', o, e), e + 1];
};

export class CopyMasker {
  // Frontend side.
  private queue: Entry[] = [];
  private readonly statements = new Map<string, CopySpec>();
  private readonly portals = new Map<string, CopySpec>();

  // Backend side.
  private claimed = false;
  private mode = Mode.Idle;
  /** The encoding of the COPY data being masked (its ENCODING option, else the client's). */
  private dataCodec: PgTextCodec = textCodec('UTF8');
  /** standard_conforming_strings (reported by the server): off makes the server read backslashes in strings differently from Sluice's parser. */
  private conformingStrings = true;
  private opts: CopyOptions | null = null;
  private plan: ColPlan[] = [];
  private splitter: CopyRowSplitter | null = null;
  private headerPending = false;
  private set: MaskingSet | null = null;
  private readonly bounds: number[] = [];

  constructor(
    private readonly session: Session,
    private readonly catalog: CatalogCache | null,
    private readonly masker: PgMasker,
    /** Queues a message to the client at the current point of the backend stream. */
    private readonly emit: (b: Buffer) => void,
    private readonly limits: {
      /** Client messages larger than this are not buffered (their COPY statements, if any, are then refused). */
      maxMessage?: number;
      /** Largest incomplete row held (default MAX_PARTIAL_ROW). */
      maxPartialRow?: number;
    } = {},
    /** The client's encoding (shared with the relay): statements are read in it; ParameterStatus updates it. */
    private readonly text: ClientText = new ClientText(),
  ) {}

  private reset(): void {
    this.queue = [];
    this.statements.clear();
    this.portals.clear();
  }

  // ---- frontend

  /** Whether the frontend handler must see this client message whole (`length` as in its header). */
  wantsFrontend(type: number, length = 0): boolean {
    // Beyond the buffering limit a message streams through unread: what it
    // defines is then unknown, and a COPY that depends on it is refused.
    if (length > (this.limits.maxMessage ?? Infinity)) return false;
    switch (type) {
      case F.Query:
      case F.Parse:
        return this.session.masking() !== null;
      case F.Bind:
      case F.Close:
        return this.statements.size > 0 || this.portals.size > 0;
      case F.Execute:
        return this.portals.size > 0;
      default:
        return false;
    }
  }

  /**
   * A client message that goes to the server (forwarded, or emitted in its place
   * by the policy gate). buf is null when the message was not wanted whole.
   */
  forwarded(type: number, buf: Buffer | null, s: number, e: number): void {
    if (type !== F.Query && type !== F.Parse && type !== F.Bind && type !== F.Execute && type !== F.Close && type !== F.Sync && type !== F.FunctionCall) return;
    if (this.session.masking() === null) {
      if (this.queue.length || this.statements.size || this.portals.size) this.reset();
      return;
    }
    switch (type) {
      case F.Query: {
        const sql = buf ? this.text.codec.decode(buf, s + 5, e - 1) : '';
        this.queue.push({ kind: 'q', specs: copySpecsCached(sql).slice() });
        // A simple query drops the unnamed statement and portal.
        this.statements.delete('');
        this.portals.delete('');
        return;
      }
      case F.Parse: {
        if (!buf) {
          // Not read (too large): whatever it defines is unknown. Only the unnamed
          // statement can be redefined without a Close, which is tracked.
          this.statements.delete('');
          return;
        }
        const [name, o] = cstr(buf, s + 5, e);
        const q = buf.indexOf(0, o);
        const sql = this.text.codec.decode(buf, o, q < 0 || q >= e ? e : q);
        const specs = copySpecsCached(sql);
        if (specs.length === 1) this.statements.set(name, specs[0]!);
        else this.statements.delete(name);
        return;
      }
      case F.Bind: {
        if (!buf) {
          this.portals.clear(); // not read (too large, or no COPY statement exists): no portal is known to be a COPY
          return;
        }
        const [portal, o] = cstr(buf, s + 5, e);
        const [stmt] = cstr(buf, o, e);
        const spec = this.statements.get(stmt);
        if (spec) this.portals.set(portal, spec);
        else this.portals.delete(portal);
        return;
      }
      case F.Execute: {
        const portal = buf ? cstr(buf, s + 5, e)[0] : null;
        this.queue.push({ kind: 'x', spec: portal === null ? null : (this.portals.get(portal) ?? null) });
        return;
      }
      case F.Close: {
        if (!buf) return;
        const [name] = cstr(buf, s + 6, e);
        if (buf[s + 5] === 0x53 /* S */) this.statements.delete(name);
        else this.portals.delete(name);
        return;
      }
      default: // Sync, FunctionCall
        this.queue.push({ kind: 's' });
    }
  }

  // ---- backend

  /** Called for every server message header, in order. True: the handler must pass the whole message to onBackend. */
  wantsBackend(type: number): boolean {
    switch (type) {
      case B.DataRow:
        return false;
      case B.ReadyForQuery: {
        // Ends a simple Query, Sync or FunctionCall and everything before it.
        if (this.queue.length) {
          const i = this.queue.findIndex((x) => x.kind !== 'x');
          this.queue = i < 0 ? [] : this.queue.slice(i + 1);
        }
        if (this.mode !== Mode.Idle) this.endCopy();
        return false;
      }
      case B.CommandComplete:
      case 0x49: // EmptyQueryResponse
      case 0x73: // PortalSuspended
        if (this.queue[0]?.kind === 'x') this.queue.shift();
        return this.claimIf(this.mode === Mode.Swallow);
      case B.ErrorResponse: {
        // The server skips the rest of an extended batch (to Sync), and the rest of a simple query.
        const h = this.queue[0];
        if (h?.kind === 'x') {
          let k = 0;
          while (this.queue[k]?.kind === 'x') k++;
          this.queue.splice(0, k);
        } else if (h?.kind === 'q') h.specs = [];
        const swallow = this.mode === Mode.Swallow;
        this.endCopy();
        return this.claimIf(swallow);
      }
      case B.CopyOutResponse:
        return this.claimIf(true);
      case 0x64: // CopyData
      case 0x63: // CopyDone
        return this.claimIf(this.mode !== Mode.Idle);
      case B.ParameterStatus:
        return this.claimIf(true);
      default:
        return false;
    }
  }

  private claimIf(v: boolean): boolean {
    this.claimed = v;
    return v;
  }

  /** Whether the message just announced to wantsBackend is this masker's. */
  get owns(): boolean {
    return this.claimed;
  }

  /**
   * A whole message claimed by wantsBackend: true forwards it unchanged, false
   * drops it (a replacement may have been emitted); a promise means the stream
   * must pause until it settles (it never rejects).
   */
  onBackend(type: number, buf: Buffer, s: number, e: number): boolean | Promise<void> {
    this.claimed = false;
    switch (type) {
      case B.ParameterStatus: {
        const [name, o] = cstr(buf, s + 5, e);
        if (name === 'client_encoding') this.text.set(cstr(buf, o, e)[0]);
        else if (name === 'standard_conforming_strings') this.conformingStrings = cstr(buf, o, e)[0] !== 'off';
        return true;
      }
      case B.CopyOutResponse:
        return this.onCopyOut(buf, s, e);
      case 0x64: // CopyData
        return this.mode === Mode.Mask ? this.onCopyData(buf, s, e) : false;
      case 0x63: // CopyDone
        if (this.mode !== Mode.Mask) return false;
        this.flushPartial();
        if (this.mode !== Mode.Mask) return false; // the last row stopped the COPY
        this.endCopy();
        return true;
      default: // CommandComplete / ErrorResponse / … of a refused COPY
        this.endCopy();
        return false;
    }
  }

  private endCopy(): void {
    this.mode = Mode.Idle;
    this.splitter = null;
    this.opts = null;
    this.set = null;
    this.plan = [];
  }

  /** The statement of the CopyOutResponse now arriving: a spec, or null when unknown. */
  private nextSpec(): CopySpec | null {
    const h = this.queue[0];
    if (h?.kind === 'x') return h.spec;
    if (h?.kind === 'q') return h.specs.shift() ?? null;
    return null;
  }

  private onCopyOut(buf: Buffer, s: number, e: number): boolean | Promise<void> {
    const spec = this.nextSpec();
    const set = this.session.masking();
    this.endCopy();
    if (!set) return true;
    const binary = buf[s + 5] === 1;
    const ncols = buf.readInt16BE(s + 6);
    const sets = `masking rule set${set.names.length > 1 ? 's' : ''} ${set.names.map((n) => JSON.stringify(n)).join(', ')}`;
    if (binary) {
      if (set.allowBinaryCopy) return true;
      return this.refuse(
        `sluice: binary COPY is refused while masking applies (${sets}); use FORMAT text or csv, or set allow_binary_copy: true`,
      );
    }
    if (!spec || !spec.options || spec.options.format === 'binary') {
      return this.refuse(`sluice: COPY output is refused while masking applies (${sets}): Sluice could not read which COPY statement produced it`);
    }
    // Either setting could make the server read the statement (or write its data) differently from how Sluice reads it.
    const enc = spec.options.encoding ?? this.text.codec.name;
    if (isUnsafeClientEncoding(enc)) {
      return this.refuse(`sluice: COPY output in encoding ${enc} is refused while masking applies (${sets}); use UTF8`);
    }
    if (!this.conformingStrings) {
      return this.refuse(`sluice: COPY output is refused while masking applies (${sets}) and standard_conforming_strings is off`, 'SET standard_conforming_strings = on');
    }
    this.dataCodec = textCodec(enc);
    let o = spec.options;
    // The NULL string is matched as bytes of the data's encoding (it was read as text).
    if (!this.dataCodec.utf8 && o.null.some((b) => b >= 0x80)) o = { ...o, null: this.dataCodec.encode(o.null.toString('utf8')) };
    const sync = this.columnsNow(spec, ncols, set);
    if (sync !== null) return this.start(o, ncols, set, sync);
    const held = Buffer.from(buf.subarray(s, e));
    return this.resolveColumns(spec, ncols, set).then(
      (cols) => {
        if (typeof cols === 'string') {
          this.refuse(`sluice: COPY output is refused while masking applies (${sets}): its columns could not be resolved (${cols})`, 'Temporary tables and a session-level search_path are not visible to Sluice; name permanent tables with their schema.');
        } else if (this.start(o, ncols, set, cols)) this.emit(held);
      },
      (err: Error) => {
        this.refuse(`sluice: COPY output is refused while masking applies (${sets}): its columns could not be resolved (${err.message})`);
      },
    );
  }

  /** Columns from the caches, or null when a lookup is needed. */
  private columnsNow(spec: CopySpec, ncols: number, set: MaskingSet): (DescribedColumn | null)[] | null {
    if (!this.catalog || !spec.describe) return null;
    const cols = this.catalog.describedCached(spec.describe);
    if (!cols || cols.length !== ncols) return null;
    if (set.hasColumnRules && cols.some((c) => c.tableOid !== 0 && !this.catalog!.cached(c.tableOid))) return null;
    return cols;
  }

  /**
   * Describes the COPY's columns. A string is a reason to refuse; columns of
   * null mean "unknown, scan as text" (only when no column rule could apply).
   */
  private async resolveColumns(spec: CopySpec, ncols: number, set: MaskingSet): Promise<(DescribedColumn | null)[] | string> {
    const unknown = (why: string) => (set.hasColumnRules ? why : new Array<null>(ncols).fill(null));
    if (!this.catalog) return unknown('no catalog connection');
    if (!spec.describe) return unknown('the statement could not be read');
    const describe = async (fresh: boolean) => {
      let cols = await this.catalog!.describe(spec.describe!, fresh);
      if (cols.length > ncols && spec.wholeTable && cols[0]?.tableOid) {
        const gen = await this.catalog!.generatedColumns(cols[0].tableOid);
        cols = cols.filter((c) => !gen.has(c.attnum));
      }
      return cols;
    };
    let cols: DescribedColumn[];
    try {
      cols = await describe(false);
      // A cached description may predate a change to the table.
      if (cols.length !== ncols) cols = await describe(true);
    } catch (err) {
      return unknown((err as Error).message);
    }
    if (cols.length !== ncols) return unknown(`the server sends ${ncols} columns, Sluice found ${cols.length}`);
    if (set.hasColumnRules) {
      const missing = [...new Set(cols.filter((c) => c.tableOid !== 0 && !this.catalog!.cached(c.tableOid)).map((c) => c.tableOid))];
      if (missing.length) await this.catalog.load(missing);
    }
    return cols;
  }

  /** Builds the column plan; true when the CopyOutResponse goes to the client (always, unless refused). */
  private start(o: CopyOptions, ncols: number, set: MaskingSet, cols: (DescribedColumn | null)[]): boolean {
    let any = false;
    this.plan = cols.map((c): ColPlan => {
      const ref: ColumnRef | undefined = c ? (c.tableOid !== 0 && this.catalog?.cached(c.tableOid)?.get(c.attnum)) || { column: c.name } : undefined;
      const rule = ref && set.hasColumnRules ? set.columnRule(ref) : undefined;
      // Unknown type: scan it (text format: every value is text).
      const textLike = c ? isTextLike(c.typeOid, false) : true;
      const p: ColPlan = {
        act: rule ? Act.Column : textLike && set.scanner ? Act.Detect : Act.None,
        strategy: rule?.strategy ?? 'redact',
        rule: rule?.pattern ?? '',
        textLike,
        json: c?.typeOid === JSON_ || c?.typeOid === JSONB,
        forceQuote: o.forceQuote === '*' || (o.forceQuote !== null && c !== null && o.forceQuote.includes(c.name)),
      };
      if (p.act !== Act.None) any = true;
      return p;
    });
    if (!any || ncols === 0) {
      this.endCopy();
      return true;
    }
    this.opts = o;
    this.set = set;
    this.mode = Mode.Mask;
    this.headerPending = o.header;
    this.splitter = new CopyRowSplitter(o.format === 'csv', o.quote, o.escape, this.limits.maxPartialRow ?? MAX_PARTIAL_ROW);
    return true;
  }

  /** Refuses the COPY: an error goes to the client, the server's copy data and completion are dropped. */
  private refuse(message: string, hint?: string): false {
    this.emit(errorResponse({ severity: 'ERROR', code: '42501', message, detail: 'No COPY data was sent. The session goes on.', hint }));
    this.endCopy();
    this.mode = Mode.Swallow;
    return false;
  }

  /** Stops masking mid-COPY (malformed or oversized row): an error instead of the rest. */
  private abort(message: string, code: string): false {
    this.emit(errorResponse({ severity: 'ERROR', code, message, detail: 'The rest of the COPY data was not sent. The session goes on.' }));
    this.endCopy();
    this.mode = Mode.Swallow;
    return false;
  }

  private onCopyData(buf: Buffer, s: number, e: number): boolean {
    const sp = this.splitter!;
    let changed = sp.pending > 0;
    const out: Buffer[] = [];
    let rs = -1;
    let re = -1;
    try {
      sp.feed(buf, s + 5, e, (b, bs, be, carried) => {
        let r: Buffer | null = null;
        if (this.headerPending) this.headerPending = false;
        else r = this.maskRow(b, bs, be);
        if (r === null && !carried) {
          if (rs < 0) rs = bs;
          re = be;
          return;
        }
        if (rs >= 0) out.push(buf.subarray(rs, re));
        rs = -1;
        out.push(r ?? b.subarray(bs, be));
        changed = true;
      });
    } catch (err) {
      if (err instanceof CopyRowTooLong) return this.abort(`sluice: COPY output stopped: ${err.message}, more than masking holds`, '54000');
      if (err instanceof CopyAbort) return this.abort(err.message, '42501');
      throw err;
    }
    if (sp.pending > 0) changed = true;
    if (!changed) return true;
    if (rs >= 0) out.push(buf.subarray(rs, re));
    this.emitData(out);
    return false;
  }

  /** At CopyDone: a last row without its newline. */
  private flushPartial(): void {
    const rest = this.splitter?.take();
    if (!rest) return;
    let r: Buffer | null = null;
    try {
      if (this.headerPending) this.headerPending = false;
      else r = this.maskRow(rest, 0, rest.length);
    } catch (err) {
      if (err instanceof CopyAbort) {
        this.abort(err.message, '42501');
        return;
      }
      throw err;
    }
    this.emitData([r ?? rest]);
  }

  private emitData(parts: Buffer[]): void {
    let n = 0;
    for (const p of parts) n += p.length;
    if (n === 0) return;
    const msg = Buffer.allocUnsafe(5 + n);
    msg[0] = 0x64;
    msg.writeInt32BE(4 + n, 1);
    let w = 5;
    for (const p of parts) w += p.copy(msg, w);
    this.emit(msg);
  }

  /** One whole row buf[s, e) (with its '\n', if any): the masked row, or null when nothing changes. */
  private maskRow(buf: Buffer, s: number, e: number): Buffer | null {
    const o = this.opts!;
    const csv = o.format === 'csv';
    const ce = e > s && buf[e - 1] === NL ? e - 1 : e;
    if (!csv && ce - s === 2 && buf[s] === BS && buf[s + 1] === 0x2e) return null; // \. end marker
    const bounds = this.bounds;
    const n = splitFields(buf, s, ce, o, bounds);
    const plan = this.plan;
    if (n !== plan.length) {
      throw new CopyAbort(`sluice: COPY output stopped: a row has ${n} fields where ${plan.length} were expected, so masking cannot tell the columns apart`);
    }
    const set = this.set!;
    const codec = this.dataCodec;
    const ctx = this.masker.maskContextFor(codec);
    let repl: (Buffer | undefined)[] | null = null;
    for (let i = 0; i < n; i++) {
      const p = plan[i]!;
      if (p.act === Act.None) continue;
      const fs = bounds[2 * i]!;
      const fe = bounds[2 * i + 1]!;
      if (fe - fs === o.null.length && (fe === fs || buf.compare(o.null, 0, o.null.length, fs, fe) === 0)) continue; // NULL stays NULL
      const value = csv ? unescapeCsv(buf, fs, fe, o.quote, o.escape) : unescapeText(buf, fs, fe);
      let masked: Buffer | null;
      if (p.act === Act.Column) {
        this.masker.countColumn(p.rule);
        masked = p.textLike && p.strategy !== 'null' ? maskValue(p.strategy, value, ctx) : null;
        if (masked !== null && p.json) masked = codec.encode(JSON.stringify(codec.decode(masked)));
      } else {
        const f = set.scanner!.scan(value, 0, value.length);
        if (f.length === 0) continue;
        this.masker.countFindings(f);
        masked = maskFindings(value, 0, value.length, f, set.strategyFor, ctx);
      }
      repl ??= new Array<Buffer | undefined>(n);
      repl[i] = masked === null ? o.null : csv ? escapeCsv(masked, o, p.forceQuote, n === 1) : escapeText(masked, o.delimiter);
    }
    if (!repl) return null;
    // Rebuild: replaced fields, the others copied as they were.
    let len = e - s;
    for (let i = 0; i < n; i++) {
      const r = repl[i];
      if (r !== undefined) len += r.length - (bounds[2 * i + 1]! - bounds[2 * i]!);
    }
    const row = Buffer.allocUnsafe(len);
    let w = 0;
    for (let i = 0; i < n; i++) {
      if (i > 0) row[w++] = o.delimiter;
      const r = repl[i];
      w += r !== undefined ? r.copy(row, w) : buf.copy(row, w, bounds[2 * i]!, bounds[2 * i + 1]!);
    }
    if (ce < e) buf.copy(row, w, ce, e);
    return row;
  }
}
