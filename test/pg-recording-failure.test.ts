// When the recording store cannot write, recording.on_failure decides, with a
// clear message: deny_new refuses new sessions (and ends live ones), while
// continue_unrecorded goes on and says so loudly in the log. A store that is
// merely busy (many sessions, the in-flight buffer full) is not failing: the
// relays slow down and every session is recorded.
import t from 'tap';
import pg from 'pg';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { withPostgres } from './helpers/pg-cluster.js';
import { BIN, prepareOrders, psql, startSluice, type Sluice } from './helpers/sluice.js';

const run = promisify(execFile);
const CLIENTS = 300;
const cluster = await withPostgres(t, { conf: [`max_connections = ${CLIENTS + 20}`] });
await prepareOrders(cluster);
// ~3 MB of results: far more than a 1 MiB store budget.
const BIG = "select repeat('x', 1000) from generate_series(1, 3000)";

t.test('deny_new: the live session is ended with a message, new ones are refused', async (t) => {
  const gw = await startSluice(t, { cluster, config: { recording: { map_size: '1MiB', on_failure: 'deny_new' } } });
  const token = await gw.mint('ci', ['ci']);
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  c.on('error', () => {});
  await c.connect();
  let err = new Error('the session was not ended');
  for (let i = 0; i < 20; i++) {
    const r = await c.query(BIG).catch((e) => e);
    if (r instanceof Error) {
      err = r;
      break;
    }
  }
  // Mid-result, the FATAL goes out at the next message boundary.
  t.match(err.message, /terminating connection: the recording store cannot write .*recording\.on_failure: deny_new/);
  await gw.waitForLog((l) => l.event === 'recording.failure', 20_000);
  const r = await psql(gw, token, ['-Atc', 'select 1']);
  t.not(r.code, 0);
  t.match(r.stderr, /FATAL:\s+Sluice cannot record sessions right now \(.+\), so new sessions are refused \(recording\.on_failure: deny_new\)/);
});

t.test('continue_unrecorded: sessions go on, and the log says so loudly', async (t) => {
  const gw = await startSluice(t, { cluster, config: { recording: { map_size: '1MiB', on_failure: 'continue_unrecorded' } } });
  const token = await gw.mint('ci', ['ci']);
  for (let i = 0; i < 5; i++) await psql(gw, token, ['-Atc', BIG]);
  const fail = await gw.waitForLog((l) => l.event === 'recording.failure', 20_000);
  t.equal(fail.level, 'error');
  await gw.waitForLog((l) => l.event === 'recording.unrecorded');
  const r = await psql(gw, token, ['-Atc', 'select 42']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '42');
});

/** The CLI against the gateway's store (read-only, while the gateway runs). */
const cli = (gw: Sluice, ...args: string[]) => run(process.execPath, [BIN, ...args, '--config', gw.configPath], { maxBuffer: 64 << 20 });

function pgbench(gw: Sluice, token: string, args: string[]) {
  return run('pgbench', [...args, 'orders'], {
    env: { ...process.env, PGHOST: gw.host, PGPORT: String(gw.port), PGUSER: 'ci', PGPASSWORD: token, PGSSLMODE: 'verify-full', PGSSLROOTCERT: gw.ca!.cert },
    maxBuffer: 16 << 20,
  }).catch((e: Error & { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: `${e.message}\n${e.stderr ?? ''}` }));
}

t.test(`pgbench -c ${CLIENTS} with recording on (deny_new): no session ends, every one is recorded`, async (t) => {
  const gw = await startSluice(t, { cluster, config: { recording: { on_failure: 'deny_new' } } });
  const init = await gw.mint('bench-init', ['ci'], '10m');
  const r0 = await pgbench(gw, init, ['-i', '-s', '1', '-q']);
  t.match(r0.stderr, /done in/);
  const token = await gw.mint('bench', ['ci'], '10m');
  const r = await pgbench(gw, token, ['-S', '-c', String(CLIENTS), '-j', '4', '-t', '20']);
  t.comment(r.stdout.split('\n').filter((l) => /tps|processed|latency/.test(l)).join('; '));
  t.match(r.stdout, new RegExp(`number of clients: ${CLIENTS}\\b`), r.stderr.slice(0, 400));
  t.match(r.stdout, /number of failed transactions: 0 /, r.stderr.slice(0, 400));
  t.notOk(/terminating connection|FATAL|aborted/.test(r.stderr), `pgbench: ${r.stderr.slice(0, 400)}`);
  t.notOk(gw.logs().find((l) => l.event === 'recording.failure' || l.event === 'recording.sessions_closed'), 'the store never counted as failing');
  // Every session is recorded whole, and closed by its client.
  await gw.waitForLog(() => gw.logs().filter((l) => l.event === 'session.close' && l.sub === 'bench').length >= CLIENTS, 30_000);
  const { stdout } = await cli(gw, 'sessions', 'list', '--identity', 'bench', '--limit', '1000', '--json');
  const list = JSON.parse(stdout) as { id: string; status: string; close_reason?: string; frames: number; dropped_frames: number }[];
  // pgbench's clients, and its own connection that prepares the run first.
  t.equal(list.length, CLIENTS + 1, 'one recording per pgbench connection');
  // 20 queries and their results, at least.
  t.equal(list.filter((e) => e.frames >= 40).length, CLIENTS, 'each client ran its 20 transactions through a recorded session');
  const bad = list.filter((e) => e.status !== 'closed' || e.dropped_frames !== 0 || /recording|terminat/.test(e.close_reason ?? ''));
  t.same(bad, [], 'every session closed normally (not ended by Sluice), with nothing dropped');
  for (const e of [list[0]!, list[Math.floor(list.length / 2)]!, list[list.length - 1]!]) {
    const v = await cli(gw, 'recordings', 'verify', e.id);
    t.match(v.stdout, /^intact: \d+ frames, hash chain complete, head signed/, e.id);
  }
});
