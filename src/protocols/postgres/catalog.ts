// Resolving result columns to schema.table.column for masking: RowDescription
// carries each column's table OID and attribute number, so `SELECT email AS e
// FROM customers` is still the column customers.email. Lookups go over one side
// connection per target (Sluice's own login) and are cached.

import type { TargetConfig } from '../../core/config-types.js';
import type { ColumnRef } from '../../policy/masking/ruleset.js';
import { B, F } from './constants.js';
import { parseFields } from './messages.js';
import { MessageReader } from './reader.js';
import { connectUpstream, type Upstream } from './upstream.js';

/** attnum → column, per table OID. */
export type TableColumns = Map<number, ColumnRef>;

const CACHE_TTL_MS = 5 * 60_000;

function query(sql: string): Buffer {
  const b = Buffer.from(sql + '\0', 'utf8');
  const out = Buffer.allocUnsafe(5 + b.length);
  out[0] = F.Query;
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
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
  private conn: Promise<{ up: Upstream; reader: MessageReader }> | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly target: TargetConfig,
    private readonly password: () => Promise<string | undefined>,
    private readonly maxMessage: number,
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

  private connect(): Promise<{ up: Upstream; reader: MessageReader }> {
    this.conn ??= (async () => {
      const up = await connectUpstream(this.target, await this.password(), { application_name: 'sluice-catalog' }, this.maxMessage);
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
