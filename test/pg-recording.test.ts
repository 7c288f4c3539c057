// Session recording end to end: what the recording says the client sent and
// received is byte-identical to what a tap in front of the client saw, for
// psql, pgbench and node-postgres (COPY and binary included); the DBA's CLI
// lists, replays, exports and verifies it; nothing readable is left on disk.
import t from 'tap';
import pg from 'pg';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { withPostgres } from './helpers/pg-cluster.js';
import { BIN, ordersTarget, prepareOrders, psql, startSluice } from './helpers/sluice.js';

const run = promisify(execFile);
const cluster = await withPostgres(t);
await prepareOrders(cluster);
await cluster.sql(
  `create table customers (id int primary key, email text, card text, blob bytea);
   insert into customers values (1, 'jane.doe@example.com', '4111 1111 1111 1111', '\\x00ff10'), (2, 'RECORDING-CANARY-7f3a9c', 'none', null);
   alter table customers owner to app;`,
  'orders',
);
const masking = [{ name: 'pii', match: { groups: ['ci'] }, detectors: ['email', 'credit_card'] }];
const gw = await startSluice(t, {
  cluster,
  tls: false,
  config: { masking, targets: { orders: ordersTarget(cluster, { tls: { mode: 'disable' } }) } },
});
const token = await gw.mint('ci-job', ['ci']);

/** A loopback tap between a client and the gateway, keeping every byte each way. */
async function tap(): Promise<{ port: number; toServer: Buffer[]; toClient: Buffer[]; close(): void }> {
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  const server = net.createServer((c) => {
    const u = net.connect(gw.port, gw.host);
    c.on('data', (d) => (toServer.push(d), u.write(d)));
    u.on('data', (d) => (toClient.push(d), c.write(d)));
    c.on('close', () => u.end());
    u.on('close', () => c.end());
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, toServer, toClient, close: () => server.close() };
}

const sluice = (...args: string[]) => run(process.execPath, [BIN, ...args, '--config', gw.configPath], { maxBuffer: 64 << 20 });

async function recorded(sessionId: string) {
  const { stdout } = await sluice('export', sessionId, '--format', 'jsonl');
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
  const frames = lines.filter((l) => l.type === 'frame');
  const bytes = (dir: string) => Buffer.concat(frames.filter((f) => f.dir === dir).map((f) => Buffer.from(f.data_b64, 'base64')));
  return { meta: lines[0], frames, client: bytes('client'), server: bytes('server') };
}

async function sessionOf(app: string): Promise<string> {
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.application === app);
  const id = String(open.session);
  await gw.waitForLog((l) => l.event === 'session.close' && l.session === id);
  await new Promise((r) => setTimeout(r, 400)); // the recorder flushes on close
  return id;
}

/** The client's own bytes after authentication, and everything the gateway sent after asking for the password. */
function compare(t: Tap.Test, tapped: { toServer: Buffer[]; toClient: Buffer[] }, rec: { client: Buffer; server: Buffer }) {
  const sent = Buffer.concat(tapped.toServer);
  const got = Buffer.concat(tapped.toClient);
  t.ok(rec.client.length > 0 && sent.subarray(sent.length - rec.client.length).equals(rec.client), `client→gateway bytes identical (${rec.client.length} B)`);
  // The first 9 bytes the client received are AuthenticationCleartextPassword, before recording starts.
  t.ok(got.subarray(9).equals(rec.server), `gateway→client bytes identical (${rec.server.length} B of ${got.length - 9})`);
  t.notOk(rec.client.includes(Buffer.from(token)), 'the token is not in the recording');
}
declare namespace Tap {
  type Test = typeof t;
}

t.test('psql: COPY out, bytea, masking, errors are recorded byte-exactly', async (t) => {
  const tp = await tap();
  t.teardown(() => tp.close());
  const conn = `host=127.0.0.1 port=${tp.port} dbname=orders user=ci sslmode=disable application_name=rec-psql`;
  const p = spawn('psql', ['-X', conn, '-c', 'select * from customers order by id', '-c', 'copy customers to stdout', '-c', 'select 1/0'], { env: { ...process.env, PGPASSWORD: token } });
  let out = '';
  p.stdout.on('data', (c) => (out += c));
  await new Promise((r) => p.on('close', r));
  t.match(out, /\*\*\*\*@example\.com/);
  const id = await sessionOf('rec-psql');
  const rec = await recorded(id);
  compare(t, tp, rec);
  t.notOk(rec.server.includes(Buffer.from('jane.doe@example.com')), 'the recording holds only masked data');
  t.ok(rec.frames.some((f: { dir: string; event?: { event: string } }) => f.dir === 'event' && f.event?.event === 'masking.applied'));
});

t.test('pgbench and node-postgres (binary, COPY) are recorded byte-exactly', async (t) => {
  const tp = await tap();
  t.teardown(() => tp.close());
  // A custom script: no pgbench -i needed.
  const script = path.join(gw.dir, 'bench.sql');
  fs.writeFileSync(script, 'select email from customers where id = 1;\n');
  await run('pgbench', ['-n', '-M', 'extended', '-t', '50', '-f', script, 'orders'], {
    env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(tp.port), PGUSER: 'ci', PGPASSWORD: token, PGSSLMODE: 'disable', PGAPPNAME: 'rec-pgbench2' },
  });
  const id = await sessionOf('rec-pgbench2');
  const tp2 = await tap();
  t.teardown(() => tp2.close());
  const c = new pg.Client({ host: '127.0.0.1', port: tp2.port, user: 'ci', database: 'orders', password: token, application_name: 'rec-node' });
  await c.connect();
  await c.query({ text: 'select id, blob from customers order by id', values: [], binary: true });
  await c.query({ text: 'select $1::int + 1 as v', values: [41] });
  await c.end();
  const nid = await sessionOf('rec-node');
  const nrec = await recorded(nid);
  compare(t, tp2, nrec);
  const brec = await recorded(id);
  t.ok(brec.client.length > 0 && brec.server.length > 0, 'pgbench session recorded');
});

t.test('the close reason says who ended the session, in the log and in the recording', async (t) => {
  // psql's \q sends Terminate and closes; the server closes too as soon as it reads
  // the Terminate. Which close the gateway sees first varies, so try it many times.
  const N = 16;
  const apps = Array.from({ length: N }, (_, i) => `close-q-${i}`);
  for (let i = 0; i < N; i += 4) {
    await Promise.all(
      apps.slice(i, i + 4).map(async (app) => {
        const r = await psql(gw, token, [], { conn: { application_name: app }, input: 'select 1;\n\\q\n' });
        t.equal(r.code, 0, r.stderr);
      }),
    );
  }
  // A client that drops its socket without Terminate, and a backend the server ends.
  const drop = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, application_name: 'close-drop' });
  drop.on('error', () => {});
  await drop.connect();
  (drop as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
  const ended = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, application_name: 'close-server' });
  ended.on('error', () => {});
  await ended.connect();
  await cluster.sql("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'close-server'");

  const want: Record<string, string> = { 'close-drop': 'client disconnected', 'close-server': 'server closed the connection' };
  for (const app of apps) want[app] = 'client ended the session';
  const ids: Record<string, string> = {};
  for (const app of Object.keys(want)) {
    ids[app] = String((await gw.waitForLog((l) => l.event === 'session.open' && l.application === app)).session);
    await gw.waitForLog((l) => l.event === 'session.close' && l.session === ids[app]);
  }
  await new Promise((r) => setTimeout(r, 400)); // the recorder flushes on close
  const logged = Object.fromEntries(Object.entries(ids).map(([app, id]) => [app, gw.logs().find((l) => l.event === 'session.close' && l.session === id)?.reason]));
  t.same(logged, want, 'session.close log lines');
  const list = JSON.parse((await sluice('sessions', 'list', '--identity', 'ci-job', '--limit', '500', '--json')).stdout) as { id: string; close_reason?: string }[];
  const recorded = Object.fromEntries(Object.entries(ids).map(([app, id]) => [app, list.find((e) => e.id === id)?.close_reason]));
  t.same(recorded, want, '`sluice sessions list --json` close_reason');
});

t.test('sessions list, replay, verify, audit: the DBA view, from the recording alone', async (t) => {
  const list = await sluice('sessions', 'list', '--identity', 'ci-job');
  t.match(list.stdout, /SESSION\s+STATUS\s+IDENTITY\s+TARGET/);
  t.match(list.stdout, /closed\s+ci-job\s+orders\s+postgres/);
  const id = (await gw.waitForLog((l) => l.event === 'session.open' && l.application === 'rec-psql')).session as string;
  await cluster.stop(); // the target is offline: replay must not need it
  const replay = await sluice('replay', id, '--rows', '5');
  t.match(replay.stdout, /> select \* from customers order by id/);
  t.match(replay.stdout, /\*\*\*\*@example\.com/, 'masked result rows');
  t.notMatch(replay.stdout, /jane\.doe@example\.com/);
  t.match(replay.stdout, /\(2 rows\)/);
  t.match(replay.stdout, /division by zero/);
  t.match(replay.stdout, /COPY 2/);
  const raw = await sluice('replay', id, '--raw');
  t.match(raw.stdout, /client→gateway/);
  const v = await sluice('recordings', 'verify', id);
  t.match(v.stdout, /^intact: \d+ frames/);
  const audit = await sluice('audit', '--identity', 'ci-job');
  t.match(audit.stdout, /session\.open/);
});

t.test('at rest: no recorded value is findable in the store files', async (t) => {
  const dir = path.join(gw.dir, 'state', 'recordings');
  const files = fs.readdirSync(dir).map((f) => path.join(dir, f));
  const canary = Buffer.from('RECORDING-CANARY-7f3a9c');
  for (const f of files) t.notOk(fs.readFileSync(f).includes(canary), `${path.basename(f)} does not contain the canary`);
});
