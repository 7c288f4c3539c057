// A slow reader slows the server, not the gateway's memory: while psql is
// blocked, Sluice stops reading from Postgres and its RSS stays bounded.
// With recording on, the recording writer's pace joins in: the 1 GB is recorded
// in full and memory stays under the same bound.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { withPostgres } from './helpers/pg-cluster.js';
import { issueCert, makeCA } from './helpers/certs.js';
import { BIN, ordersTarget, prepareOrders, TARGET_PASSWORD } from './helpers/sluice.js';

const run = promisify(execFile);

// Anonymous memory (heap, buffers, threads): what bounded memory is about. File-backed
// pages of the recording store's memory map are page cache, reclaimable, and not counted.
const rssMB = (pid: number) => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const pg = await withPostgres(t);
await prepareOrders(pg);

interface Gateway {
  pid: number;
  conn: string;
  token: string;
  cli(args: string[]): Promise<string>;
}

/**
 * The gateway as users run it. tap puts an --import of its process-info hook into the
 * NODE_OPTIONS of every process a test spawns; in the gateway it loads into the main
 * thread, the recording writer thread and a module-hooks thread (~35 MB of anonymous
 * memory that users do not have), so the gateway starts through `env -u NODE_OPTIONS`.
 */
async function startGateway(t: Test, extra: Record<string, unknown>): Promise<Gateway> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bp-'));
  const ca = makeCA(dir, 'Sluice Gateway Test CA');
  const cert = issueCert(ca, dir, 'gateway', { dns: ['localhost'], ip: ['127.0.0.1'] });
  const configPath = path.join(dir, 'sluice.yaml');
  const config = {
    state_dir: path.join(dir, 'state'),
    listeners: { postgres: { host: '127.0.0.1', port: 0, tls: { cert: cert.cert, key: cert.key } } },
    targets: { orders: ordersTarget(pg) },
    log: { level: 'info' },
    ...extra,
  };
  fs.writeFileSync(configPath, stringify(config));
  const proc = spawn('env', ['-u', 'NODE_OPTIONS', BIN, 'serve', '--config', configPath], {
    env: { ...process.env, ORDERS_PG_PASSWORD: TARGET_PASSWORD },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // Its JSON log lines: the port it listens on, then just drained.
  let out = '';
  let port = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start:\n${out}`)), 20_000);
    const onData = (c: Buffer) => {
      if (port) return;
      out += c;
      for (const line of out.split('\n')) {
        if (!line.includes('"listener.start"')) continue;
        const l = JSON.parse(line) as { protocol?: string; port?: number };
        if (l.protocol !== 'postgres') continue;
        port = l.port!;
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`the gateway exited with ${code}:\n${out}`)));
  });
  const cli = async (args: string[]) => (await run(process.execPath, [BIN, ...args, '--config', configPath], { maxBuffer: 16 << 20 })).stdout;
  const token = (await cli(['token', 'mint', '--sub', 'ci', '--groups', 'ci', '--ttl', '5m'])).trim();
  return { pid: proc.pid!, conn: `host=127.0.0.1 port=${port} dbname=orders user=ci sslmode=verify-full sslrootcert=${ca.cert}`, token, cli };
}

const rows = 1_000_000;
const width = 1000;

async function stalledCopy(t: Test, gw: Gateway): Promise<void> {
  const p = spawn('psql', ['-X', gw.conn, '-c', `copy (select repeat('x', ${width}) from generate_series(1, ${rows})) to stdout`], {
    env: { ...process.env, PGPASSWORD: gw.token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (c) => (stderr += c));
  p.stdout.pause();

  // While nobody reads psql's stdout, the server must end up blocked writing to us.
  let blocked = false;
  for (let i = 0; i < 100 && !blocked; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const w = await pg.sql("select wait_event from pg_stat_activity where usename = 'app' and query like 'copy (select repeat%'");
    blocked = w.trim() === 'ClientWrite';
  }
  t.ok(blocked, 'the server waits on ClientWrite while the client is stalled');
  const stalledRss = rssMB(gw.pid);
  t.ok(stalledRss < 100, `gateway RSS while stalled: ${stalledRss.toFixed(1)} MB`);

  let bytes = 0;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMB(gw.pid))), 50);
  p.stdout.on('data', (c: Buffer) => (bytes += c.length));
  p.stdout.resume();
  const code = await new Promise((r) => p.on('close', r));
  clearInterval(sampler);
  t.equal(code, 0, stderr);
  t.equal(bytes, rows * (width + 1), 'every byte arrived');
  t.ok(peak < 100, `gateway peak RSS while streaming: ${peak.toFixed(1)} MB`);
}

t.test('a 1 GB COPY to a stalled client keeps the gateway under 100 MB', async (t) => {
  await stalledCopy(t, await startGateway(t, { recording: { enabled: false } }));
});

t.test('with recording on: the same bound, and the 1 GB is recorded', async (t) => {
  const gw = await startGateway(t, {});
  await stalledCopy(t, gw);
  // The recording holds every byte the client received (the COPY data plus protocol framing).
  type Entry = { id: string; status: string; bytes_to_client: number; dropped_frames: number };
  let s: Entry | undefined;
  for (let i = 0; i < 100 && s?.status !== 'closed'; i++) {
    if (i) await new Promise((r) => setTimeout(r, 200));
    s = (JSON.parse(await gw.cli(['sessions', 'list', '--json'])) as Entry[])[0];
  }
  t.equal(s?.status, 'closed');
  t.ok(s!.bytes_to_client > rows * (width + 1), `recorded ${s!.bytes_to_client} bytes to the client`);
  t.equal(s!.dropped_frames, 0, 'no frame dropped');
  t.match(await gw.cli(['recordings', 'verify', s!.id]), /^intact/);
});
