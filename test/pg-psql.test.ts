// psql through Sluice against a real Postgres that requires SCRAM over TLS.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { withPostgres } from './helpers/pg-cluster.js';
import { connString, prepareOrders, psql, startSluice } from './helpers/sluice.js';

const pg = await withPostgres(t);
await prepareOrders(pg);
await pg.sql(
  `create table items (id int primary key, name text, price numeric);
   insert into items select g, 'item ' || g, g * 1.5 from generate_series(1, 100) g;
   alter table items owner to app;`,
  'orders',
);
const gw = await startSluice(t, { cluster: pg });
const token = await gw.mint('ci', ['ci']);

t.test('a query over verify-full TLS runs as the target user', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select current_user, count(*) from items']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'app|100');
  const open = await gw.waitForLog((l) => l.event === 'session.open');
  t.equal(open.sub, 'ci');
  t.equal(open.target, 'orders');
  t.equal(open.tls, true);
});

t.test('\\d and \\dt work', async (t) => {
  const r = await psql(gw, token, ['-c', '\\dt', '-c', '\\d items']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /items\s*\|\s*table\s*\|\s*app/);
  t.match(r.stdout, /price\s*\|\s*numeric/);
  t.match(r.stdout, /items_pkey/);
});

t.test('\\copy out and in', async (t) => {
  const file = path.join(gw.dir, 'items.csv');
  const out = await psql(gw, token, ['-c', `\\copy items to '${file}' csv`]);
  t.equal(out.code, 0, out.stderr);
  t.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 100);
  const r = await psql(gw, token, ['-c', 'create table items2 (like items)', '-c', `\\copy items2 from '${file}' csv`, '-Atc', 'select count(*), sum(price) from items2']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /COPY 100/);
  t.match(r.stdout, /100\|7575/);
});

t.test('a 1M-row result streams through', async (t) => {
  const r = await psql(gw, token, ['-Atc', "select g, md5(g::text) from generate_series(1, 1000000) g"], { timeoutMs: 120_000 });
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.equal(lines.length, 1_000_000);
  t.equal(lines[999_999], `1000000|${'8155bc545f84d9652f1012ef2bdfb6eb'}`);
});

t.test('notices reach the client', async (t) => {
  const r = await psql(gw, token, ['-c', "do $$ begin raise notice 'hello from the server'; end $$"]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /NOTICE:\s+hello from the server/);
});

t.test('errors reach the client and the session goes on', async (t) => {
  const r = await psql(gw, token, ['-v', 'ON_ERROR_STOP=0', '-c', 'select 1/0', '-Atc', 'select 42']);
  t.match(r.stderr, /division by zero/);
  t.match(r.stdout, /42/);
});

t.test("psql: a session's own notification names its pg_backend_pid()", async (t) => {
  const r = await psql(gw, token, ['-At', '-c', 'listen psql_events', '-c', "notify psql_events, 'hi'", '-c', 'select pg_backend_pid()']);
  t.equal(r.code, 0, r.stderr);
  const m = /Asynchronous notification "psql_events" with payload "hi" received from server process with PID (\d+)\./.exec(r.stdout);
  t.ok(m, r.stdout);
  const pid = r.stdout.trim().split('\n').at(-1);
  t.equal(m?.[1], pid, 'the pid psql printed is the one pg_backend_pid() returns');
});

t.test('Ctrl-C cancels pg_sleep(60) within a second', async (t) => {
  const started = Date.now();
  const p = spawn('psql', ['-X', connString(gw), '-c', 'select pg_sleep(60)'], {
    env: { ...process.env, PGPASSWORD: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (c) => (stderr += c));
  // Wait until the query is running on the server.
  for (let i = 0; i < 100; i++) {
    const n = await pg.sql("select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'");
    if (n.trim() === '1') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const sent = Date.now();
  p.kill('SIGINT');
  const code = await new Promise((r) => p.on('close', r));
  const took = Date.now() - sent;
  t.not(code, 0);
  t.match(stderr, /canceling statement due to user request/);
  t.ok(took < 1000, `cancelled in ${took} ms`);
  t.ok(Date.now() - started < 30_000);
});

t.test('the gateway logs never contain the token or the target password', async (t) => {
  const all = gw.output();
  t.notOk(all.includes(token), 'no token in logs');
  t.notOk(all.includes('Tgt-Pa55word'), 'no target password in logs');
});
