// psql through Sluice against a real Postgres that requires SCRAM over TLS,
// also in a single-byte client encoding (LATIN1) with policy and masking on.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { withPostgres } from './helpers/pg-cluster.js';
import { connString, prepareOrders, psql, startSluice, TARGET_PASSWORD, type Sluice } from './helpers/sluice.js';

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

// For the client_encoding tests: non-ASCII names and values, and a second gateway with a policy
// that names a non-ASCII table, and masking.
await pg.sql(
  `create table "café" (id int, "prénom" text, email text, note text);
   insert into "café" values (1, 'abcdefgh±±±±', 'josé@example.com', 'Crème brûlée à ½ £');
   create table "geheim_ä" (x int);
   insert into "geheim_ä" values (42);
   alter table "café" owner to app;
   alter table "geheim_ä" owner to app;`,
  'orders',
);
const enc = await startSluice(t, {
  cluster: pg,
  tls: false,
  config: {
    policies: [{ name: 'enc', match: { groups: ['enc'] }, rules: [{ deny: { tables: ['geheim_ä'], message: 'no secrets' } }, { allow: {} }] }],
    masking: [{ name: 'pii', match: { groups: ['enc'] }, columns: [{ column: 'prénom', strategy: 'partial' }], detectors: [{ name: 'email', strategy: 'partial' }] }],
  },
});
const encToken = await enc.mint('enc-user', ['ci', 'enc']);

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

// ---- client_encoding -----------------------------------------------------------

/** psql with raw bytes in and out (a LATIN1 client's bytes are not UTF-8). */
function psqlBytes(conn: string, password: string, input: Buffer): Promise<{ code: number | null; out: Buffer; err: Buffer }> {
  return new Promise((resolve) => {
    const p = spawn('psql', ['-X', '-A', conn], { env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    p.on('close', (code) => resolve({ code, out: Buffer.concat(out), err: Buffer.concat(err) }));
    p.stdin.end(input);
  });
}
const directConn = (extra = '') => `host=${pg.host} port=${pg.port} dbname=orders user=app sslmode=require ${extra}`;
const viaConn = (g: Sluice, extra: Record<string, string> = {}) => connString(g, extra);
/** psql's error lines name the server it connected to; the rest must be the same. */
const errText = (b: Buffer) => b.toString('latin1').replace(/^psql:<stdin>:\d+: /gm, '');


t.test('a LATIN1 client writes and reads non-ASCII text through Sluice exactly as direct', async (t) => {
  const script = Buffer.from(
    [
      'show client_encoding;',
      'create temp table n (id int, t text);',
      "insert into n values (1, 'Crème brûlée à ½ £ (±5 °C)'), (2, 'Ærø Øst, naïve façade');",
      'select id, t, length(t), octet_length(t) from n order by id;',
      "select t from n where t like 'Cr%me%';",
      "select 'héllo'::int;",
      "copy (select * from n order by id) to stdout;",
      '',
    ].join('\n'),
    'latin1',
  );
  const direct = await psqlBytes(directConn('client_encoding=LATIN1'), TARGET_PASSWORD, script);
  const via = await psqlBytes(viaConn(gw, { client_encoding: 'LATIN1' }), token, script);
  t.equal(direct.code, 0, errText(direct.err));
  t.ok(direct.out.includes(Buffer.from('Crème brûlée à ½ £ (±5 °C)', 'latin1')), 'direct: LATIN1 bytes come back');
  t.match(direct.out.toString('latin1'), /^client_encoding\nLATIN1\n/);
  t.equal(via.code, direct.code);
  t.same(via.out.toString('latin1'), direct.out.toString('latin1'), 'stdout byte for byte as direct');
  t.ok(via.out.equals(direct.out));
  t.equal(errText(via.err), errText(direct.err), 'the same errors (in LATIN1)');
  t.match(errText(via.err), /invalid input syntax for type integer: "héllo"/);
});

/** What a client in group enc runs: a masked table, a denied one, a masked alias. */
const encScript = [
  'select id, "prénom", email, note from "café";',
  'select * from "geheim_ä";',
  `select 'Zoë ±½¼ abcdefgh' as "prénom";`,
  '',
].join('\n');

t.test('policy and masking read a LATIN1 client the same as a UTF-8 one', async (t) => {
  const utf8 = await psqlBytes(viaConn(enc, { client_encoding: 'UTF8' }), encToken, Buffer.from(encScript, 'utf8'));
  const latin1 = await psqlBytes(viaConn(enc, { client_encoding: 'LATIN1' }), encToken, Buffer.from(encScript, 'latin1'));
  // \encoding switches a session that started in UTF8 (psql sends SET client_encoding).
  const switched = await psqlBytes(viaConn(enc, { client_encoding: 'UTF8' }), encToken, Buffer.concat([Buffer.from('\\encoding LATIN1\n'), Buffer.from(encScript, 'latin1')]));
  const text = utf8.out.toString('utf8');
  t.match(text, /1\|\*\*\*\*±±±±\|\*\*\*\*@example\.com\|Crème brûlée à ½ £/, 'masked: partial keeps 4 characters, the email its domain');
  t.match(text, /prénom\n\*\*\*\*efgh\n/, 'an alias named like a masked column is masked');
  t.match(utf8.err.toString('utf8'), /sluice: statement denied: no secrets/);
  t.notOk(text.includes('42'), 'the denied table was not read');
  for (const [name, r] of [['LATIN1', latin1], ['\\encoding LATIN1', switched]] as const) {
    t.equal(r.out.toString('latin1'), text, `${name}: the same rows, masked the same, in LATIN1`);
    t.match(r.err.toString('latin1'), /sluice: statement denied: no secrets/, `${name}: the non-ASCII table name is read and denied`);
  }
});

/** Backend messages from raw bytes: type letter and body. */
function messages(buf: Buffer): { type: string; body: Buffer }[] {
  const out: { type: string; body: Buffer }[] = [];
  for (let i = 0; i + 5 <= buf.length; ) {
    const len = buf.readInt32BE(i + 1);
    if (i + 1 + len > buf.length) break;
    out.push({ type: String.fromCharCode(buf[i]!), body: buf.subarray(i + 5, i + 1 + len) });
    i += 1 + len;
  }
  return out;
}
const queryMsg = (sql: Buffer) => {
  const h = Buffer.alloc(5);
  h[0] = 0x51;
  h.writeInt32BE(4 + sql.length + 1, 1);
  return Buffer.concat([h, sql, Buffer.from([0])]);
};

t.test('a statement pipelined behind a client_encoding change is not read in the wrong encoding', async (t) => {
  const s = net.connect({ host: enc.host, port: enc.port });
  t.teardown(() => s.destroy());
  let got = Buffer.alloc(0);
  s.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
  const readyCount = () => messages(got).filter((m) => m.type === 'Z').length;
  const until = async (n: number) => {
    for (let i = 0; i < 200 && readyCount() < n; i++) await new Promise((r) => setTimeout(r, 25));
    t.ok(readyCount() >= n, `${n} ReadyForQuery`);
  };
  await new Promise((r) => s.once('connect', r));
  const startup = Buffer.from('\0\0\0\0\0\x03\0\0user\0enc-user\0database\0orders\0\0', 'latin1');
  startup.writeInt32BE(startup.length, 0);
  s.write(startup);
  for (let i = 0; i < 100 && !messages(got).some((m) => m.type === 'R'); i++) await new Promise((r) => setTimeout(r, 20));
  const pw = Buffer.from(encToken + '\0');
  const p = Buffer.alloc(5);
  p[0] = 0x70;
  p.writeInt32BE(4 + pw.length, 1);
  s.write(Buffer.concat([p, pw]));
  await until(1);
  const errorsFrom = (from: number) =>
    messages(got)
      .slice(from)
      .filter((m) => m.type === 'E')
      .map((m) => /M([^\0]*)/.exec(m.body.toString('latin1'))![1]);
  // Both at once: Sluice reads the second before the server has applied the first.
  let mark = messages(got).length;
  s.write(Buffer.concat([queryMsg(Buffer.from("set client_encoding to 'LATIN1'")), queryMsg(Buffer.from('select * from "geheim_ä"', 'latin1'))]));
  await until(3);
  t.match(errorsFrom(mark)[0], /cannot be sure which client_encoding the server reads it in/, 'refused: the name could not be read for sure');
  // Sent on its own, it is read in LATIN1 (as the server reported) and the rule applies.
  mark = messages(got).length;
  s.write(queryMsg(Buffer.from('select * from "geheim_ä"', 'latin1')));
  await until(4);
  t.match(errorsFrom(mark)[0], /^sluice: statement denied: no secrets/);
  mark = messages(got).length;
  s.write(queryMsg(Buffer.from('select "prénom" from "café"', 'latin1')));
  await until(5);
  const row = messages(got).slice(mark).find((m) => m.type === 'D');
  t.ok(row, 'a row came back');
  t.same(row!.body.subarray(6).toString('latin1'), '****±±±±', 'masked in LATIN1 bytes');
});

t.test('the gateway logs never contain the token or the target password', async (t) => {
  const all = gw.output();
  t.notOk(all.includes(token), 'no token in logs');
  t.notOk(all.includes('Tgt-Pa55word'), 'no target password in logs');
});
