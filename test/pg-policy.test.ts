// Statement policy on a real server with real clients: denied statements get a
// clear error and the session goes on; reloads change decisions live.
import t from 'tap';
import pg from 'pg';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { withPostgres } from './helpers/pg-cluster.js';
import { ordersTarget, prepareOrders, psql, startSluice, ROOT } from './helpers/sluice.js';

const run = promisify(execFile);
const cluster = await withPostgres(t);
await prepareOrders(cluster);
await cluster.sql(
  `create table customers (id int primary key, email text);
   insert into customers select g, 'user' || g || '@example.com' from generate_series(1, 10) g;
   create table audit_log (id serial primary key, note text);
   alter table customers owner to app; alter table audit_log owner to app;
   create function bump() returns int language sql as 'insert into audit_log(note) values (''x'') returning id';
   alter function bump() owner to app;`,
  'orders',
);

const policies = [
  { name: 'readers', match: { groups: ['analysts'] }, read_only: true },
  {
    name: 'ci-read-mostly',
    match: { targets: ['orders'], groups: ['ci'] },
    rules: [
      { deny: { kind: ['drop', 'truncate', 'alter_system', 'grant', 'revoke', 'create_role'] } },
      { deny: { kind: ['update', 'delete'], where: 'absent', message: 'add a WHERE clause' } },
      { deny: { copy: ['program', 'file'] } },
      { deny: { functions: ['pg_read_file', 'pg_ls_dir', 'lo_export', 'lo_import', 'dblink*'] } },
      { allow: { kind: ['select', 'insert', 'update', 'delete', 'set', 'show', 'begin', 'commit', 'rollback', 'explain', 'copy', 'create_table', 'values'] } },
    ],
  },
  { name: 'dba', match: { groups: ['dba'] }, rules: [{ allow: {} }] },
];
const targets = { orders: ordersTarget(cluster, { allow: ['group:ci', 'group:dba', 'group:analysts'] }) };
const gw = await startSluice(t, { cluster, config: { policies, targets } });
const ci = await gw.mint('ci-job', ['ci']);
const analyst = await gw.mint('ana', ['analysts']);
const dba = await gw.mint('dba-1', ['dba']);

t.test('psql: a denied statement, then an allowed one, in the same session', async (t) => {
  const r = await psql(gw, ci, ['-v', 'ON_ERROR_STOP=0', '-c', 'drop table customers', '-c', 'select count(*) from customers']);
  t.match(r.stderr, /ERROR:\s+sluice: statement denied: deny kind drop/);
  t.match(r.stderr, /policy "ci-read-mostly", rule "ci-read-mostly#1"/);
  t.match(r.stdout, /\b10\b/);
  t.equal((await cluster.sql("select count(*) from pg_tables where tablename = 'customers'", 'orders')).trim(), '1', 'table still there');
});

t.test('psql: evasions are caught by the parse tree', async (t) => {
  const cases = [
    ['delete from customers', /add a WHERE clause/],
    ['WITH d AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM d', /add a WHERE clause/],
    ["select pg_read_file('/etc/passwd')", /functions pg_read_file/],
    ["copy customers to program 'cat > /tmp/x'", /copy program, file/],
    ['/* harmless */ DrOp /* really */ TABLE customers', /deny kind drop/],
    ["do $$ begin execute 'drop table customers'; end $$", /no policy rule allows this|denied/],
    ['select 1; truncate customers', /deny kind drop, truncate/],
  ] as const;
  for (const [sql, msg] of cases) {
    const r = await psql(gw, ci, ['-v', 'ON_ERROR_STOP=0', '-c', sql, '-Atc', 'select 42']);
    t.match(r.stderr, msg, sql);
    t.match(r.stdout, /^42$/m, `session usable after: ${sql}`);
  }
  t.equal((await cluster.sql('select count(*) from customers', 'orders')).trim(), '10', 'nothing was deleted');
});

t.test('a denial inside a transaction aborts it, like a server error', async (t) => {
  const r = await psql(gw, ci, ['-v', 'ON_ERROR_STOP=0'], {
    input: "begin;\ninsert into audit_log(note) values ('in tx');\ndelete from customers;\nselect 1;\nrollback;\nselect count(*) from audit_log where note = 'in tx';\n",
  });
  t.match(r.stderr, /add a WHERE clause/);
  t.match(r.stderr, /current transaction is aborted/);
  t.match(r.stdout, /^\s*0$/m, 'the insert was rolled back');
});

t.test('unparseable SQL is denied', async (t) => {
  const r = await psql(gw, ci, ['-v', 'ON_ERROR_STOP=0', '-c', 'selec 1', '-Atc', 'select 7']);
  t.match(r.stderr, /could not parse this statement/);
  t.match(r.stdout, /^7$/m);
});

t.test('read_only: reading works, writing is refused, and the server session is read-only', async (t) => {
  const r = await psql(gw, analyst, ['-c', '\\dt', '-c', '\\d customers', '-c', 'explain select * from customers', '-Atc', 'select count(*) from customers']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /customers/);
  t.match(r.stdout, /Seq Scan/);
  for (const sql of ["insert into audit_log(note) values ('x')", 'create table t2 (a int)', "select nextval('audit_log_id_seq')", 'set default_transaction_read_only = off', 'explain analyze delete from customers where id = 1']) {
    const w = await psql(gw, analyst, ['-v', 'ON_ERROR_STOP=0', '-c', sql]);
    t.match(w.stderr, /policy "readers" is read-only/, sql);
  }
  // A function that writes hides behind a SELECT; the server refuses it.
  const f = await psql(gw, analyst, ['-v', 'ON_ERROR_STOP=0', '-c', 'select bump()']);
  t.match(f.stderr, /read-only transaction/);
});

t.test('node-postgres: a denied prepared statement, then more queries on the same connection', async (t) => {
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: ci, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  await c.connect();
  t.teardown(() => c.end());
  await t.rejects(c.query({ name: 'wipe', text: 'delete from customers' }), { code: '42501', message: /add a WHERE clause/ });
  const ok = await c.query({ text: 'select count(*)::int as n from customers where id > $1', values: [5] });
  t.equal(ok.rows[0].n, 5);
  // The denied named statement was never created on the server.
  await t.rejects(c.query({ name: 'wipe', text: 'delete from customers' }), { code: '42501' });
  const named = await c.query({ name: 'ok', text: 'select $1::int + 1 as v', values: [41] });
  t.equal(named.rows[0].v, 42);
  // Pipelined: an allowed query, a denied one and an allowed one in flight at once.
  const [a, b, d] = await Promise.allSettled([
    c.query('select 1 as x'),
    c.query({ text: 'update customers set email = $1', values: ['x'] }),
    c.query({ text: 'select $1::text as y', values: ['after'] }),
  ]);
  t.equal(a.status === 'fulfilled' && a.value.rows[0].x, 1);
  t.equal(b.status, 'rejected');
  t.equal(d.status === 'fulfilled' && d.value.rows[0].y, 'after');
});

t.test('pgbench runs through a policy that allows it, with 0 failures', async (t) => {
  const env = { ...process.env, PGHOST: gw.host, PGPORT: String(gw.port), PGUSER: 'dba', PGSSLMODE: 'verify-full', PGSSLROOTCERT: gw.ca!.cert };
  await run('pgbench', ['-i', '-s', '1', '-q', 'orders'], { env: { ...env, PGPASSWORD: dba } });
  for (const mode of ['simple', 'extended', 'prepared']) {
    const r = await run('pgbench', ['-n', '-M', mode, '-c', '2', '-t', '100', 'orders'], { env: { ...env, PGPASSWORD: ci } });
    t.match(r.stdout, /number of failed transactions: 0 /, mode);
    t.match(r.stdout, /processed: 200\/200/, mode);
  }
});

t.test('every decision is an audit event with the normalised query', async (t) => {
  const denied = gw.logs().filter((l) => l.event === 'policy.decision' && l.decision === 'deny');
  t.ok(denied.length >= 8);
  const drop = denied.find((l) => l.kind === 'drop')!;
  t.equal(drop.sub, 'ci-job');
  t.equal(drop.policy, 'ci-read-mostly');
  t.equal(drop.rule, 'ci-read-mostly#1');
  t.type(drop.fingerprint, 'string');
  const upd = gw.logs().find((l) => l.event === 'policy.decision' && typeof l.query === 'string' && (l.query as string).startsWith('update customers set email = $1'));
  t.ok(upd, 'normalised query logged');
});

t.test('hot reload changes a decision without reconnecting', async (t) => {
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: ci, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  await c.connect();
  t.teardown(() => c.end());
  t.equal((await c.query('select count(*)::int as n from customers')).rows[0].n, 10);
  await gw.reload({ targets, policies: [{ name: 'lockdown', match: { groups: ['ci'] }, rules: [{ deny: { kind: ['select'], message: 'locked down' } }] }] });
  await t.rejects(c.query('select count(*) from customers'), { code: '42501', message: /locked down/ });
  await gw.reload({ targets, policies });
  t.equal((await c.query('select count(*)::int as n from customers')).rows[0].n, 10);
});

t.test('sluice policy check prints facts and the deciding rule', async (t) => {
  const r = await run(process.execPath, [`${ROOT}/bin/sluice.js`, 'policy', 'check', '--config', gw.configPath, '--as', 'sub=ci,groups=ci', '--target', 'orders', 'WITH d AS (DELETE FROM orders RETURNING *) SELECT 1']).catch((e) => e);
  t.equal(r.code, 1, 'exit 1 on deny');
  t.match(r.stdout, /kind: delete/);
  t.match(r.stdout, /action: deny/);
  t.match(r.stdout, /add a WHERE clause/);
  const ok = await run(process.execPath, [`${ROOT}/bin/sluice.js`, 'policy', 'check', '--config', gw.configPath, '--as', 'sub=ci,groups=ci', '--target', 'orders', 'select 1']);
  t.match(ok.stdout, /action: allow/);
});
