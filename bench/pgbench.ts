// pgbench through each path, interleaved in the same run: direct, pgbouncer
// (session mode, when installed) and Sluice bare, with each of policy, masking
// and recording alone, and fully governed. Workloads: -S (select-only) in each
// query mode at each client count, and TPC-B (pgbench's default script).
// Reports TPS as a share of direct and the proxy's CPU per transaction
// (utime+stime from /proc over the run, divided by transactions).
//
//   node --import tsx bench/pgbench.ts           (npm run bench runs it)
//   BENCH_SECONDS=3 BENCH_ROUNDS=1 node --import tsx bench/pgbench.ts
import { knobs, log, machineLine, median, writeResult } from './lib/env.js';
import { directPath, runBench, startCluster, startPaths } from './lib/paths.js';
import { initPgbench, pgbench, pgbenchArgs, selectOnlyArgs } from './lib/pgbench-run.js';
import { cpuSeconds } from './lib/proc.js';

const { seconds: SECONDS, rounds: ROUNDS } = knobs;

interface Workload {
  /** Stable key, e.g. "select-only simple c8", "tpcb simple c8". */
  key: string;
  /** Table label, e.g. "-S -M simple -c 8", "TPC-B -M simple -c 8". */
  label: string;
  script: 'select-only' | 'tpcb';
  mode: string;
  clients: number;
  args: string[];
}

function workloads(): Workload[] {
  const out: Workload[] = [];
  for (const mode of knobs.modes) {
    for (const c of knobs.clients) out.push({ key: `select-only ${mode} c${c}`, label: `-S -M ${mode} -c ${c}`, script: 'select-only', mode, clients: c, args: selectOnlyArgs(mode, c, SECONDS) });
  }
  for (const c of knobs.tpcbClients) out.push({ key: `tpcb simple c${c}`, label: `TPC-B -M simple -c ${c}`, script: 'tpcb', mode: 'simple', clients: c, args: pgbenchArgs('simple', c, SECONDS) });
  return out;
}

await runBench(async (b) => {
  const pg = await startCluster(b);
  log('initialising pgbench data (scale 10)…');
  await initPgbench(directPath(pg));
  const paths = await startPaths(b, pg, { variants: knobs.variants });
  const wl = workloads();

  const results = new Map<string, { tps: number[]; cpu: number[]; failed: number }>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const w of wl) {
      for (const p of paths) {
        const key = `${w.key}|${p.name}`;
        const before = p.pid ? cpuSeconds(p.pid) : 0;
        const r = await pgbench(p, w.args);
        const cpu = p.pid ? ((cpuSeconds(p.pid) - before) * 1e6) / r.tx : NaN;
        const e = results.get(key) ?? { tps: [], cpu: [], failed: 0 };
        results.set(key, e);
        e.tps.push(r.tps);
        if (p.pid) e.cpu.push(cpu);
        e.failed += r.failed;
        log(`round ${round} ${w.label.padEnd(24)} ${p.name.padEnd(17)} ${r.tps.toFixed(0).padStart(7)} tps${p.pid ? `  ${cpu.toFixed(1)} µs CPU/tx` : ''}${r.failed ? `  ${r.failed} failed` : ''}`);
      }
    }
  }

  const rows = ['| workload | path | TPS (median) | share of direct | proxy CPU µs/tx | failed |', '|---|---|---:|---:|---:|---:|'];
  const json: Record<string, unknown>[] = [];
  for (const w of wl) {
    const d = median(results.get(`${w.key}|direct`)!.tps);
    for (const p of paths) {
      const e = results.get(`${w.key}|${p.name}`)!;
      const tps = median(e.tps);
      const cpu = e.cpu.length ? median(e.cpu) : null;
      rows.push(`| ${w.label} | ${p.name} | ${tps.toFixed(0)} | ${(tps / d).toFixed(2)} | ${cpu === null ? '—' : cpu.toFixed(1)} | ${e.failed} |`);
      json.push({ workload: w.key, script: w.script, mode: w.mode, clients: w.clients, path: p.name, tps, share: tps / d, cpu_us_per_tx: cpu, failed: e.failed, rounds: e.tps });
    }
  }
  const md = `pgbench (scale 10), ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds; ${machineLine()}\n\n${rows.join('\n')}\n`;
  writeResult('pgbench', md, { seconds: SECONDS, rounds: ROUNDS, results: json });
});
