// node-postgres (pg 8) through Sluice against a real Postgres that requires
// SCRAM over TLS: extended protocol, prepared statements, a busy pool, binary
// results, bytea, LISTEN/NOTIFY, COPY (text and binary), cancel, clients that
// vanish mid-query, multi-statement queries and failed transactions.
import t from 'tap';
import fs from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { withPostgres } from './helpers/pg-cluster.js';
import { prepareOrders, startSluice } from './helpers/sluice.js';
import { CancelKeys } from '../src/protocols/postgres/cancel-keys.js';
import type { PostgresTargetConfig } from '../src/config/types.js';

const { from: copyFrom, to: copyTo } = copyStreams;

const pgc = await withPostgres(t);
await prepareOrders(pgc);
await pgc.sql(
  `create table items (id int primary key, name text, price numeric);
   insert into items select g, 'item ' || g, g * 1.5 from generate_series(1, 100) g;
   alter table items owner to app;`,
  'orders',
);
const gw = await startSluice(t, { cluster: pgc });
const token = await gw.mint('ci', ['ci'], '30m');
const ca = fs.readFileSync(gw.ca!.cert);

/** Client config for the gateway, verify-full against Sluice's certificate. */
const cfg = (app: string, extra: Partial<pg.ClientConfig> = {}): pg.ClientConfig => ({
  host: gw.host,
  port: gw.port,
  user: 'ci',
  database: 'orders',
  password: token,
  ssl: { ca, servername: 'localhost', rejectUnauthorized: true },
  application_name: app,
  ...extra,
});

/** pg 8 honours `binary` on a query config (result format codes in Bind); @types/pg omits it. */
type BinaryQuery = pg.QueryConfig & { binary?: boolean };

const clients: pg.Client[] = [];
async function connect(app: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client(cfg(app, extra));
  c.on('error', () => {}); // a vanished or terminated session must not crash the test process
  clients.push(c);
  await c.connect();
  return c;
}
t.teardown(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` returns true; fails with `what` after `timeoutMs`. */
async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** Upstream backends of user `app` with this application_name, as seen by the real server. */
async function backends(app: string, extra = ''): Promise<number> {
  const n = await pgc.sql(`select count(*) from pg_stat_activity where usename = 'app' and application_name = '${app}'${extra}`);
  return Number(n.trim());
}

/** The session id Sluice logged for the session with this application_name. */
async function sessionOf(app: string): Promise<string> {
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.application === app);
  return open.session as string;
}

t.test('parameterised queries and named prepared statements', async (t) => {
  const c = await connect('params');
  const r = await c.query('select $1::int + $2::int as sum, $3::text as s, $4::text as n, $5::int[] as arr', [2, 3, 'héllo \u{1F600}', null, [1, 2, 3]]);
  t.same(r.rows, [{ sum: 5, s: 'héllo \u{1F600}', n: null, arr: [1, 2, 3] }]);
  t.equal(r.command, 'SELECT');

  // Values are bound, not interpolated.
  const evil = "x'); drop table items; --";
  const r2 = await c.query('select $1::text = $2 as same, length($1) as len', [evil, evil]);
  t.same(r2.rows, [{ same: true, len: evil.length }]);

  for (let round = 0; round < 3; round++) {
    for (const id of [1, 42, 100]) {
      const q = await c.query({ name: 'item-by-id', text: 'select id, name, price from items where id = $1', values: [id] });
      t.same(q.rows, [{ id, name: `item ${id}`, price: (id * 1.5).toFixed(1) }], `round ${round}, id ${id}`);
    }
  }
  const none = await c.query({ name: 'item-by-id', text: 'select id, name, price from items where id = $1', values: [1000] });
  t.equal(none.rowCount, 0);

  // Parsed once on the server, then only bound and executed.
  const ps = await c.query("select name, statement from pg_prepared_statements where name = 'item-by-id'");
  t.equal(ps.rowCount, 1, 'the named statement lives on the server session');

  // A second named statement, interleaved with the first.
  for (let i = 1; i <= 5; i++) {
    const a = await c.query({ name: 'sum-prices', text: 'select sum(price)::float8 as s from items where id <= $1', values: [i] });
    t.equal(a.rows[0].s, (1.5 * i * (i + 1)) / 2);
    const b = await c.query({ name: 'item-by-id', text: 'select id, name, price from items where id = $1', values: [i] });
    t.equal(b.rows[0].name, `item ${i}`);
  }

  // A parameterised DML statement reports its row count.
  await c.query('create temp table kv (k int primary key, v text)');
  const ins = await c.query('insert into kv select g, $1 || g from generate_series(1, $2::int) g', ['v', 10]);
  t.equal(ins.command, 'INSERT');
  t.equal(ins.rowCount, 10);
  const upd = await c.query('update kv set v = $1 where k > $2', ['big', 7]);
  t.equal(upd.rowCount, 3);
  await c.end();
});

t.test('a pool of 20 runs 200 concurrent queries', async (t) => {
  const pool = new pg.Pool({ ...cfg('pool'), max: 20 });
  pool.on('error', () => {});
  try {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pool.query('select $1::int * 2 as double, $2::text as tag, pg_backend_pid() as pid, pg_sleep(0.02)', [i, `q${i}`]),
      ),
    );
    const took = Date.now() - started;
    let correct = 0;
    const pids = new Set<number>();
    for (const [i, r] of results.entries()) {
      if (r.rows.length === 1 && r.rows[0].double === i * 2 && r.rows[0].tag === `q${i}`) correct++;
      pids.add(r.rows[0].pid);
    }
    t.equal(correct, 200, 'every query got its own answer');
    t.equal(pids.size, 20, 'spread over 20 upstream backends');
    t.equal(pool.totalCount, 20);
    t.equal(await backends('pool'), 20, 'the server sees 20 sessions of the pool');
    t.ok(took < 15_000, `200 queries took ${took} ms`);

    // Transactions on pooled clients stay on their connection.
    const txs = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const c = await pool.connect();
        try {
          await c.query('begin');
          await c.query("select set_config('sluice.test', $1, true)", [String(i)]);
          await sleep(5);
          const r = await c.query("select current_setting('sluice.test') as v");
          await c.query('commit');
          return r.rows[0].v === String(i);
        } finally {
          c.release();
        }
      }),
    );
    t.equal(txs.filter(Boolean).length, 40, 'transaction-local state is per connection');
  } finally {
    await pool.end();
  }
  await until('pool sessions to close upstream', async () => (await backends('pool')) === 0);
});

/**
 * Runs a query and returns the RowDescription format codes and DataRow fields
 * exactly as they came off the client's (decrypted) socket, so binary values can
 * be checked byte for byte. node-postgres 8 itself turns binary fields into
 * UTF-8 strings and back (brianc/node-postgres#3495), which mangles any byte
 * that is not valid UTF-8; this sees what Sluice actually delivered.
 */
async function wire(c: pg.Client, q: BinaryQuery): Promise<{ formats: number[]; rows: (Buffer | null)[][]; result: pg.QueryResult }> {
  const stream = (c as unknown as { connection: { stream: NodeJS.ReadableStream } }).connection.stream;
  const chunks: Buffer[] = [];
  const tap = (b: Buffer) => chunks.push(b);
  stream.on('data', tap);
  let result: pg.QueryResult;
  try {
    result = await c.query(q);
  } finally {
    stream.removeListener('data', tap);
  }
  const buf = Buffer.concat(chunks);
  const formats: number[] = [];
  const rows: (Buffer | null)[][] = [];
  for (let i = 0; i + 5 <= buf.length; ) {
    const type = buf[i];
    const len = buf.readInt32BE(i + 1);
    const body = buf.subarray(i + 5, i + 1 + len);
    if (type === 0x54 /* RowDescription */) {
      formats.length = 0;
      let o = 2;
      for (let f = 0; f < body.readInt16BE(0); f++) {
        o = body.indexOf(0, o) + 1 + 4 + 2 + 4 + 2 + 4; // name, table oid, attnum, type oid, typlen, typmod
        formats.push(body.readInt16BE(o));
        o += 2;
      }
    } else if (type === 0x44 /* DataRow */) {
      const row: (Buffer | null)[] = [];
      let o = 2;
      for (let f = 0; f < body.readInt16BE(0); f++) {
        const n = body.readInt32BE(o);
        o += 4;
        row.push(n < 0 ? null : Buffer.from(body.subarray(o, o + n)));
        if (n > 0) o += n;
      }
      rows.push(row);
    }
    i += 1 + len;
  }
  return { formats, rows, result: result! };
}

t.test('binary results come back in binary format and decode right', async (t) => {
  const c = await connect('binary');
  const uuid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
  const ts = '2024-02-29T12:34:56.789Z';
  const text = 'binary ✓ \u0001 tab\tend';
  const sql = `select $1::int4 as i4, $2::int8 as i8, $3::float8 as f8, $4::timestamptz as tz, $5::uuid as id, $6::text as t, null::int4 as nul,
                      $7::int4 as neg`;
  const values = [2147483647, '-9007199254740993', Math.PI, ts, uuid, text, -1000];

  // Byte for byte, as Sluice delivered them.
  const w = await wire(c, { text: sql, values, binary: true });
  t.same(w.formats, Array(8).fill(1), 'RowDescription says binary (format 1) for every column');
  t.same(w.result.fields.map((f) => f.format), Array(8).fill('binary'), 'pg sees binary fields');
  t.equal(w.rows.length, 1);
  const [i4, i8, f8, tz, id, tx, nul, neg] = w.rows[0] as Buffer[];
  t.equal(i4.length, 4);
  t.equal(i4.readInt32BE(0), 2147483647);
  t.equal(i8.length, 8);
  t.equal(i8.readBigInt64BE(0), -9007199254740993n);
  t.equal(f8.length, 8);
  t.equal(f8.readDoubleBE(0), Math.PI);
  // timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
  t.equal(Number(tz.readBigInt64BE(0) / 1000n) + Date.UTC(2000, 0, 1), Date.parse(ts));
  t.equal(id.length, 16);
  t.equal(id.toString('hex'), uuid.replace(/-/g, ''));
  t.equal(tx.toString('utf8'), text);
  t.equal(nul, null);
  t.equal(neg.readInt32BE(0), -1000);

  // Through pg's own binary parsers, with values whose encodings are valid UTF-8
  // (see wire() above for why other values cannot survive pg 8 itself).
  const safeTs = '2020-01-01T00:34:12.000Z'; // 00 02 3e 08 01 11 69 00
  const safeUuid = '01234567-0123-4567-0123-456701234567';
  // pg has no binary uuid parser: a per-query types override supplies one.
  const types = {
    getTypeParser: (oid: number, format?: string) =>
      oid === 2950 && format === 'binary'
        ? (v: Buffer) => v.toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')
        : pg.types.getTypeParser(oid, format as 'text'),
  };
  const p = await c.query({ text: sql, values: [16909060, '72623859790382856', 2.5, safeTs, safeUuid, text, 1], binary: true, types } as BinaryQuery);
  t.same(p.fields.map((f) => f.format), Array(8).fill('binary'));
  const r = p.rows[0];
  t.equal(r.i4, 16909060);
  t.equal(String(r.i8), '72623859790382856');
  t.equal(r.f8, 2.5);
  t.ok(r.tz instanceof Date);
  t.equal((r.tz as Date).toISOString(), safeTs);
  t.equal(r.id, safeUuid);
  t.equal(r.t, text);
  t.equal(r.nul, null);
  t.equal(r.neg, 1);

  // Many binary rows in one result, via a named statement (extended protocol).
  const many = await wire(c, {
    name: 'many-binary',
    text: 'select g::int4 as n, g::int8 * -1000000007 as big, g / 7.0::float8 as f, now() as ts from generate_series(1, $1::int) g',
    values: [20000],
    binary: true,
  });
  t.same(many.formats, [1, 1, 1, 1]);
  t.equal(many.rows.length, 20000);
  t.equal(many.result.rowCount, 20000);
  let ok = 0;
  for (const [i, [n, big, f, tsv]] of many.rows.entries()) {
    const g = i + 1;
    if (n!.readInt32BE(0) === g && big!.readBigInt64BE(0) === BigInt(g) * -1000000007n && f!.readDoubleBE(0) === g / 7 && tsv!.length === 8) ok++;
  }
  t.equal(ok, 20000, 'all binary rows decode');

  // The connection is back to text afterwards.
  const txt = await c.query('select 1::int4 as one');
  t.equal(txt.fields[0].format, 'text');
  t.equal(txt.rows[0].one, 1);
  await c.end();
});

t.test('bytea round trip, NUL bytes and 5 MB', async (t) => {
  const c = await connect('bytea');
  await c.query('create table blobs (id int primary key, b bytea)');
  const nul = Buffer.from([0x00, 0x01, 0x00, 0x00, 0xff, 0x00, 0x5c, 0x27, 0x00]);
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const big = randomBytes(5 * 1024 * 1024);
  big.fill(0, 1000, 2000); // a run of zeros
  big[0] = 0;
  big[big.length - 1] = 0;
  const empty = Buffer.alloc(0);

  for (const [id, b] of [[1, nul], [2, every], [3, big], [4, empty]] as const) {
    const r = await c.query('insert into blobs values ($1, $2)', [id, b]);
    t.equal(r.rowCount, 1);
  }
  // The server holds exactly those bytes.
  const sums = await c.query('select id, length(b) as len, md5(b) as md5 from blobs order by id');
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  t.same(sums.rows, [
    { id: 1, len: nul.length, md5: md5(nul) },
    { id: 2, len: 256, md5: md5(every) },
    { id: 3, len: big.length, md5: md5(big) },
    { id: 4, len: 0, md5: md5(empty) },
  ]);

  // Text format (hex), decoded by pg, in both the simple and the extended protocol.
  for (const q of [{ text: 'select id, b from blobs order by id' }, { text: 'select id, b from blobs where id > $1 order by id', values: [0] }]) {
    const r = await c.query(q);
    t.equal(r.rowCount, 4);
    t.ok(r.rows[0].b.equals(nul), 'NUL bytes intact');
    t.ok(r.rows[1].b.equals(every), 'all byte values intact');
    t.equal(r.rows[2].b.length, big.length);
    t.ok(r.rows[2].b.equals(big), '5 MB value intact');
    t.equal(r.rows[3].b.length, 0);
  }
  // Binary format: the raw bytes themselves (pg 8 cannot decode binary bytea, see wire()).
  const w = await wire(c, { text: 'select b from blobs where id > $1 order by id', values: [0], binary: true });
  t.same(w.formats, [1]);
  t.equal(w.rows.length, 4);
  t.ok(w.rows[0][0]!.equals(nul), 'NUL bytes intact (binary)');
  t.ok(w.rows[1][0]!.equals(every), 'all byte values intact (binary)');
  t.ok(w.rows[2][0]!.equals(big), '5 MB value intact (binary)');
  t.equal(w.rows[3][0]!.length, 0);
  // A 5 MB value as a simple-protocol literal (one 10 MB Query message).
  const lit = await c.query(`select md5('\\x${big.toString('hex')}'::bytea) as m`);
  t.equal(lit.rows[0].m, md5(big));
  await c.end();
});

t.test('LISTEN/NOTIFY between two clients', async (t) => {
  const listener = await connect('listener');
  const notifier = await connect('notifier');
  const got: pg.Notification[] = [];
  let wake: (() => void) | null = null;
  listener.on('notification', (n) => {
    got.push(n);
    wake?.();
  });
  const waitFor = (count: number) =>
    Promise.race([
      new Promise<void>((resolve) => {
        if (got.length >= count) return resolve();
        wake = () => got.length >= count && resolve();
      }),
      sleep(5000).then(() => {
        throw new Error(`only ${got.length} of ${count} notifications arrived`);
      }),
    ]);

  await listener.query('listen sluice_events');
  await listener.query('listen "Other Channel"');
  await notifier.query("notify sluice_events, 'hello through the gateway'");
  await notifier.query('select pg_notify($1, $2)', ['Other Channel', 'payload ✓ ' + 'x'.repeat(7000)]);
  await waitFor(2);
  t.equal(got[0].channel, 'sluice_events');
  t.equal(got[0].payload, 'hello through the gateway');
  t.equal(got[1].channel, 'Other Channel');
  t.equal(got[1].payload, 'payload ✓ ' + 'x'.repeat(7000));

  // Notifications sent in a transaction arrive only on commit.
  await notifier.query('begin');
  await notifier.query("notify sluice_events, 'in tx'");
  await sleep(200);
  t.equal(got.length, 2, 'nothing before commit');
  await notifier.query('commit');
  await waitFor(3);
  t.equal(got[2].payload, 'in tx');

  // A notification that arrives while the listener is idle (no query running).
  await notifier.query("notify sluice_events, 'while idle'");
  await waitFor(4);
  t.equal(got[3].payload, 'while idle');

  // The pid in a notification is the sending session's pid, the one number a
  // client can learn about a session: pg_backend_pid(), BackendKeyData
  // (node-postgres: client.processID) and notifications agree, for a session's
  // own notifications (how libpq/pg clients skip their own) and for others'.
  const pidOf = (c: pg.Client) => (c as unknown as { processID: number }).processID;
  const backendPid = async (c: pg.Client) => (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  t.equal(pidOf(listener), await backendPid(listener), "the listener's BackendKeyData pid is its pg_backend_pid()");
  t.equal(pidOf(notifier), await backendPid(notifier), "the notifier's BackendKeyData pid is its pg_backend_pid()");
  await listener.query("notify sluice_events, 'to myself'");
  await waitFor(5);
  t.equal(got[4].payload, 'to myself');
  t.equal(got[4].processId, pidOf(listener), "a session's own notification carries its pid");
  t.equal(got[0].processId, pidOf(notifier), "another session's notification carries that session's pid");
  t.equal(got[2].processId, pidOf(notifier));

  await listener.query('unlisten *');
  await notifier.query("notify sluice_events, 'after unlisten'");
  await listener.query('select 1'); // a round trip after the notify
  await sleep(100);
  t.equal(got.length, 5, 'no notifications after UNLISTEN');
  await listener.end();
  await notifier.end();
});

t.test('COPY FROM STDIN and TO STDOUT, text and binary', async (t) => {
  const c = await connect('copy');
  const N = 100_000;
  await c.query('create table nums (id int, s text, f float8)');
  const line = (i: number) => `${i}\tv${i} \\\\ é\t${i / 4}\n`;
  const expected = Array.from({ length: N }, (_, i) => line(i + 1)).join('');

  // In: 100k rows in many chunks of varying size.
  const started = Date.now();
  function* chunks() {
    let batch = '';
    for (let i = 1; i <= N; i++) {
      batch += line(i);
      if (i % 997 === 0) {
        yield Buffer.from(batch);
        batch = '';
      }
    }
    if (batch) yield Buffer.from(batch);
  }
  const into = c.query(copyFrom('COPY nums FROM STDIN'));
  await pipeline(Readable.from(chunks()), into);
  t.equal(into.rowCount, N, 'COPY reports 100k rows');
  const tookIn = Date.now() - started;
  const cnt = await c.query('select count(*)::int as n, sum(id)::int8 as s, count(distinct s)::int as d from nums');
  t.same(cnt.rows, [{ n: N, s: String((N * (N + 1)) / 2), d: N }]);
  t.equal((await c.query('select s from nums where id = 7')).rows[0].s, 'v7 \\ é');

  // Out: the same text back.
  const t0 = Date.now();
  const parts: Buffer[] = [];
  const out = c.query(copyTo('COPY (select * from nums order by id) TO STDOUT'));
  await pipeline(
    out,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        parts.push(chunk);
        cb();
      },
    }),
  );
  const text = Buffer.concat(parts).toString('utf8');
  t.equal(text.length, expected.length);
  t.ok(text === expected, 'COPY TO gives back exactly what COPY FROM took');
  const tookOut = Date.now() - t0;

  // Binary COPY out, parsed by hand.
  const bparts: Buffer[] = [];
  const bout = c.query(copyTo('COPY (select id, s, f from nums order by id) TO STDOUT (FORMAT binary)'));
  await pipeline(
    bout,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        bparts.push(chunk);
        cb();
      },
    }),
  );
  const bin = Buffer.concat(bparts);
  const sig = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
  t.ok(bin.subarray(0, 11).equals(sig), 'binary COPY signature');
  let off = 11;
  off += 4; // flags
  off += 4 + bin.readInt32BE(off); // header extension
  let rows = 0;
  let good = 0;
  for (;;) {
    const nf = bin.readInt16BE(off);
    off += 2;
    if (nf === -1) break;
    if (nf !== 3) break;
    const vals: Buffer[] = [];
    for (let i = 0; i < nf; i++) {
      const len = bin.readInt32BE(off);
      off += 4;
      vals.push(bin.subarray(off, off + len));
      off += len;
    }
    rows++;
    const id = vals[0].readInt32BE(0);
    if (id === rows && vals[1].toString('utf8') === `v${rows} \\ é` && vals[2].readDoubleBE(0) === rows / 4) good++;
  }
  t.equal(off, bin.length, 'trailer is the last thing in the stream');
  t.equal(rows, N);
  t.equal(good, N, 'every binary row decodes to what went in');

  // Binary COPY back in, then compare the two tables.
  await c.query('create table nums2 (like nums)');
  const bin2 = c.query(copyFrom('COPY nums2 FROM STDIN (FORMAT binary)'));
  await pipeline(Readable.from([bin.subarray(0, 100), bin.subarray(100, 70_000), bin.subarray(70_000)]), bin2);
  t.equal(bin2.rowCount, N);
  const diff = await c.query('select count(*)::int as n from (select * from nums except select * from nums2) d');
  t.equal(diff.rows[0].n, 0);

  // A failing COPY FROM (bad data) errors, and the connection goes on.
  const bad = c.query(copyFrom('COPY nums FROM STDIN'));
  await t.rejects(pipeline(Readable.from([Buffer.from('1\tok\t1\nnot-a-number\tx\t2\n')]), bad), { code: '22P02' });
  t.equal((await c.query('select count(*)::int as n from nums')).rows[0].n, N, 'failed COPY added nothing');
  t.comment(`COPY in ${tookIn} ms, text out ${tookOut} ms`);
  await c.end();
});

/** Sends a CancelRequest the way node-postgres does: a new connection, no startup (to the gateway unless told). */
function sendCancel(pid: number, secret: number, to: { host: string; port: number } = gw): Promise<void> {
  return new Promise((resolve) => {
    const con = new pg.Connection() as pg.Connection & { connect(port: number, host: string): void; cancel(pid: number, secret: number): void };
    con.on('error', () => {});
    con.on('end', () => resolve());
    con.on('connect', () => con.cancel(pid, secret));
    con.connect(to.port, to.host);
  });
}

t.test('cancel: pg_sleep(60) fails with 57014 quickly; the pid is the backend\'s, the secret is Sluice\'s own', async (t) => {
  const c = await connect('cancel');
  const keys = c as unknown as { processID: number; secretKey: number };
  const real = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  t.type(keys.processID, 'number');
  t.equal(keys.processID, real, 'BackendKeyData carries the backend pid, as pg_backend_pid() shows it');

  const q = c.query('select pg_sleep(60)').then(
    () => null,
    (e: pg.DatabaseError) => e,
  );
  await until('pg_sleep to run', async () => (await backends('cancel', " and state = 'active' and query like 'select pg_sleep%'")) === 1);

  // The right pid with a wrong secret (forged), or the client's key sent straight
  // to the server (it is not the server's secret): nothing happens.
  await sendCancel(keys.processID, (keys.secretKey + 1) | 0);
  await sendCancel(keys.processID, (keys.secretKey ^ 0x40000000) | 0);
  await sendCancel(keys.processID, keys.secretKey, { host: pgc.host, port: pgc.port });
  await sleep(500);
  t.equal(await backends('cancel', " and state = 'active'"), 1, 'a cancel with the wrong key does nothing');
  t.notOk(gw.logs().some((l) => l.event === 'cancel.forwarded'), 'nothing was forwarded');

  const sent = Date.now();
  await sendCancel(keys.processID, keys.secretKey);
  const err = await q;
  const took = Date.now() - sent;
  t.ok(err, 'the query failed');
  t.equal(err?.code, '57014');
  t.match(err?.message, /canceling statement due to user request/);
  t.ok(took < 2000, `cancelled in ${took} ms`);
  await gw.waitForLog((l) => l.event === 'cancel.forwarded' && l.target === 'orders');

  // The session goes on.
  t.same((await c.query('select 1 as one')).rows, [{ one: 1 }]);

  // pg's own Client#cancel path (what pg-cursor / pg-query-stream users reach for).
  const q2 = new pg.Query('select pg_sleep(60)');
  const done = new Promise<Error | null>((resolve) => {
    q2.on('error', (e: Error) => resolve(e));
    q2.on('end', () => resolve(null));
  });
  c.query(q2);
  await until('second pg_sleep to run', async () => (await backends('cancel', " and state = 'active' and query like 'select pg_sleep%'")) === 1);
  const s2 = Date.now();
  const canceller = new pg.Client({ host: gw.host, port: gw.port });
  canceller.on('error', () => {});
  (canceller as unknown as { cancel(c: pg.Client, q: pg.Query): void }).cancel(c, q2);
  const e2 = (await done) as pg.DatabaseError | null;
  t.equal(e2?.code, '57014');
  t.ok(Date.now() - s2 < 2000, `Client#cancel took ${Date.now() - s2} ms`);
  t.same((await c.query('select 2 as two')).rows, [{ two: 2 }]);
  await c.end();
});

t.test('cancel keys: backends of two targets with the same pid are told apart by the secret', async (t) => {
  const keys = new CancelKeys();
  const a = { name: 'a' } as PostgresTargetConfig;
  const b = { name: 'b' } as PostgresTargetConfig;
  const ka = keys.add(a, 4242, 111, 4);
  const kb = keys.add(b, 4242, 222, 4);
  const k32 = keys.add(b, 4243, 333, 32);
  t.equal(ka.pid, 4242, 'the client is given the backend pid');
  t.equal(kb.pid, 4242);
  t.equal(k32.secret.length, 32, 'a 3.2 client gets a 32-byte key');
  t.notOk(ka.secret.equals(kb.secret), 'two sessions with one pid never share a secret');
  t.equal(keys.lookup(4242, ka.secret)?.target.name, 'a');
  t.equal(keys.lookup(4242, kb.secret)?.upstreamSecret, 222);
  t.equal(keys.lookup(4243, k32.secret)?.upstreamSecret, 333);
  const wrong = Buffer.from(ka.secret);
  wrong[3] ^= 1;
  t.equal(keys.lookup(4242, wrong), wrong.equals(kb.secret) ? kb : undefined, 'a wrong secret finds nothing');
  t.equal(keys.lookup(4243, k32.secret.subarray(0, 4)), undefined, 'a prefix of the key finds nothing');
  t.equal(keys.lookup(4244, ka.secret), undefined, 'the right secret with another pid finds nothing');
  keys.remove(ka);
  t.equal(keys.lookup(4242, ka.secret), undefined, 'gone with its session');
  t.equal(keys.lookup(4242, kb.secret)?.target.name, 'b', 'the other session keeps its key');
});

t.test('a client that vanishes mid-query: upstream backend goes, session closes, others go on', async (t) => {
  const bystander = await connect('bystander');
  const pool = new pg.Pool({ ...cfg('bystander-pool'), max: 4 });
  pool.on('error', () => {});
  await Promise.all([1, 2, 3, 4].map(() => pool.query('select 1')));

  await t.test('during pg_sleep(30)', async (t) => {
    const app = 'vanish-sleep';
    const v = await connect(app);
    const sid = await sessionOf(app);
    const q = v.query('select pg_sleep(30)').catch((e: Error) => e);
    await until('pg_sleep to run', async () => (await backends(app, " and state = 'active'")) === 1);
    const gone = Date.now();
    (v as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    t.ok((await q) instanceof Error, 'the client sees its query fail');
    const close = await gw.waitForLog((l) => l.event === 'session.close' && l.session === sid, 5000);
    t.match(close.reason, /client/);
    // Closing the upstream socket alone would leave pg_sleep running for 30 s: Sluice cancels it.
    await gw.waitForLog((l) => l.event === 'cancel.on_close' && l.session === sid, 5000);
    const took = await until('the upstream backend to leave pg_stat_activity', async () => (await backends(app)) === 0, 5000, 100);
    t.ok(Date.now() - gone < 5000, `upstream backend gone ${took} ms after the client`);
  });

  await t.test('while streaming a big result', async (t) => {
    const app = 'vanish-stream';
    const v = await connect(app);
    const sid = await sessionOf(app);
    // generate_series in the select list streams (in FROM it would be materialised first).
    const q = new pg.Query("select generate_series(1, 20000000) as g, repeat('x', 200) as pad");
    let rows = 0;
    const failed = new Promise<void>((resolve) => {
      q.on('error', () => resolve());
      q.on('end', () => resolve());
    });
    const streaming = new Promise<void>((resolve) => {
      q.on('row', () => {
        if (++rows === 1000) resolve();
      });
    });
    v.query(q);
    await streaming;
    const gone = Date.now();
    (v as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await failed;
    const close = await gw.waitForLog((l) => l.event === 'session.close' && l.session === sid, 5000);
    t.match(close.reason, /client/);
    t.ok((close.bytes_to_client as number) > 0);
    await until('the upstream backend to leave pg_stat_activity', async () => (await backends(app)) === 0, 5000, 100);
    t.ok(Date.now() - gone < 5000, `upstream backend gone ${Date.now() - gone} ms after the client`);
  });

  await t.test('in the middle of COPY FROM STDIN', async (t) => {
    const app = 'vanish-copy';
    const v = await connect(app);
    const sid = await sessionOf(app);
    await v.query('create temp table sink (x int)');
    const into = v.query(copyFrom('COPY sink FROM STDIN'));
    into.on('error', () => {});
    into.write('1\n2\n3\n');
    await until('COPY to run', async () => (await backends(app, " and query like 'COPY sink%'")) === 1);
    (v as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await gw.waitForLog((l) => l.event === 'session.close' && l.session === sid, 5000);
    await until('the upstream backend to leave pg_stat_activity', async () => (await backends(app)) === 0, 5000, 100);
    t.pass('upstream backend gone');
  });

  await t.test('Query then Terminate: the query still runs to completion', async (t) => {
    const app = 'end-early';
    const v = await connect(app);
    const sid = await sessionOf(app);
    await v.query('create table if not exists late_writes (note text)');
    // Fire and forget on the wire: Query, Terminate, close, without waiting for
    // an answer. (pg's own end() with a query in flight destroys the socket
    // instead: that is the vanishing case above.)
    const con = (v as unknown as { connection: { query(text: string): void; end(): void } }).connection;
    con.query("insert into late_writes select 'written' from pg_sleep(0.3)");
    con.end();
    await gw.waitForLog((l) => l.event === 'session.close' && l.session === sid, 5000);
    await until('the insert to land', async () => (await pgc.sql('select count(*) from late_writes', 'orders')).trim() === '1', 5000, 100);
    t.notOk(gw.logs().some((l) => l.event === 'cancel.on_close' && l.session === sid), 'no cancel after a Terminate');
  });

  await t.test('other sessions keep working', async (t) => {
    t.same((await bystander.query('select $1::int + 1 as n', [41])).rows, [{ n: 42 }]);
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query('select $1::int as i', [i])));
    t.same(rs.map((r) => r.rows[0].i), Array.from({ length: 20 }, (_, i) => i));
    t.equal(await backends('bystander'), 1);
    t.equal(await backends('bystander-pool'), 4);
  });
  await pool.end();
  await bystander.end();
});

t.test('multi-statement simple query', async (t) => {
  const c = await connect('multi');
  const rs = (await c.query(
    "select 1 as a; select 'two' as b, 2.5::float8 as c; create temp table tt (x int); insert into tt values (1), (2), (3); select count(*)::int as n from tt",
  )) as unknown as pg.QueryResult[];
  t.ok(Array.isArray(rs));
  t.equal(rs.length, 5);
  t.same(rs[0].rows, [{ a: 1 }]);
  t.same(rs[1].rows, [{ b: 'two', c: 2.5 }]);
  t.equal(rs[2].command, 'CREATE');
  t.equal(rs[3].command, 'INSERT');
  t.equal(rs[3].rowCount, 3);
  t.same(rs[4].rows, [{ n: 3 }]);

  // An error in the middle: earlier statements ran (implicit transaction rolled back), later ones did not.
  await t.rejects(c.query('insert into tt values (4); select 1/0; insert into tt values (5)'), { code: '22012' });
  t.same((await c.query('select array_agg(x order by x) as xs from tt')).rows, [{ xs: [1, 2, 3] }], 'the whole implicit transaction rolled back');
  await c.end();
});

t.test('an error inside a transaction, ROLLBACK, and more queries', async (t) => {
  const c = await connect('tx');
  await c.query('create temp table acct (id int primary key, bal int not null check (bal >= 0))');
  await c.query('insert into acct values (1, 100), (2, 0)');

  await c.query('begin');
  await c.query('update acct set bal = bal - 30 where id = 1');
  await t.rejects(c.query('update acct set bal = bal - 30 where id = 2'), { code: '23514' }, 'check violation');
  await t.rejects(c.query('select 1'), { code: '25P02' }, 'the transaction is aborted until it ends');
  await t.rejects(c.query({ name: 'in-failed', text: 'select $1::int', values: [1] }), { code: '25P02' });
  await c.query('rollback');

  t.same((await c.query('select id, bal from acct order by id')).rows, [
    { id: 1, bal: 100 },
    { id: 2, bal: 0 },
  ], 'rolled back');

  // Savepoints: recover inside a transaction.
  await c.query('begin');
  await c.query('update acct set bal = bal - 10 where id = 1');
  await c.query('savepoint s1');
  await t.rejects(c.query('insert into acct values (1, 5)'), { code: '23505' });
  await c.query('rollback to savepoint s1');
  await c.query('update acct set bal = bal + 10 where id = 2');
  await c.query('commit');
  t.same((await c.query('select id, bal from acct order by id')).rows, [
    { id: 1, bal: 90 },
    { id: 2, bal: 10 },
  ]);

  // An extended-protocol error outside a transaction, then the statement cache still works.
  await t.rejects(c.query({ name: 'bad-cast', text: 'select $1::int as n', values: ['nope'] }), { code: '22P02' });
  t.same((await c.query({ name: 'bad-cast', text: 'select $1::int as n', values: ['7'] })).rows, [{ n: 7 }]);
  t.same((await c.query('select 1 as ok')).rows, [{ ok: 1 }]);
  await c.end();
});

t.test('every session closed cleanly and nothing leaked into the logs', async (t) => {
  await until('all upstream sessions to close', async () => Number((await pgc.sql("select count(*) from pg_stat_activity where usename = 'app'")).trim()) === 0);
  // Both counted on each try: log lines reach this process in batches, opens as late as closes.
  const count = (event: string) => gw.logs().filter((l) => l.event === event).length;
  await until('a session.close for every session.open', async () => count('session.close') === count('session.open'));
  t.ok(count('session.open') > 30, 'the sessions of this file were counted');
  const all = gw.output();
  t.notOk(all.includes(token), 'no token in logs');
  t.notOk(all.includes('Tgt-Pa55word'), 'no target password in logs');
});
