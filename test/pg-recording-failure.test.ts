// When the recording store cannot write, recording.on_failure decides, with a
// clear message: deny_new refuses new sessions (and ends live ones), while
// continue_unrecorded goes on and says so loudly in the log. A store that is
// merely busy (many sessions, the in-flight buffer full) is not failing: the
// relays slow down and every session is recorded.
import t from 'tap';
import pg from 'pg';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
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

/** A small tmpfs for the store (root only): the way to fill a disk without filling the machine's. */
function smallDisk(t: { teardown(fn: () => unknown): void }): { stateDir: string; recordings: string } | string {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs';
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-full-'));
  const stateDir = path.join(base, 'state');
  const recordings = path.join(stateDir, 'recordings');
  fs.mkdirSync(recordings, { recursive: true, mode: 0o700 });
  fs.chmodSync(stateDir, 0o700);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', recordings], { stdio: 'pipe' });
  } catch (err) {
    fs.rmSync(base, { recursive: true, force: true });
    return `cannot mount a tmpfs: ${(err as Error).message.split('\n')[0]}`;
  }
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', recordings], { stdio: 'pipe' });
    } catch {
      /* already gone */
    }
    fs.rmSync(base, { recursive: true, force: true });
  });
  return { stateDir, recordings };
}

const fill = (file: string) => run('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M']).catch(() => {}); // until ENOSPC

t.test('disk full: sessions refused with 53100 naming the cause, /healthz 503; space freed: recovers without a restart', async (t) => {
  const disk = smallDisk(t);
  if (typeof disk === 'string') return void t.skip(disk);
  const gw = await startSluice(t, { cluster, admin: true, config: { state_dir: disk.stateDir, recording: { on_failure: 'deny_new' } } });
  const token = await gw.mint('ci', ['ci']);
  const health = async () => {
    const r = await fetch(`${gw.adminUrl}/healthz`);
    return { status: r.status, body: (await r.json()) as { recording: string } };
  };
  const connect = async (app: string) => {
    const c = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, application_name: app, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
    c.on('error', () => {});
    const err = await c.connect().then(() => null, (e: Error & { code?: string }) => e);
    return { c, err };
  };
  t.equal((await health()).status, 200);

  // Fill the disk; the next writes fail.
  const filler = path.join(disk.recordings, 'filler');
  await fill(filler);
  const { c: victim, err: e0 } = await connect('victim');
  t.equal(e0, null, 'logged in before the store noticed');
  let ended: Error | null = null;
  for (let i = 0; i < 40 && !ended; i++) ended = await victim.query(BIG).then(() => null, (e: Error) => e);
  t.match(ended?.message, /terminating connection: the recording store cannot write .*No space left on device \(ENOSPC\).*recording\.on_failure: deny_new/);
  const failure = await gw.waitForLog((l) => l.event === 'recording.failure', 20_000);
  t.match(failure.err, /^recording store cannot write: No space left on device \(ENOSPC\)$/, 'the log names the cause, not "Commit failed"');
  t.notMatch(String(failure.err), /Commit failed/);

  const { err: refused } = await connect('refused');
  t.equal(refused?.code, '53100');
  t.match(refused?.message, /^Sluice cannot record sessions right now \(recording store cannot write: No space left on device \(ENOSPC\)\), so new sessions are refused/);
  t.notMatch(refused?.message, new RegExp(disk.stateDir), 'no server path in what the client sees');
  t.same(await health(), { status: 503, body: { status: 'degraded', sessions: 0, recording: 'failing' } });

  // Free the space: the store recovers on its own.
  fs.rmSync(filler);
  await gw.waitForLog((l) => l.event === 'recording.recovered', 20_000);
  t.equal((await health()).status, 200, '/healthz is 200 again');
  const r = await psql(gw, token, ['-Atc', "select 'after-recovery-canary'"], { conn: { application_name: 'after-recovery' } });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'after-recovery-canary');
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.application === 'after-recovery');
  const id = String(open.session);
  await gw.waitForLog((l) => l.event === 'session.close' && l.session === id);
  let v = { stdout: '' };
  for (let i = 0; i < 20 && !v.stdout.startsWith('intact'); i++) {
    await new Promise((res) => setTimeout(res, 200)); // the closed entry is written just after the close
    v = await cli(gw, 'recordings', 'verify', id).catch((e: { stdout: string }) => e);
  }
  t.match(v.stdout, /^intact: \d+ frames, hash chain complete, head signed by .* \(closed\)/, 'the new session is recorded and verifies');
  const exported = await cli(gw, 'export', id, '--format', 'jsonl');
  const sent = exported.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; dir?: string; data_b64?: string })
    .filter((f) => f.type === 'frame' && f.dir === 'client')
    .map((f) => Buffer.from(f.data_b64!, 'base64').toString('latin1'))
    .join('');
  t.match(sent, "select 'after-recovery-canary'", 'and reads back');
  // What was handed to the store before the disk filled was kept and written once it could be.
  const { stdout } = await cli(gw, 'sessions', 'list', '--json');
  const before = (JSON.parse(stdout) as { id: string; client: string; status: string; close_reason?: string }[]).find((e) => /recording store cannot write/.test(e.close_reason ?? ''));
  t.equal(before?.status, 'closed', 'the session the failure ended is closed in the index');
  t.match((await cli(gw, 'recordings', 'verify', before!.id).catch((e: { stdout: string }) => e)).stdout, /^intact/, 'and its recording verifies');
});
