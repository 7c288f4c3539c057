// Resolving result columns to schema.table.column for masking: RowDescription
// carries each column's table OID and attribute number, so `SELECT email AS e
// FROM customers` is still the column customers.email. Lookups go over one side
// connection per target (Sluice's own login) and are cached.

import type { PostgresTargetConfig } from '../../config/types.js';
import type { ColumnRef } from '../../policy/masking/ruleset.js';
import { B, F } from './constants.js';
import { parseFields, queryMessage as query } from './messages.js';
import { MessageReader } from './reader.js';
import { connectUpstream, UpstreamError, type Upstream } from './upstream.js';

/** attnum → column, per table OID. */
export type TableColumns = Map<number, ColumnRef>;

/** One result column of a described statement, as its RowDescription gives it. */
export interface DescribedColumn {
  name: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
}

const CACHE_TTL_MS = 5 * 60_000;


/** Parse(unnamed) + Describe(statement) + Sync: the result columns of `sql`, nothing executed. */
function describeMessages(sql: string): Buffer {
  const q = Buffer.from(sql + '\0', 'utf8');
  const parse = Buffer.allocUnsafe(1 + 4 + 1 + q.length + 2);
  parse[0] = F.Parse;
  parse.writeInt32BE(parse.length - 1, 1);
  parse[5] = 0; // unnamed statement
  q.copy(parse, 6);
  parse.writeInt16BE(0, 6 + q.length); // no parameter types
  const describe = Buffer.from([F.Describe, 0, 0, 0, 6, 0x53 /* S */, 0]);
  const sync = Buffer.from([F.Sync, 0, 0, 0, 4]);
  return Buffer.concat([parse, describe, sync]);
}

/** RowDescription body → columns. */
function rowDescriptionColumns(body: Buffer): DescribedColumn[] {
  const n = body.readInt16BE(0);
  const out: DescribedColumn[] = [];
  let o = 2;
  for (let i = 0; i < n; i++) {
    const z = body.indexOf(0, o);
    const name = body.toString('utf8', o, z);
    o = z + 1;
    out.push({ name, tableOid: body.readUInt32BE(o), attnum: body.readInt16BE(o + 4), typeOid: body.readUInt32BE(o + 6) });
    o += 18;
  }
  return out;
}

/** Text-format DataRow fields. */
function dataRowFields(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let o = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(o);
    o += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.toString('utf8', o, o + len));
      o += len;
    }
  }
  return out;
}

export class CatalogCache {
  private readonly tables = new Map<number, { cols: TableColumns; at: number }>();
  /** Result columns by statement text (COPY masking); bounded. */
  private readonly described = new Map<string, { cols: DescribedColumn[]; at: number }>();
  private readonly generated = new Map<number, { attnums: Set<number>; at: number }>();
  private conn: Promise<{ up: Upstream; reader: MessageReader }> | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly target: PostgresTargetConfig,
    private readonly password: () => Promise<string | undefined>,
    private readonly maxMessage: number,
    /** Login failures of the side connection, for the gateway log (the caller only sees the client-safe message). */
    private readonly onLoginError: (err: UpstreamError) => void = () => {},
  ) {}

  /** The cached columns of a table, or undefined when it must be looked up. */
  cached(oid: number): TableColumns | undefined {
    const e = this.tables.get(oid);
    return e && Date.now() - e.at < CACHE_TTL_MS ? e.cols : undefined;
  }

  /** Loads the columns of these tables (one query, serialised with other lookups). */
  load(oids: number[]): Promise<void> {
    const run = this.chain.then(() => this.fetch(oids.filter((o) => !this.cached(o))));
    this.chain = run.catch(() => {});
    return run;
  }

  /** Cached result columns of a statement, or undefined when it must be described. */
  describedCached(sql: string): DescribedColumn[] | undefined {
    const e = this.described.get(sql);
    return e && Date.now() - e.at < CACHE_TTL_MS ? e.cols : undefined;
  }

  /**
   * The result columns of `sql` (Parse + Describe on the side connection; the
   * statement is never executed), cached by text; `fresh` bypasses the cache
   * (the table may have changed). Rejects when the server
   * cannot parse it there (e.g. a temporary table of the client's session).
   */
  describe(sql: string, fresh = false): Promise<DescribedColumn[]> {
    if (fresh) this.described.delete(sql);
    const hit = this.describedCached(sql);
    if (hit) return Promise.resolve(hit);
    const run = this.chain.then(() => this.fetchDescribe(sql));
    this.chain = run.catch(() => {});
    return run;
  }

  /** attnums of the stored/virtual generated columns of a table (COPY TO leaves them out). */
  generatedColumns(oid: number): Promise<Set<number>> {
    const e = this.generated.get(oid >>> 0);
    if (e && Date.now() - e.at < CACHE_TTL_MS) return Promise.resolve(e.attnums);
    const run = this.chain.then(async () => {
      const rows = await this.rows(
        `SELECT a.attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = ${oid >>> 0} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''`,
      );
      const attnums = new Set(rows.map((r) => Number(r[0])));
      this.generated.set(oid >>> 0, { attnums, at: Date.now() });
      return attnums;
    });
    this.chain = run.catch(() => {});
    return run;
  }

  private async fetchDescribe(sql: string): Promise<DescribedColumn[]> {
    const hit = this.describedCached(sql);
    if (hit) return hit;
    const { up, reader } = await this.connect();
    up.socket.write(describeMessages(sql));
    let cols: DescribedColumn[] = [];
    let error: string | undefined;
    for (;;) {
      const m = await reader.readMessage();
      if (m.type === B.RowDescription) cols = rowDescriptionColumns(m.body);
      else if (m.type === B.ErrorResponse) error = parseFields(m.body, 0, m.body.length).M;
      else if (m.type === B.ReadyForQuery) break;
    }
    if (error) throw new Error(`describe failed: ${error}`);
    if (this.described.size >= 1000) this.described.delete(this.described.keys().next().value!);
    this.described.set(sql, { cols, at: Date.now() });
    return cols;
  }

  /** Runs one simple query on the side connection; text-format rows. */
  private async rows(sql: string): Promise<(string | null)[][]> {
    const { up, reader } = await this.connect();
    up.socket.write(query(sql));
    const out: (string | null)[][] = [];
    let error: string | undefined;
    for (;;) {
      const m = await reader.readMessage();
      if (m.type === B.DataRow) out.push(dataRowFields(m.body));
      else if (m.type === B.ErrorResponse) error = parseFields(m.body, 0, m.body.length).M;
      else if (m.type === B.ReadyForQuery) break;
    }
    if (error) throw new Error(`catalog query failed: ${error}`);
    return out;
  }

  private connect(): Promise<{ up: Upstream; reader: MessageReader }> {
    this.conn ??= (async () => {
      // Its own login, under the same rules as a session's (targets.*.auth, TLS, the SCRAM
      // server signature), in UTF-8 whatever the clients use: names are compared as text.
      const up = await connectUpstream(this.target, await this.password(), { application_name: 'sluice-catalog', client_encoding: 'UTF8' }, this.maxMessage).catch(
        (err: unknown) => {
          if (err instanceof UpstreamError) this.onLoginError(err);
          throw err;
        },
      );
      const reader = new MessageReader(up.socket, this.maxMessage);
      up.socket.on('close', () => (this.conn = null));
      return { up, reader };
    })();
    this.conn.catch(() => (this.conn = null));
    return this.conn;
  }

  private async fetch(oids: number[]): Promise<void> {
    if (oids.length === 0) return;
    const { up, reader } = await this.connect();
    const list = oids.map((o) => String(o >>> 0)).join(',');
    up.socket.write(
      query(
        `SELECT a.attrelid::int8, a.attnum, n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a ` +
          `JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ` +
          `WHERE a.attrelid IN (${list}) AND a.attnum > 0`,
      ),
    );
    const found = new Map<number, TableColumns>(oids.map((o) => [o >>> 0, new Map()]));
    let error: string | undefined;
    for (;;) {
      const m = await reader.readMessage();
      if (m.type === B.DataRow) {
        const [rel, attnum, schema, table, column] = dataRowFields(m.body);
        found.get(Number(rel))?.set(Number(attnum), { schema: schema!, table: table!, column: column! });
      } else if (m.type === B.ErrorResponse) {
        error = parseFields(m.body, 0, m.body.length).M;
      } else if (m.type === B.ReadyForQuery) break;
    }
    if (error) throw new Error(`catalog lookup failed: ${error}`);
    const at = Date.now();
    for (const [oid, cols] of found) this.tables.set(oid, { cols, at });
  }

  close(): void {
    void this.conn?.then((c) => c.up.socket.destroy(), () => {});
    this.conn = null;
  }
}
