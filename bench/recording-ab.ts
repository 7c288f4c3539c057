// Recording cost as a paired A/B: the same gateway config with recording off
// (A, `sluice`) and on (B, `sluice+recording`), run back to back, alternating
// which goes first (ABBA…), so a load swing on the shared machine hits both
// halves of a pair alike. Each pair gives one TPS ratio B/A; the report is the
// median ratio with its quartiles, and the median CPU each transaction adds.
// bench/pgbench.ts also shows a recording ratio, but from medians of runs taken
// three paths apart; this one is the figure for issue #5's ≤ 5% target.
//
//   node --import tsx bench/recording-ab.ts      (npm run bench runs it)
//   BENCH_AB_PAIRS=10 BENCH_MODES=simple node --import tsx bench/recording-ab.ts
import { knobs, log, machineLine, median, quantile, writeResult } from './lib/env.js';
import { directPath, runBench, startCluster, startGateway, type Path } from './lib/paths.js';
import { initPgbench, pgbench, selectOnlyArgs } from './lib/pgbench-run.js';
import { cpuSeconds } from './lib/proc.js';

const { seconds: SECONDS, abPairs: PAIRS } = knobs;

async function measure(p: Path, args: string[]): Promise<{ tps: number; cpu: number; failed: number }> {
  const before = cpuSeconds(p.pid!);
  const r = await pgbench(p, args);
  return { tps: r.tps, cpu: ((cpuSeconds(p.pid!) - before) * 1e6) / r.tx, failed: r.failed };
}

await runBench(async (b) => {
  const pg = await startCluster(b);
  log('initialising pgbench data (scale 10)…');
  await initPgbench(directPath(pg));
  const off = await startGateway(b, pg, 'sluice');
  const on = await startGateway(b, pg, 'sluice+recording');

  const rows = ['| workload | pairs | TPS ratio, median | quartiles | loss (median) | CPU µs/tx added, median | failed |', '|---|---:|---:|---:|---:|---:|---:|'];
  const json: Record<string, unknown>[] = [];
  for (const mode of knobs.modes) {
    for (const c of knobs.abClients) {
      const label = `-S -M ${mode} -c ${c}`;
      const args = selectOnlyArgs(mode, c, SECONDS);
      const ratios: number[] = [];
      const added: number[] = [];
      const pairs: { off: number; on: number }[] = [];
      let failed = 0;
      for (let i = 0; i < PAIRS; i++) {
        // ABBA: pairs alternate which path runs first.
        const [first, second] = i % 2 === 0 ? [off, on] : [on, off];
        const r1 = await measure(first, args);
        const r2 = await measure(second, args);
        const [a, r] = i % 2 === 0 ? [r1, r2] : [r2, r1];
        failed += a.failed + r.failed;
        ratios.push(r.tps / a.tps);
        added.push(r.cpu - a.cpu);
        pairs.push({ off: a.tps, on: r.tps });
        log(`pair ${i + 1}/${PAIRS} ${label.padEnd(20)} off ${a.tps.toFixed(0).padStart(6)} tps, on ${r.tps.toFixed(0).padStart(6)} tps: ratio ${(r.tps / a.tps).toFixed(3)}, +${(r.cpu - a.cpu).toFixed(1)} µs CPU/tx`);
      }
      const m = median(ratios);
      const q1 = quantile(ratios, 0.25);
      const q3 = quantile(ratios, 0.75);
      const cpu = median(added);
      rows.push(`| ${label} | ${PAIRS} | ${m.toFixed(3)} | ${q1.toFixed(3)}–${q3.toFixed(3)} | ${((1 - m) * 100).toFixed(1)}% | ${cpu.toFixed(1)} | ${failed} |`);
      json.push({ workload: `select-only ${mode} c${c}`, mode, clients: c, pairs, ratio_median: m, ratio_q1: q1, ratio_q3: q3, loss: 1 - m, cpu_us_per_tx_added: cpu, failed });
    }
  }
  const md = `Recording on against off, the same gateway otherwise (pgbench scale 10), ${PAIRS} back-to-back pairs of ${SECONDS} s runs per workload, alternating which runs first; ${machineLine()}\n\n${rows.join('\n')}\n`;
  writeResult('recording-ab', md, { seconds: SECONDS, pairs: PAIRS, results: json });
});
