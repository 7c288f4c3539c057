// The embedded demo database (src/core/demo-target.ts): PGlite behind a
// loopback socket, driven by real clients (psql 15 and node-postgres).
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pgProtocol from 'pg-protocol';

const { serialize } = pgProtocol;
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/demo/embedded-postgres.js';

const run = promisify(execFile);
const ms = (t0: number) => Math.round(performance.now() - t0);
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

async function psql(e: EmbeddedPostgres, args: string[], conn = `dbname=${e.database} user=${e.user}`): Promise<string> {
  const { stdout } = await run('psql', [`host=${e.host} port=${e.port} ${conn}`, '-X', '-v', 'ON_ERROR_STOP=1', ...args], {
    // sslmode=prefer: the server must refuse SSL cleanly; the password must not be asked for.
    env: { ...process.env, PGSSLMODE: 'prefer', PGPASSWORD: 'not-checked', PGCONNECT_TIMEOUT: '10' },
    timeout: 30_000,
  });
  return stdout;
}

function client(e: EmbeddedPostgres, over: pg.ClientConfig = {}): pg.Client {
  const c = new pg.Client({ host: e.host, port: e.port, user: e.user, database: e.database, password: e.password, ...over });
  c.on('error', () => {}); // server-side closes are asserted explicitly
  return c;
}

function luhnOk(s: string): boolean {
  let sum = 0;
  [...s].reverse().forEach((ch, i) => {
    let d = Number(ch);
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  });
  return sum % 10 === 0;
}

function ibanOk(s: string): boolean {
  const x = s.replace(/ /g, '');
  const num = (x.slice(4) + x.slice(0, 4)).replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  return BigInt(num) % 97n === 1n;
}

const HASH = `select (select md5(string_agg(c::text, '|' order by id)) from customers c) as c,
                     (select md5(string_agg(o::text, '|' order by id)) from orders o) as o`;

let e: EmbeddedPostgres;
t.before(async () => {
  const t0 = performance.now();
  e = await startEmbeddedPostgres({});
  t.comment(`in-memory start (PGlite initdb + seed + listen): ${ms(t0)} ms`);
});
t.teardown(() => e?.stop());

t.test('listens on loopback; connection details', async (t) => {
  t.equal(e.host, '127.0.0.1');
  t.ok(e.port > 0);
  t.same([e.user, e.database], ['postgres', 'postgres']);
});

t.test('psql: count, \\dt, \\d, select *', async (t) => {
  t.equal((await psql(e, ['-Atc', 'select count(*) from customers'])).trim(), '200');
  t.equal((await psql(e, ['-Atc', 'select count(*) from orders'])).trim(), '500');
  const dt = await psql(e, ['-c', '\\dt']);
  t.match(dt, /public \| customers \| table/);
  t.match(dt, /public \| orders +\| table/);
  const d = await psql(e, ['-c', '\\d customers']);
  for (const col of ['full_name', 'email', 'phone', 'card_number', 'ssn', 'iban', 'notes', 'created_at']) t.match(d, col);
  t.match(d, /timestamp with time zone/);
  const rows = (await psql(e, ['-At', '-F', '\t', '-c', 'select * from customers order by id limit 5'])).trim().split('\n');
  t.equal(rows.length, 5);
  t.equal(rows[0]!.split('\t').length, 9);
});

t.test('psql: any user and database name is accepted, no password asked', async (t) => {
  const out = await psql(e, ['-Atc', 'select current_user, current_database()'], 'dbname=no_such_db user=alice');
  t.equal(out.trim(), 'postgres|postgres');
});

t.test('seeded fake PII has the promised shape', async (t) => {
  const c = client(e);
  await c.connect();
  t.teardown(() => c.end());
  const { rows } = await c.query('select * from customers order by id');
  t.equal(rows.length, 200);
  const cards = rows.map((r) => r.card_number as string);
  t.ok(cards.every((s) => /^\d{16}$|^\d{4} \d{4} \d{4} \d{4}$/.test(s)), 'cards: 16 digits, spaced or not');
  t.ok(cards.some((s) => s.includes(' ')) && cards.some((s) => !s.includes(' ')), 'both card formats present');
  t.ok(cards.every((s) => luhnOk(s.replace(/ /g, ''))), 'every card passes Luhn');
  t.ok(rows.every((r) => /^(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$/.test(r.ssn)), 'plausible SSNs');
  t.ok(rows.every((r) => /^(DE|GB|FR)\d{2}/.test(r.iban) && ibanOk(r.iban)), 'valid IBAN checksums');
  t.same(new Set(rows.map((r) => (r.iban as string).slice(0, 2))), new Set(['DE', 'GB', 'FR']));
  t.ok(rows.every((r) => /^[a-z]+\.[a-z]+\d+@[a-z.]+$/.test(r.email)), 'emails');
  t.ok(rows.every((r) => r.created_at instanceof Date), 'created_at is a timestamptz');

  const notes = rows.map((r) => r.notes as string);
  const sixteen = (n: string) => (n.match(/\b\d{4} ?\d{4} ?\d{4} ?\d{4}\b/g) ?? []).map((m) => m.replace(/ /g, ''));
  t.ok(notes.some((n) => /@example\./.test(n)), 'notes with an email');
  t.ok(notes.some((n) => sixteen(n).some(luhnOk)), 'notes with a valid card');
  const decoys = notes.filter((n) => n.startsWith('Order number'));
  t.ok(decoys.length > 10 && decoys.every((n) => sixteen(n).length === 1 && !luhnOk(sixteen(n)[0]!)), 'order-number decoys fail Luhn');
  t.ok(notes.some((n) => /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/.test(n)), 'UUID decoy');
  t.ok(notes.some((n) => /\d{4}-\d{2}-\d{2}/.test(n)), 'date decoy');
  t.ok(notes.some((n) => n === '' || /^[A-Z][a-z .,]+$/.test(n)), 'harmless notes');

  const o = await c.query(`select count(*)::int n, count(distinct customer_id)::int cs, min(amount)::float lo,
    bool_and(customer_id between 1 and 200) fk from orders`);
  t.equal(o.rows[0].n, 500);
  t.ok(o.rows[0].fk && o.rows[0].cs > 100 && o.rows[0].lo > 0);
});

t.test('pg: parameterised query (extended protocol)', async (t) => {
  const c = client(e, { user: 'whoever', database: 'whatever' });
  await c.connect();
  t.teardown(() => c.end());
  const r = await c.query('select id, full_name from customers where id = $1 and $2::text = $2', [42, 'x']);
  t.equal(r.rows.length, 1);
  t.equal(r.rows[0].id, 42);
  const named = await c.query({ name: 'by_status', text: 'select count(*)::int n from orders where status = $1', values: ['paid'] });
  t.ok(named.rows[0].n > 0);
  t.equal((await c.query({ name: 'by_status', text: 'select count(*)::int n from orders where status = $1', values: ['paid'] })).rows[0].n, named.rows[0].n);
  await t.rejects(c.query('select $1::int', ['not a number']), /invalid input syntax/);
  t.equal((await c.query('select 1 as one')).rows[0].one, 1, 'session usable after an error');
});

t.test('pg: pool of 5 connections querying at once', async (t) => {
  const pool = new pg.Pool({ host: e.host, port: e.port, user: e.user, database: e.database, max: 5 });
  pool.on('error', () => {});
  t.teardown(() => pool.end());
  let wrong = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 5 }, async (_, w) => {
    for (let i = 0; i < 60; i++) {
      const id = 1 + ((w * 41 + i) % 200);
      // two statement shapes with different parameter counts: an interleaved
      // unnamed Parse from another connection would error or return wrong rows
      const r = w % 2
        ? await pool.query('select id, $2::text as tag from customers where id = $1', [id, `w${w}`])
        : await pool.query('select id from customers where id = $1', [id]);
      if (r.rows[0]?.id !== id || (w % 2 && r.rows[0]?.tag !== `w${w}`)) wrong++;
    }
  }));
  t.comment(`300 queries over 5 pooled connections: ${ms(t0)} ms`);
  t.equal(pool.totalCount, 5, '5 server connections were open together');
  t.equal(wrong, 0);
});

t.test('an extended-query batch split across TCP writes is not interleaved with another client', async (t) => {
  const a = net.connect(e.port, e.host);
  let got = Buffer.alloc(0);
  a.on('data', (d) => (got = Buffer.concat([got, d])));
  t.teardown(() => a.destroy());
  a.write(serialize.startup({ user: 'a', database: 'postgres' }));
  await sleep(100);
  const b = client(e);
  await b.connect();
  t.teardown(() => b.end());
  a.write(Buffer.concat([serialize.parse({ text: 'select $1::int * 2 as x' }), serialize.bind({ values: ['21'] })]));
  await sleep(50);
  const bq = b.query('select $1::text as y', ['from b']); // would replace a's unnamed statement
  await sleep(100);
  a.write(Buffer.concat([serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()]));
  t.same((await bq).rows, [{ y: 'from b' }]);
  for (let i = 0; i < 50 && !got.includes('Z\0\0\0\x05I', got.length - 6, 'latin1'); i++) await sleep(20);
  const s = got.toString('latin1');
  t.notMatch(s, 'SERROR', 'no error for a');
  t.match(s, '\0\0\0\x0242', 'a got 21 * 2');
});

t.test('an open transaction holds the backend; other sessions wait; disconnect rolls back', async (t) => {
  const a = client(e);
  const b = client(e);
  await a.connect();
  await b.connect();
  t.teardown(() => b.end());
  await a.query('begin');
  await a.query(`insert into orders (customer_id, amount, status) values (1, 1, 'tx-test')`);
  let bDone = false;
  const bq = b.query(`select count(*)::int n from orders where status = 'tx-test'`).then((r) => ((bDone = true), r));
  await sleep(200);
  t.notOk(bDone, 'b waits while a is inside a transaction (single backend)');
  (a as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy(); // abrupt disconnect, no COMMIT
  t.equal((await bq).rows[0].n, 0, 'a\'s insert was rolled back');
});

t.test('Terminate, then a new connection: works and starts from a reset session', async (t) => {
  const a = client(e);
  await a.connect();
  await a.query(`set application_name = 'leaky'`);
  await a.query('prepare p1 as select 1');
  await a.query('create temp table scratch (x int)');
  await a.end(); // sends Terminate
  const b = client(e);
  await b.connect();
  t.teardown(() => b.end());
  t.equal((await b.query('show application_name')).rows[0].application_name, '');
  t.equal((await b.query('select count(*)::int n from pg_prepared_statements')).rows[0].n, 0);
  t.equal((await b.query(`select to_regclass('pg_temp.scratch') is null as gone`)).rows[0].gone, true);
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) {
    const c = client(e);
    await c.connect();
    t.equal((await c.query('select 1 as x')).rows[0].x, 1);
    await c.end();
  }
  t.comment(`20 x (connect, query, terminate): ${ms(t0)} ms`);
  const t1 = performance.now();
  for (let i = 0; i < 200; i++) await b.query('select full_name from customers where id = $1', [1 + i]);
  t.comment(`point query latency: ${((performance.now() - t1) / 200).toFixed(2)} ms`);
});

t.test('a startup packet without a user does not break the server', async (t) => {
  const s = net.connect(e.port, e.host);
  t.teardown(() => s.destroy());
  s.write(serialize.startup({ database: 'postgres' }));
  const reply = await new Promise<Buffer>((r) => s.once('data', r));
  t.equal(String.fromCharCode(reply[0]!), 'R', 'AuthenticationOk');
  t.equal(reply.readInt32BE(5), 0);
  t.equal((await psql(e, ['-Atc', 'select 1'])).trim(), '1');
});

t.test('dataDir: persistent, seeded once, same data as in-memory; stop() with clients attached', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-demo-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const mem = client(e);
  await mem.connect();
  const want = (await mem.query(HASH)).rows[0];
  await mem.end();

  let t0 = performance.now();
  const d1 = await startEmbeddedPostgres({ dataDir: dir, port: 0 });
  t.comment(`dataDir first start (initdb + seed): ${ms(t0)} ms`);
  t.not(d1.port, e.port);
  const c1 = client(d1);
  await c1.connect();
  t.same((await c1.query(HASH)).rows[0], want, 'deterministic seed');
  await c1.query(`insert into orders (customer_id, amount, status) values (2, 2, 'persisted')`);
  const closed = new Promise((r) => c1.once('end', r));
  await d1.stop(); // c1 still connected
  await closed;
  t.pass('client saw the connection close');

  t0 = performance.now();
  const d2 = await startEmbeddedPostgres({ dataDir: dir });
  t.comment(`dataDir restart (no initdb, no seed): ${ms(t0)} ms`);
  t.teardown(() => d2.stop());
  const c2 = client(d2);
  await c2.connect();
  t.teardown(() => c2.end());
  t.equal((await c2.query('select count(*)::int n from customers')).rows[0].n, 200, 'not seeded twice');
  t.equal((await c2.query(`select count(*)::int n from orders`)).rows[0].n, 501, 'write persisted, orders not reseeded');
});

t.test('sluice demo: a taken port is named at once, before the embedded database boots', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-demo-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const taken = (busy.address() as net.AddressInfo).port;
  const bin = path.resolve(import.meta.dirname, '../bin/sluice.js');
  for (const args of [['--port', String(taken), '--admin-port', '0'], ['--port', '0', '--admin-port', String(taken)]]) {
    const t0 = performance.now();
    const err = await run(process.execPath, [bin, 'demo', ...args, '--state-dir', dir, '--in-memory'], { timeout: 30_000 }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    t.ok(err, `exits non-zero with ${args.join(' ')}`);
    t.equal(err?.code, 1);
    const flag = args[1] === String(taken) ? '--port' : '--admin-port';
    t.match(err?.stderr, `port ${taken} (${flag}) is in use`, 'names the port and the flag');
    t.notMatch(err?.stderr, /Starting the embedded Postgres/, 'the embedded database was not started');
    t.ok(ms(t0) < 10_000, `answered in ${ms(t0)} ms`);
  }
  const help = await run(process.execPath, [bin, 'demo', '--help']).then((r) => r.stdout + r.stderr, (e: { stdout: string; stderr: string }) => e.stdout + e.stderr);
  t.match(help, '--admin-port', 'demo --help names --admin-port');
});
