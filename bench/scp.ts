// scp throughput through Sluice's SSH listener against scp straight to the
// same sshd, interleaved in one run: upload and download of one file, direct
// and through Sluice (recording on, the default, and off). Reports MB/s, the
// share of direct, and Sluice's CPU per MB (utime+stime from /proc).
//
//   node --import tsx bench/scp.ts
//   BENCH_SCP_MB=500 BENCH_ROUNDS=5 node --import tsx bench/scp.ts
//   BENCH_THREADS=1 …   also prints the gateway's CPU ms/MB by thread after each transfer
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startSluice, type Sluice } from '../test/helpers/sluice.js';
import { CLIENT_OPTS, sshTarget, startSshd } from '../test/helpers/sshd.js';
import { cpuSeconds, threadCpuDelta, threadCpuSeconds } from './lib/proc.js';

const execFileP = promisify(execFile);
const MB = Number(process.env.BENCH_SCP_MB ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const THREADS = process.env.BENCH_THREADS === '1';

const teardowns: (() => unknown)[] = [];
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };

function scp(args: string[], env: Record<string, string> = {}, viaSshpass = false): Promise<number> {
  const started = process.hrtime.bigint();
  // ssh keeps the first value of an option: the direct path's key login goes before the shared options.
  const [cmd, argv] = viaSshpass ? ['sshpass', ['-e', 'scp', ...CLIENT_OPTS, ...args]] : ['scp', ['-o', 'PubkeyAuthentication=yes', '-o', 'IdentitiesOnly=yes', ...CLIENT_OPTS, ...args]];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - started) / 1e9) : reject(new Error(`scp exited ${code}: ${err}`))));
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const sshd = await startSshd(t);
  const dir = fs.mkdtempSync(path.join(sshd.dir, 'bench-'));
  const src = path.join(dir, 'src.bin');
  await execFileP('sh', ['-c', `head -c ${MB}M /dev/urandom > ${src}`]);
  const gateways: { name: string; gw: Sluice; token: string }[] = [];
  for (const [name, recording] of [
    ['sluice', true],
    ['sluice (no recording)', false],
  ] as const) {
    const gw = await startSluice(t, { ssh: true, tls: false, quiet: true, config: { targets: { web01: sshTarget(sshd) }, recording: { enabled: recording } } });
    gateways.push({ name, gw, token: await gw.mint('bench', ['ci'], '1h') });
  }
  const direct = ['-i', sshd.clientKey, '-P', String(sshd.port)];
  const paths: { name: string; up: () => Promise<number>; down: () => Promise<number>; pid?: number }[] = [
    {
      name: 'direct',
      up: () => scp([...direct, src, `${sshd.user}@127.0.0.1:${dir}/up-direct.bin`]),
      down: () => scp([...direct, `${sshd.user}@127.0.0.1:${src}`, `${dir}/down-direct.bin`]),
    },
    ...gateways.map(({ name, gw, token }) => ({
      name,
      pid: gw.proc.pid,
      up: () => scp(['-P', String(gw.sshPort), src, `web01@127.0.0.1:${dir}/up-gw.bin`], { SSHPASS: token }, true),
      down: () => scp(['-P', String(gw.sshPort), `web01@127.0.0.1:${src}`, `${dir}/down-gw.bin`], { SSHPASS: token }, true),
    })),
  ];
  const results = new Map<string, { up: number[]; down: number[]; cpu: number[] }>();
  for (const p of paths) results.set(p.name, { up: [], down: [], cpu: [] });
  for (let round = 0; round < ROUNDS; round++) {
    for (const dirn of ['up', 'down'] as const) {
      for (const p of paths) {
        const c0 = p.pid ? cpuSeconds(p.pid) : 0;
        const t0 = THREADS && p.pid ? threadCpuSeconds(p.pid) : null;
        const s = await p[dirn]();
        const r = results.get(p.name)!;
        r[dirn].push(MB / s);
        if (p.pid) r.cpu.push(((cpuSeconds(p.pid) - c0) * 1000) / MB);
        process.stderr.write(`round ${round + 1} ${dirn.padEnd(4)} ${p.name.padEnd(22)} ${(MB / s).toFixed(1)} MB/s\n`);
        if (t0) process.stderr.write(`  CPU ms/MB by thread: ${threadCpuDelta(t0, threadCpuSeconds(p.pid!), MB / 1000)}\n`);
      }
    }
  }
  const d = results.get('direct')!;
  const rows = [...results].map(([name, r]) => ({
    path: name,
    up_mb_s: +median(r.up).toFixed(1),
    down_mb_s: +median(r.down).toFixed(1),
    up_share: +(median(r.up) / median(d.up)).toFixed(2),
    down_share: +(median(r.down) / median(d.down)).toFixed(2),
    cpu_ms_per_mb: r.cpu.length ? +median(r.cpu).toFixed(2) : null,
  }));
  const when = new Date().toISOString().slice(0, 10);
  const md = [
    `# scp through Sluice (${MB} MB file, ${ROUNDS} rounds, medians; ${when}, ${os.cpus().length} cores, Node ${process.versions.node})`,
    '',
    '| path | upload MB/s | download MB/s | upload share of direct | download share of direct | Sluice CPU ms/MB |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.path} | ${r.up_mb_s} | ${r.down_mb_s} | ${r.up_share} | ${r.down_share} | ${r.cpu_ms_per_mb ?? '—'} |`),
    '',
    'Direct is OpenSSH scp to sshd (one SSH hop); through Sluice there are two (client → Sluice, Sluice → sshd), each',
    'encrypted, with the sftp stream framed for audit and, by default, recorded. CPU ms/MB counts both directions of',
    'both hops in the gateway process (the recording writer thread included).',
    '',
  ].join('\n');
  process.stdout.write(md);
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync('bench/results/scp.md', md);
  fs.writeFileSync('bench/results/scp.json', JSON.stringify({ date: when, mb: MB, rounds: ROUNDS, results: rows, raw: Object.fromEntries(results) }, null, 2) + '\n');
}

try {
  await main();
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
