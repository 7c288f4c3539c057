// Runs the real `sluice serve` (bin/sluice.js → dist/) as a child process with a
// generated config, the way a user would, and mints tokens with the real CLI.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import net from 'node:net';
import { issueCert, makeCA, type KeyPair } from './certs.js';
import { freePort } from './ports.js';
import type { PgCluster } from './pg-cluster.js';

const run = promisify(execFile);
export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/sluice.js');

export interface SluiceOptions {
  /** Postgres cluster the default target `orders` points at. */
  cluster?: PgCluster;
  /** Extra or replacement config keys (merged shallowly at top level; targets merged by name). */
  config?: Record<string, unknown>;
  /** Serve TLS on the Postgres listener with a cert from a fresh test CA (default true). */
  tls?: boolean;
  /** Environment for the gateway (target passwords). */
  env?: Record<string, string>;
  /**
   * Log to a file instead of the pipe this process reads (benchmarks: parsing every
   * audit line here would compete with the gateway for CPU). logs() is then empty.
   */
  quiet?: boolean;
  /** Also start the admin API (listeners.admin, plain HTTP on loopback). */
  admin?: boolean;
  /** Also start the SSH listener (listeners.ssh on a free loopback port). */
  ssh?: boolean;
  /** Also start the HTTP listener on a free loopback port: plain HTTP/1.1, or TLS (h2 + HTTP/1.1, the gateway's test cert); an object adds listener keys. */
  http?: 'plain' | 'tls' | { tls?: boolean; [k: string]: unknown };
  /** Another build's bin/sluice.js (bench/build-ab.ts runs an older checkout's); default this tree's. */
  bin?: string;
}

export interface Sluice {
  host: string;
  port: number;
  dir: string;
  configPath: string;
  /** The admin API's base URL, when started with `admin: true`. */
  adminUrl?: string;
  /** The SSH listener's port, when started with `ssh: true`. */
  sshPort?: number;
  /** The HTTP listener's port, when started with `http`. */
  httpPort?: number;
  /** CA that signed the gateway's certificate (for sslrootcert). */
  ca?: KeyPair;
  proc: ChildProcess;
  mint(sub: string, groups?: string[], ttl?: string, extra?: string[]): Promise<string>;
  /** Everything the gateway logged so far, as parsed JSON lines. */
  logs(): Record<string, unknown>[];
  /** Raw stdout+stderr. */
  output(): string;
  /** Waits until a log line matches. */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  reload(config: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

export const TARGET_PASSWORD = 'Tgt-Pa55word-never-shown';

/** A config object for a target named `orders` on the cluster, reachable with TARGET_PASSWORD. */
export function ordersTarget(cluster: PgCluster, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 'postgres',
    host: cluster.host,
    port: cluster.port,
    database: 'orders',
    user: 'app',
    password: { env: 'ORDERS_PG_PASSWORD' },
    tls: { mode: 'verify-full', ca: cluster.caCert, servername: 'localhost' },
    allow: ['group:ci', 'group:dba', 'sub:nightly-etl'],
    ...extra,
  };
}

/** Creates user `app` (SCRAM) and database `orders` on the cluster. */
export async function prepareOrders(cluster: PgCluster): Promise<void> {
  await cluster.createUser('app', TARGET_PASSWORD);
  await cluster.createDatabase('orders', 'app');
}

function buildConfig(dir: string, opts: SluiceOptions, ca?: KeyPair, cert?: KeyPair, port = 0): Record<string, unknown> {
  const base: Record<string, unknown> = {
    state_dir: path.join(dir, 'state'),
    listeners: {
      postgres: { host: '127.0.0.1', port, ...(cert ? { tls: { cert: cert.cert, key: cert.key } } : {}) },
      ...(opts.admin ? { admin: { host: '127.0.0.1', port: 0 } } : {}),
      ...(opts.ssh ? { ssh: { host: '127.0.0.1', port: 0 } } : {}),
      ...(opts.http ? { http: httpListener(opts.http, cert) } : {}),
    },
    targets: opts.cluster ? { orders: ordersTarget(opts.cluster) } : {},
    log: { level: 'debug' },
  };
  const extra = opts.config ?? {};
  for (const [k, v] of Object.entries(extra)) {
    if (k === 'targets') base.targets = { ...(base.targets as object), ...(v as object) };
    else base[k] = v;
  }
  void ca;
  return base;
}

function httpListener(o: NonNullable<SluiceOptions['http']>, cert?: KeyPair): Record<string, unknown> {
  const { tls, ...rest } = typeof o === 'string' ? { tls: o === 'tls' } : o;
  return { host: '127.0.0.1', port: 0, ...(tls && cert ? { tls: { cert: cert.cert, key: cert.key } } : {}), ...rest };
}

/** The V8 flags on the bin's shebang line. */
function shebangFlags(bin = BIN): string[] {
  const first = fs.readFileSync(bin, 'utf8').split('\n', 1)[0]!;
  return first.split(/\s+/).filter((w) => w.startsWith('--'));
}

export async function startSluice(t: { teardown(fn: () => unknown): void }, opts: SluiceOptions = {}): Promise<Sluice> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-gw-'));
  let ca: KeyPair | undefined;
  let cert: KeyPair | undefined;
  if (opts.tls !== false) {
    ca = makeCA(dir, 'Sluice Gateway Test CA');
    cert = issueCert(ca, dir, 'gateway', { dns: ['localhost'], ip: ['127.0.0.1'] });
  }
  const configPath = path.join(dir, 'sluice.yaml');
  const fixedPort = opts.quiet ? await freePort() : 0;
  const cfgObj = buildConfig(dir, opts, ca, cert, fixedPort);
  if (opts.quiet) cfgObj.log = { ...(cfgObj.log as object), file: path.join(dir, 'sluice.log') };
  fs.writeFileSync(configPath, stringify(cfgObj));
  const env = { ...process.env, ORDERS_PG_PASSWORD: TARGET_PASSWORD, ...(opts.env ?? {}) };
  // Run the bin itself, so its shebang's V8 flags apply as they do for users. SLUICE_CPU_PROF=<dir>
  // (benchmarks) runs it under --cpu-prof with the same flags; the profile is written at stop.
  // SLUICE_NODE_FLAGS adds Node flags the same way (e.g. `--perf-basic-prof`, so `perf record` names
  // JavaScript frames).
  const prof = process.env.SLUICE_CPU_PROF;
  const extra = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), ...(process.env.SLUICE_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [])];
  const bin = opts.bin ?? BIN;
  const proc = extra.length
    ? spawn(process.execPath, [...shebangFlags(bin), ...extra, bin, 'serve', '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(bin, ['serve', '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let partial = '';
  const onChunk = (c: Buffer) => {
    const s = c.toString();
    out += s;
    partial += s;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        const j = JSON.parse(line);
        lines.push(j);
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i].pred(j)) {
            waiters[i].resolve(j);
            waiters.splice(i, 1);
          }
        }
      } catch {
        /* not JSON */
      }
    }
  };
  proc.stdout!.on('data', onChunk);
  proc.stderr!.on('data', onChunk);

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const hit = lines.find(pred);
      if (hit) return resolve(hit);
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; output so far:\n${out.slice(-3000)}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      proc.once('exit', (code) => reject(new Error(`sluice exited with ${code}:\n${out.slice(-3000)}`)));
    });

  const started = opts.quiet ? { port: await waitForPort(fixedPort, proc) } : await waitForLog((l) => l.event === 'listener.start' && l.protocol === 'postgres', 20_000);
  const adminStarted = opts.admin ? await waitForLog((l) => l.event === 'listener.start' && l.protocol === 'admin', 20_000) : undefined;
  const sshStarted = !opts.ssh ? undefined : opts.quiet ? await listenerFromLogFile(path.join(dir, 'sluice.log'), 'ssh', proc) : await waitForLog((l) => l.event === 'listener.start' && l.protocol === 'ssh', 20_000);
  const httpStarted = !opts.http ? undefined : opts.quiet ? await listenerFromLogFile(path.join(dir, 'sluice.log'), 'http', proc) : await waitForLog((l) => l.event === 'listener.start' && l.protocol === 'http', 20_000);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  t.teardown(stop);

  return {
    host: '127.0.0.1',
    port: started.port as number,
    dir,
    configPath,
    adminUrl: adminStarted ? `http://127.0.0.1:${adminStarted.port}` : undefined,
    sshPort: sshStarted ? (sshStarted.port as number) : undefined,
    httpPort: httpStarted ? (httpStarted.port as number) : undefined,
    ca,
    proc,
    async mint(sub, groups = ['ci'], ttl = '5m', extra = []) {
      const { stdout } = await run(process.execPath, [bin, 'token', 'mint', '--config', configPath, '--sub', sub, '--groups', groups.join(','), '--ttl', ttl, ...extra]);
      return stdout.trim();
    },
    logs: () => lines,
    output: () => out,
    waitForLog,
    async reload(config) {
      fs.writeFileSync(configPath, stringify(buildConfig(dir, { ...opts, config }, ca, cert)));
      const n = lines.filter((l) => l.event === 'config.reload').length;
      proc.kill('SIGHUP');
      await waitForLog((l) => l.event === 'config.reload' && lines.filter((x) => x.event === 'config.reload').length > n);
    },
    stop,
  };
}

/** Quiet mode logs to a file: finds a listener's start line there. */
async function listenerFromLogFile(file: string, protocol: string, proc: ChildProcess): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`sluice exited with ${proc.exitCode}`);
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (!line.includes('"listener.start"')) continue;
      const j = JSON.parse(line);
      if (j.protocol === protocol) return j;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sluice did not start its ${protocol} listener`);
}

async function waitForPort(port: number, proc: ChildProcess): Promise<number> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`sluice exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return port;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sluice did not listen on ${port}`);
}

/** libpq connection string for psql/pgbench through the gateway. */
export function connString(gw: Sluice, extra: Record<string, string> = {}): string {
  const p: Record<string, string> = {
    host: gw.host,
    port: String(gw.port),
    dbname: 'orders',
    user: 'ci',
    ...(gw.ca ? { sslmode: 'verify-full', sslrootcert: gw.ca.cert } : { sslmode: 'disable' }),
    ...extra,
  };
  return Object.entries(p)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** Runs psql through the gateway; resolves with stdout/stderr/exit code, never rejects. */
export function psql(
  gw: Sluice,
  token: string,
  args: string[],
  opts: { conn?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', connString(gw, opts.conn), ...args], {
      env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: '10' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(opts.input ?? '');
  });
}
