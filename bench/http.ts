// wrk against nginx serving JSON of fake customers (~1 KiB and ~100 KiB), through
// each path, interleaved in rounds with the order rotated each round:
//   direct      wrk straight to the upstream nginx
//   nginx       nginx as a keep-alive reverse proxy (the peer: upstream keepalive 64, HTTP/1.1,
//               proxy_buffers 16 16k so a 100 KiB response fits)
//   sluice      Sluice bare (no policy, no masking, recording off)
//   sluice+all  Sluice fully governed (HTTP policy, masking with detectors and a field rule, recording on)
// Reports req/s (median), share of direct, the proxy's CPU µs per request (utime+stime of
// the process tree from /proc over the run, divided by requests: nginx master and workers
// summed) and the upstream's, and wrk's latency p50/p99. Sluice paths are skipped with the
// config loader's words when this build does not accept `listeners.http`.
//
//   node --import tsx bench/http.ts                        (npm run bench runs it)
//   node --import tsx bench/http.ts --seconds 5 --connections 50 --rounds 1 --paths direct,nginx
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startNginx } from '../test/helpers/nginx.js';
import { curl } from '../test/helpers/http-clients.js';
import { log, machineLine, median, writeResult } from './lib/env.js';
import { startHttpGateway } from './lib/http-gateway.js';
import { runBench } from './lib/paths.js';
import { cpuSeconds } from './lib/proc.js';

const env = (k: string, d: string) => process.env[k] || d;
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: env('BENCH_HTTP_SECONDS', '10') },
    connections: { type: 'string', default: env('BENCH_HTTP_CONNECTIONS', '50') },
    threads: { type: 'string', default: env('BENCH_HTTP_THREADS', '1') },
    rounds: { type: 'string', default: env('BENCH_ROUNDS', '3') },
    warmup: { type: 'string', default: env('BENCH_HTTP_WARMUP', '2') },
    files: { type: 'string', default: env('BENCH_HTTP_FILES', 'small,large') },
    paths: { type: 'string', default: env('BENCH_HTTP_PATHS', 'direct,nginx,sluice,sluice+all') },
    workers: { type: 'string', default: env('BENCH_HTTP_NGINX_WORKERS', '1') },
    'peer-buffers': { type: 'string', default: env('BENCH_HTTP_PEER_BUFFERS', '16 16k') },
  },
});
const SECONDS = Number(args.seconds);
const CONNS = Number(args.connections);
const THREADS = Number(args.threads);
const ROUNDS = Math.max(1, Number(args.rounds));
const WARMUP = Number(args.warmup);
const FILES = args.files!.split(',').filter(Boolean);
const WANT = args.paths!.split(',').filter(Boolean);
const WORKERS = Number(args.workers);
// The peer's proxy_buffers: 'default' keeps nginx's (8 × 4k), which reads a 100 KiB response in many small pieces.
const PEER_BUFFERS = args['peer-buffers'] === 'default' ? undefined : args['peer-buffers'];

interface HttpPath {
  name: string;
  /** Base URL; the file path is appended (`/small.json` or `/web/small.json`). */
  base: string;
  headers: string[];
  /** The proxy process (absent for direct). */
  pid?: number;
}

interface WrkResult {
  requests: number;
  rps: number;
  non2xx: number;
  errors: number;
  p50ms: number;
  p99ms: number;
  raw: string;
}

const ms = (v: string, unit: string) => Number(v) * ({ us: 1e-3, ms: 1, s: 1e3, m: 6e4 } as Record<string, number>)[unit]!;

/** Runs wrk and reads its summary. */
function wrk(url: string, headers: string[], seconds: number): Promise<WrkResult> {
  const argv = [`-t${THREADS}`, `-c${CONNS}`, `-d${seconds}s`, '--latency', ...headers.flatMap((h) => ['-H', h]), url];
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (out += c));
    p.on('error', reject);
    p.on('close', (code) => {
      const req = /(\d+) requests in ([\d.]+)(\w+)/.exec(out);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      if (code !== 0 || !req || !rps) return reject(new Error(`wrk ${argv.join(' ')} exited ${code}:\n${out}`));
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const pct = (p: string) => {
        const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
        return m ? ms(m[1]!, m[2]!) : NaN;
      };
      resolve({
        requests: Number(req[1]),
        rps: Number(rps[1]),
        non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
        errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
        p50ms: pct('50'),
        p99ms: pct('99'),
        raw: out,
      });
    });
  });
}

await runBench(async (b) => {
  const upstream = await startNginx(b, { workers: WORKERS });
  log(`upstream nginx on ${upstream.port} (${WORKERS} worker${WORKERS > 1 ? 's' : ''}); small.json ${upstream.files['small.json']!.length} B, large.json ${upstream.files['large.json']!.length} B`);
  const paths: HttpPath[] = [];
  const notes: string[] = [];
  for (const name of WANT) {
    if (name === 'direct') paths.push({ name, base: `http://127.0.0.1:${upstream.port}`, headers: [] });
    else if (name === 'nginx') {
      const peer = await startNginx(b, { proxyTo: upstream.port, workers: WORKERS, proxyBuffers: PEER_BUFFERS });
      paths.push({ name, base: `http://127.0.0.1:${peer.port}`, headers: [], pid: peer.pid });
    } else {
      const gw = await startHttpGateway(b, upstream.port, name);
      if ('skip' in gw) {
        log(gw.skip);
        notes.push(gw.skip);
        continue;
      }
      paths.push({ name, base: `http://127.0.0.1:${gw.port}/web`, headers: [`Authorization: Bearer ${gw.token}`], pid: gw.pid });
    }
  }
  if (!paths.some((p) => p.name === 'direct')) throw new Error('the direct path is needed for the shares');

  // Each path must answer 200 before it is measured (a 401 or 403 at 50k req/s measures nothing);
  // the body shows whether masking ran (bare paths give the file byte for byte).
  // A path that fails this is dropped with a note (the others are still measured); direct must pass.
  for (const p of [...paths]) {
    let bad = '';
    for (const f of FILES) {
      const r = await curl([...p.headers.flatMap((h) => ['-H', h]), `${p.base}/${f}.json`]);
      const same = r.body.equals(upstream.files[`${f}.json`]!);
      log(`check ${p.name.padEnd(11)} ${f}.json: HTTP ${r.status}, ${r.body.length} B, ${same ? 'identical to the file' : 'differs from the file (masked?)'}`);
      if (r.status !== 200) bad ||= `${p.name}: dropped: answered ${r.status || `nothing (curl exit ${r.code})`} for ${f}.json: ${(r.text().slice(0, 200) + ' ' + r.stderr).trim()}`;
    }
    if (bad) {
      if (p.name === 'direct') throw new Error(bad);
      log(bad);
      notes.push(bad);
      paths.splice(paths.indexOf(p), 1);
      continue;
    }
    if (WARMUP > 0) await wrk(`${p.base}/${FILES[0]}.json`, p.headers, WARMUP);
  }

  const results = new Map<string, { rps: number[]; cpu: number[]; up: number[]; p50: number[]; p99: number[]; non2xx: number; errors: number }>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = [...paths.slice(round % paths.length), ...paths.slice(0, round % paths.length)];
    for (const f of FILES) {
      for (const p of order) {
        const before = p.pid ? cpuSeconds(p.pid) : 0;
        const upBefore = cpuSeconds(upstream.pid);
        const r = await wrk(`${p.base}/${f}.json`, p.headers, SECONDS);
        const cpu = p.pid ? ((cpuSeconds(p.pid) - before) * 1e6) / r.requests : NaN;
        const up = ((cpuSeconds(upstream.pid) - upBefore) * 1e6) / r.requests;
        const key = `${f}|${p.name}`;
        const e = results.get(key) ?? { rps: [], cpu: [], up: [], p50: [], p99: [], non2xx: 0, errors: 0 };
        results.set(key, e);
        e.rps.push(r.rps);
        if (p.pid) e.cpu.push(cpu);
        e.up.push(up);
        e.p50.push(r.p50ms);
        e.p99.push(r.p99ms);
        e.non2xx += r.non2xx;
        e.errors += r.errors;
        log(
          `round ${round + 1} ${`${f}.json`.padEnd(11)} ${p.name.padEnd(11)} ${r.rps.toFixed(0).padStart(7)} req/s` +
            `${p.pid ? `  ${cpu.toFixed(1)} µs CPU/req` : ''}  upstream ${up.toFixed(1)} µs/req  p50 ${r.p50ms.toFixed(2)} ms` +
            `${r.non2xx ? `  ${r.non2xx} non-2xx` : ''}${r.errors ? `  ${r.errors} socket errors` : ''}`,
        );
      }
    }
  }

  const rows = ['| file | path | req/s (median) | share of direct | proxy CPU µs/req | upstream CPU µs/req | p50 ms | p99 ms | non-2xx | socket errors |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|'];
  const json: Record<string, unknown>[] = [];
  for (const f of FILES) {
    const d = median(results.get(`${f}|direct`)!.rps);
    for (const p of paths) {
      const e = results.get(`${f}|${p.name}`)!;
      const rps = median(e.rps);
      const cpu = e.cpu.length ? median(e.cpu) : null;
      const bytes = upstream.files[`${f}.json`]!.length;
      rows.push(
        `| ${f}.json (${(bytes / 1024).toFixed(1)} KiB) | ${p.name} | ${rps.toFixed(0)} | ${(rps / d).toFixed(2)} | ${cpu === null ? '—' : cpu.toFixed(1)} | ${median(e.up).toFixed(1)} | ${median(e.p50).toFixed(2)} | ${median(e.p99).toFixed(2)} | ${e.non2xx} | ${e.errors} |`,
      );
      json.push({ file: f, bytes, path: p.name, rps, share: rps / d, cpu_us_per_req: cpu, upstream_cpu_us_per_req: median(e.up), p50_ms: median(e.p50), p99_ms: median(e.p99), non2xx: e.non2xx, socket_errors: e.errors, rounds: e.rps, cpu_rounds: e.cpu });
    }
  }
  const head = `wrk -t${THREADS} -c${CONNS}, ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds (order rotated), nginx ${WORKERS} worker${WORKERS > 1 ? 's' : ''}, peer proxy_buffers ${PEER_BUFFERS ?? 'default (8 × 4k)'}; ${machineLine()}`;
  const md = `${head}\n\n${rows.join('\n')}\n${notes.length ? `\n${notes.map((n) => `- ${n}`).join('\n')}\n` : ''}`;
  writeResult('http', md, { seconds: SECONDS, connections: CONNS, threads: THREADS, rounds: ROUNDS, nginx_workers: WORKERS, peer_proxy_buffers: PEER_BUFFERS ?? 'default', skipped: notes, results: json });
});
