// pgbench -S through each path, interleaved in the same run: direct, pgbouncer
// (session mode, when installed) and Sluice. Reports TPS as a share of direct
// and the proxy's CPU per transaction (utime+stime from /proc over the run).
//
//   npm run bench                      # defaults
//   BENCH_SECONDS=15 BENCH_ROUNDS=3 npm run bench
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startPostgres } from '../test/helpers/pg-cluster.js';
import { freePort } from '../test/helpers/ports.js';
import { prepareOrders, startSluice, TARGET_PASSWORD } from '../test/helpers/sluice.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CLIENTS = (process.env.BENCH_CLIENTS ?? '1,8').split(',').map(Number);
const MODES = (process.env.BENCH_MODES ?? 'simple,extended,prepared').split(',');
const CLK_TCK = 100;

interface Path {
  name: string;
  host: string;
  port: number;
  user: string;
  password: string;
  pid?: number;
}

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}

async function pgbench(p: Path, args: string[]): Promise<{ tps: number; tx: number; failed: number }> {
  const { stdout } = await run('pgbench', [...args, 'orders'], {
    env: { ...process.env, PGHOST: p.host, PGPORT: String(p.port), PGUSER: p.user, PGPASSWORD: p.password, PGSSLMODE: 'disable' },
    maxBuffer: 64 << 20,
  });
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const tx = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  return { tps, tx, failed };
}

async function startPgbouncer(target: { host: string; port: number }, dir: string): Promise<{ port: number; pid: number; stop(): void } | null> {
  const bin = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((b) => fs.existsSync(b));
  if (!bin) return null;
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `"app" "${TARGET_PASSWORD}"\n`);
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    `[databases]\norders = host=${target.host} port=${target.port} dbname=orders\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${port}\n` +
      `auth_type = plain\nauth_file = ${dir}/userlist.txt\npool_mode = session\nmax_client_conn = 2000\ndefault_pool_size = 100\n` +
      `unix_socket_dir =\nlogfile = ${dir}/pgbouncer.log\nserver_tls_sslmode = disable\n`,
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) fs.chmodSync(path.join(dir, f), f ? 0o644 : 0o777);
  }
  const [cmd, args] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, path.join(dir, 'pgbouncer.ini')]] : [bin, [path.join(dir, 'pgbouncer.ini')]];
  const proc = spawn(cmd, args, { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      const { stdout } = await run('pgrep', ['-n', '-f', `pgbouncer ${path.join(dir, 'pgbouncer.ini')}`]);
      const pid = Number(stdout.trim());
      if (pid) {
        await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]).catch(() => {});
        return { port, pid, stop: () => (process.kill(pid, 'SIGTERM'), proc.kill()) };
      }
    } catch {
      /* not up yet */
    }
  }
  return null;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const cleanups: (() => unknown)[] = [];
  const t = { teardown: (fn: () => unknown) => cleanups.push(fn) };
  const out = path.resolve(import.meta.dirname, 'results');
  fs.mkdirSync(out, { recursive: true });
  const pg = await startPostgres({ conf: ['max_connections = 300'] });
  cleanups.push(() => pg.stop());
  try {
    await prepareOrders(pg);
    const direct: Path = { name: 'direct', host: pg.host, port: pg.port, user: 'app', password: TARGET_PASSWORD };
    process.stderr.write('initialising pgbench data (scale 10)…\n');
    await run('pgbench', ['-i', '-q', '-s', '10', 'orders'], {
      env: { ...process.env, PGHOST: pg.host, PGPORT: String(pg.port), PGUSER: 'app', PGPASSWORD: TARGET_PASSWORD, PGSSLMODE: 'disable' },
    });
    // Sluice variants: bare, then each feature alone, then all of them.
    const target = { protocol: 'postgres', host: pg.host, port: pg.port, user: 'app', password: { env: 'ORDERS_PG_PASSWORD' }, tls: { mode: 'disable' }, allow: ['group:ci'] };
    const policies = [
      {
        name: 'bench',
        match: { groups: ['ci'] },
        rules: [
          { deny: { kind: ['drop', 'truncate', 'alter_system', 'grant', 'revoke', 'create_role'] } },
          { deny: { kind: ['update', 'delete'], where: 'absent' } },
          { deny: { functions: ['pg_read_file', 'lo_export', 'dblink*'] } },
          { allow: { kind: ['select', 'insert', 'update', 'begin', 'commit', 'set', 'show'] } },
        ],
      },
    ];
    const masking = [{ name: 'pii', match: { groups: ['ci'] }, columns: [{ column: '*.email', strategy: 'partial' }], detectors: ['credit_card', 'email', 'us_ssn'] }];
    const off = { recording: { enabled: false } };
    const variants: Record<string, Record<string, unknown>> = {
      sluice: off,
      'sluice+policy': { ...off, policies },
      'sluice+masking': { ...off, masking },
      'sluice+recording': {},
      'sluice+all': { policies, masking },
    };
    const only = process.env.BENCH_VARIANTS?.split(',');
    const paths: Path[] = [direct];
    const bouncer = await startPgbouncer(pg, fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pgb-')));
    if (bouncer) {
      cleanups.push(() => bouncer.stop());
      paths.push({ name: 'pgbouncer', host: '127.0.0.1', port: bouncer.port, user: 'app', password: TARGET_PASSWORD, pid: bouncer.pid });
    } else process.stderr.write('pgbouncer not installed: skipping it (apt-get install pgbouncer)\n');
    for (const [name, extra] of Object.entries(variants)) {
      if (only && !only.includes(name)) continue;
      const gw = await startSluice(t, { cluster: pg, tls: false, quiet: true, config: { log: { level: 'info' }, targets: { orders: target }, ...extra } });
      const token = await gw.mint('bench', ['ci'], '2h');
      paths.push({ name, host: gw.host, port: gw.port, user: 'ci', password: token, pid: gw.proc.pid });
    }

    const results: Record<string, { tps: number[]; cpu_us_per_tx: number[]; failed: number }> = {};
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of MODES) {
        for (const c of CLIENTS) {
          for (const p of paths) {
            const key = `${mode} -c ${c}|${p.name}`;
            const before = p.pid ? cpuTicks(p.pid) : 0;
            const r = await pgbench(p, ['-S', '-M', mode, '-c', String(c), '-j', String(Math.min(c, 2)), '-T', String(SECONDS)]);
            const cpu = p.pid ? ((cpuTicks(p.pid) - before) / CLK_TCK) * 1e6 / r.tx : NaN;
            const e = (results[key] ??= { tps: [], cpu_us_per_tx: [], failed: 0 });
            e.tps.push(r.tps);
            if (p.pid) e.cpu_us_per_tx.push(cpu);
            e.failed += r.failed;
            process.stderr.write(`round ${round} ${key.padEnd(30)} ${r.tps.toFixed(0).padStart(7)} tps${p.pid ? `  ${cpu.toFixed(1)} µs CPU/tx` : ''}\n`);
          }
        }
      }
    }

    const rows: string[] = [];
    const json: Record<string, unknown>[] = [];
    rows.push('| workload | path | TPS (median) | share of direct | proxy CPU µs/tx | failed |', '|---|---|---:|---:|---:|---:|');
    for (const mode of MODES) {
      for (const c of CLIENTS) {
        const d = median(results[`${mode} -c ${c}|direct`].tps);
        for (const p of paths) {
          const e = results[`${mode} -c ${c}|${p.name}`];
          const tps = median(e.tps);
          const cpu = e.cpu_us_per_tx.length ? median(e.cpu_us_per_tx) : NaN;
          rows.push(`| -S -M ${mode} -c ${c} | ${p.name} | ${tps.toFixed(0)} | ${(tps / d).toFixed(2)} | ${Number.isNaN(cpu) ? '—' : cpu.toFixed(1)} | ${e.failed} |`);
          json.push({ workload: `select-only ${mode} c${c}`, path: p.name, tps, share: tps / d, cpu_us_per_tx: Number.isNaN(cpu) ? null : cpu, failed: e.failed, rounds: e.tps });
        }
      }
    }
    const header = `pgbench -S, ${SECONDS}s per run, median of ${ROUNDS} interleaved rounds; ${new Date().toISOString().slice(0, 10)}; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; Node ${process.version}\n\n`;
    const md = header + rows.join('\n') + '\n';
    fs.writeFileSync(path.join(out, 'pgbench.md'), md);
    fs.writeFileSync(path.join(out, 'pgbench.json'), JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, results: json }, null, 2));
    process.stdout.write('\n' + md);
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

await main();
