// Recording cost as a paired A/B: the same gateway config with recording off
// (A, `sluice`) and on (B, `sluice+recording`), run back to back, alternating
// which goes first (ABBA…), so a load swing on the shared machine hits both
// halves of a pair alike. Each pair gives one TPS ratio B/A; the report is the
// median ratio with a 95% confidence interval (bootstrap) and quartiles, and the
// median CPU each transaction adds. With more than one query mode, a pooled row
// takes every on/off pair together: recording writes the same two frames per
// transaction in each mode, and pooling is what narrows the interval on a noisy
// machine (on a 2-core VM a spinning loop alone swings by 10–25% from second to
// second, so single pairs do too).
// bench/pgbench.ts also shows a recording ratio, but from medians of runs taken
// three paths apart; this one is the figure for issue #5's ≤ 5% target.
//
// A control row runs the same pairs with two recording-off gateways (A against
// A) for the first query mode: its median and quartiles show how far the method
// itself strays from 1.00 on this machine, the yardstick for the rows above it.
//
//   node --import tsx bench/recording-ab.ts      (npm run bench runs it)
//   BENCH_AB_PAIRS=16 BENCH_MODES=simple node --import tsx bench/recording-ab.ts
import { knobs, log, machineLine, median, medianCI, quantile, writeResult } from './lib/env.js';
import { newPaired, runPair, warmUp, type Paired } from './lib/ab.js';
import { directPath, runBench, startCluster, startGateway, type Path } from './lib/paths.js';
import { initPgbench, selectOnlyArgs } from './lib/pgbench-run.js';

const { seconds: SECONDS, abPairs: PAIRS } = knobs;

/** PAIRS back-to-back runs of a and b (ABBA order): TPS ratios b/a and the CPU per transaction b adds. */
async function paired(label: string, a: Path, b: Path, args: string[]): Promise<Paired> {
  const out = newPaired();
  // One unmeasured run of each first: a gateway's first seconds in a query mode (JIT, the recording
  // writer's first batches, the store's first pages) cost more than its steady state, and the
  // first pairs read 0.84–0.89 with 4–6 µs/tx added before this warm-up was there.
  await warmUp([a, b], args);
  for (let i = 0; i < PAIRS; i++) {
    const { ra, rb } = await runPair(i, a, b, args, out);
    log(`pair ${i + 1}/${PAIRS} ${label.padEnd(28)} ${a.name} ${ra.tps.toFixed(0).padStart(6)} tps, ${b.name} ${rb.tps.toFixed(0).padStart(6)} tps: ratio ${(rb.tps / ra.tps).toFixed(3)}, ${(rb.cpu - ra.cpu).toFixed(1)} µs CPU/tx added`);
  }
  return out;
}

await runBench(async (b) => {
  const pg = await startCluster(b);
  log('initialising pgbench data (scale 10)…');
  await initPgbench(directPath(pg));
  const off = await startGateway(b, pg, 'sluice');
  const on = await startGateway(b, pg, 'sluice+recording');
  // The control: a second recording-off gateway, named apart in the log.
  const off2 = { ...(await startGateway(b, pg, 'sluice')), name: 'sluice (2nd)' };

  const rows = ['| workload | pairs | TPS ratio, median | 95% CI of the median | quartiles | loss (median) | CPU µs/tx added, median | failed |', '|---|---:|---:|---:|---:|---:|---:|---:|'];
  const json: Record<string, unknown>[] = [];
  const pct = (x: number): string => `${((1 - x) * 100).toFixed(1)}%`;
  const report = (label: string, workload: string, extra: Record<string, unknown>, r: Paired): { m: number; ci: [number, number] } => {
    const m = median(r.ratios);
    const ci = medianCI(r.ratios);
    const q1 = quantile(r.ratios, 0.25);
    const q3 = quantile(r.ratios, 0.75);
    const cpu = median(r.added);
    rows.push(`| ${label} | ${r.ratios.length} | ${m.toFixed(3)} | ${ci[0].toFixed(3)}–${ci[1].toFixed(3)} | ${q1.toFixed(3)}–${q3.toFixed(3)} | ${pct(m)} | ${cpu.toFixed(1)} | ${r.failed} |`);
    json.push({ workload, ...extra, pairs: r.pairs.map((p) => ({ off: p.a, on: p.b })), ratio_median: m, ratio_ci95: ci, ratio_q1: q1, ratio_q3: q3, loss: 1 - m, cpu_us_per_tx_added: cpu, failed: r.failed });
    return { m, ci };
  };
  const all = newPaired();
  const onRows: { m: number; ci: [number, number] }[] = [];
  for (const mode of knobs.modes) {
    for (const c of knobs.abClients) {
      const label = `-S -M ${mode} -c ${c}`;
      const r = await paired(label, off, on, selectOnlyArgs(mode, c, SECONDS));
      onRows.push(report(label, `select-only ${mode} c${c}`, { mode, clients: c }, r));
      all.ratios.push(...r.ratios);
      all.added.push(...r.added);
      all.pairs.push(...r.pairs);
      all.failed += r.failed;
    }
  }
  const pooled = onRows.length > 1 ? report('**all of the above, pooled**', 'pooled', { pooled: true }, all) : null;
  const mode = knobs.modes[0]!;
  const c = knobs.abClients[knobs.abClients.length - 1]!;
  const label = `control: off against off, -S -M ${mode} -c ${c}`;
  const control = report(label, `control select-only ${mode} c${c}`, { mode, clients: c, control: true }, await paired(label, off, off2, selectOnlyArgs(mode, c, SECONDS)));
  const main = pooled ?? onRows[0]!;
  const verdict =
    `Issue #5's target is a loss of at most 5%. ${pooled ? 'Pooled' : 'Here'}, recording's loss reads ${pct(main.m)} (95% CI ${pct(main.ci[1])} to ${pct(main.ci[0])}); ` +
    `the control, where nothing differs, reads ${pct(control.m)} (95% CI ${pct(control.ci[1])} to ${pct(control.ci[0])}).`;
  const md = `Recording on against off, the same gateway otherwise (pgbench scale 10), ${PAIRS} back-to-back pairs of ${SECONDS} s runs per workload after one unmeasured warm-up run of each, alternating which runs first; the control row pairs two recording-off gateways the same way (what the method reads when nothing differs); ${machineLine()}\n\n${rows.join('\n')}\n\n${verdict}\n`;
  writeResult('recording-ab', md, { seconds: SECONDS, pairs: PAIRS, results: json, verdict });
});
