// An older build against this one, fully governed (policy, masking and recording:
// variant `sluice+all`), in one run on one throwaway Postgres: two gateways with
// the same config, one started from the old checkout's bin/sluice.js and one from
// this tree's, measured with pgbench -S in back-to-back pairs, alternating which
// goes first (ABBA…). Each pair gives one TPS ratio new/old; the report is the
// median ratio with its 95% confidence interval (bootstrap), quartiles, and each
// build's CPU per transaction.
//
// A control row pairs two more gateways of this build the same way, interleaved
// with the pairs above (pair i of old/new next to pair i of new/new, which goes
// first alternating), so both rows see the same machine: what the control reads
// is the method's own noise, the yardstick for the old/new row.
//
// bench/build-ab.sh makes the old checkout and builds both; run that:
//   npm run bench:build-ab -- 76b2c07
//   npm run bench:build-ab -- 76b2c07 --pairs 8 --seconds 4
// or, with an old checkout already built:
//   node --import tsx bench/build-ab.ts --old /path/to/old/checkout [--old-label 76b2c07]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { newPaired, runPair, summarize, warmUp, type Summary } from './lib/ab.js';
import { log, machineLine, writeResult } from './lib/env.js';
import { directPath, runBench, startCluster, startGateway } from './lib/paths.js';
import { initPgbench, selectOnlyArgs } from './lib/pgbench-run.js';

const { values: opt } = parseArgs({
  options: {
    old: { type: 'string' },
    'old-label': { type: 'string' },
    'new-label': { type: 'string' },
    pairs: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '6' },
    mode: { type: 'string', default: 'simple' },
    clients: { type: 'string', default: '8' },
    variant: { type: 'string', default: 'sluice+all' },
  },
});
const posInt = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} ${v}: expected a positive integer`);
  return n;
};
if (!opt.old) throw new Error('usage: bench/build-ab.ts --old <old checkout, built> [--old-label X] [--pairs N] [--seconds S] [--mode simple] [--clients 8]');
const OLD_BIN = path.resolve(opt.old, 'bin/sluice.js');
if (!fs.existsSync(OLD_BIN)) throw new Error(`${OLD_BIN} does not exist`);
const PAIRS = posInt('pairs', opt.pairs);
const SECONDS = posInt('seconds', opt.seconds);
const CLIENTS = posInt('clients', opt.clients);
const MODE = opt.mode!;
const VARIANT = opt.variant!;
const OLD = opt['old-label'] ?? path.basename(path.resolve(opt.old));
const NEW = opt['new-label'] ?? 'this tree';

const f3 = (x: number): string => x.toFixed(3);
const pct = (x: number): string => `${((x - 1) * 100).toFixed(1)}%`;
/** How far a 95% CI of a ratio reaches from 1.00, either side. */
const reach = (ci: [number, number]): number => Math.max(Math.abs(1 - ci[0]), Math.abs(ci[1] - 1));

await runBench(async (b) => {
  const pg = await startCluster(b);
  log('initialising pgbench data (scale 10)…');
  await initPgbench(directPath(pg));
  const oldGw = { ...(await startGateway(b, pg, VARIANT, {}, OLD_BIN)), name: `old ${OLD}` };
  const newGw = { ...(await startGateway(b, pg, VARIANT)), name: `new ${NEW}` };
  // The control's own two gateways of the new build: every gateway then runs the same number of
  // runs and records as much, so none is warmer or has a larger recording store than its partner.
  const ctlA = { ...(await startGateway(b, pg, VARIANT)), name: 'new (control 1)' };
  const ctlB = { ...(await startGateway(b, pg, VARIANT)), name: 'new (control 2)' };
  log(`gateways: ${[oldGw, newGw, ctlA, ctlB].map((g) => `${g.name} pid ${g.pid}`).join(', ')}; ${PAIRS} pairs of ${SECONDS} s, -S -M ${MODE} -c ${CLIENTS}`);

  const args = selectOnlyArgs(MODE, CLIENTS, SECONDS);
  const main = newPaired();
  const control = newPaired();
  await warmUp([oldGw, newGw, ctlA, ctlB], args);
  for (let i = 0; i < PAIRS; i++) {
    // Pair i of each row, in turn; which row goes first alternates too.
    const mainPair = () => runPair(i, oldGw, newGw, args, main);
    const controlPair = () => runPair(i, ctlA, ctlB, args, control);
    let m, c;
    if (i % 2 === 0) {
      m = await mainPair();
      c = await controlPair();
    } else {
      c = await controlPair();
      m = await mainPair();
    }
    log(
      `pair ${i + 1}/${PAIRS}: old ${m.ra.tps.toFixed(0)} new ${m.rb.tps.toFixed(0)} tps, ratio ${f3(m.rb.tps / m.ra.tps)}, CPU ${m.ra.cpu.toFixed(1)}/${m.rb.cpu.toFixed(1)} µs/tx | ` +
        `control ${c.ra.tps.toFixed(0)} / ${c.rb.tps.toFixed(0)} tps, ratio ${f3(c.rb.tps / c.ra.tps)}, CPU ${c.ra.cpu.toFixed(1)}/${c.rb.cpu.toFixed(1)} µs/tx`,
    );
  }
  const sm = summarize(main);
  const sc = summarize(control);

  const workload = `-S -M ${MODE} -c ${CLIENTS}`;
  const row = (label: string, a: string, bName: string, s: Summary, failed: number): string =>
    `| ${label} | ${a} | ${bName} | ${PAIRS} | ${f3(s.m)} | ${f3(s.ci[0])}–${f3(s.ci[1])} | ${f3(s.q1)}–${f3(s.q3)} | ${pct(s.m)} | ${s.tpsA.toFixed(0)} / ${s.tpsB.toFixed(0)} | ${s.cpuA.toFixed(1)} / ${s.cpuB.toFixed(1)} | ${s.cpuAdded.toFixed(1)} (${s.cpuAddedCi[0].toFixed(1)} to ${s.cpuAddedCi[1].toFixed(1)}) | ${failed} |`;
  const rows = [
    '| comparison | A | B | pairs | TPS ratio B/A, median | 95% CI of the median | quartiles | B against A (median) | TPS A / B, medians | CPU µs/tx A / B, medians | CPU µs/tx B − A, median (95% CI) | failed |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    row(`old against new, fully governed, ${workload}`, `old (${OLD})`, `new (${NEW})`, sm, main.failed),
    row(`control: new against new, ${workload}`, `new (${NEW}), gateway 3`, `new (${NEW}), gateway 4`, sc, control.failed),
  ];

  // The noise: how far the control's 95% CI of the median reaches from 1.00 (and, for CPU, from 0),
  // when nothing differs. A regression beyond it: the new build's median TPS is lower than the old's
  // by more than that, with the old/new interval wholly below 1.00; or its CPU per transaction is
  // higher by more than the control's CPU interval reaches, with the interval wholly above 0.
  const noise = reach(sc.ci);
  const cpuNoise = Math.max(Math.abs(sc.cpuAddedCi[0]), Math.abs(sc.cpuAddedCi[1]));
  const tpsRegressed = 1 - sm.m > noise && sm.ci[1] < 1;
  const cpuRegressed = sm.cpuAdded > cpuNoise && sm.cpuAddedCi[0] > 0;
  const failed = main.failed + control.failed;
  const verdictWord = failed ? 'failed transactions: no verdict' : tpsRegressed || cpuRegressed ? 'regression beyond noise' : 'no regression beyond noise';
  const verdict =
    `Verdict: **${verdictWord}**. New against old (${NEW} against ${OLD}): TPS ratio ${f3(sm.m)} (${pct(sm.m)}; 95% CI ${f3(sm.ci[0])}–${f3(sm.ci[1])}), ` +
    `CPU ${sm.cpuAdded >= 0 ? '+' : ''}${sm.cpuAdded.toFixed(1)} µs/tx (95% CI ${sm.cpuAddedCi[0].toFixed(1)} to ${sm.cpuAddedCi[1].toFixed(1)}; medians old ${sm.cpuA.toFixed(1)}, new ${sm.cpuB.toFixed(1)} µs/tx). ` +
    `The noise, read by the control (two gateways of the same build): TPS ratio ${f3(sc.m)} (95% CI ${f3(sc.ci[0])}–${f3(sc.ci[1])}, quartiles ${f3(sc.q1)}–${f3(sc.q3)}), ` +
    `so ±${(noise * 100).toFixed(1)}% on the median TPS ratio; CPU ${sc.cpuAdded >= 0 ? '+' : ''}${sc.cpuAdded.toFixed(1)} µs/tx (95% CI ${sc.cpuAddedCi[0].toFixed(1)} to ${sc.cpuAddedCi[1].toFixed(1)}), so ±${cpuNoise.toFixed(1)} µs/tx.`;
  const md =
    `Build A/B: the old build (${OLD}) against the new (${NEW}), both fully governed (\`${VARIANT}\`: policy, masking, recording; the same config), ` +
    `in front of one throwaway Postgres (pgbench scale 10); ${PAIRS} back-to-back pairs of ${SECONDS} s pgbench ${workload} runs after one unmeasured warm-up run of each gateway, alternating which runs first; ` +
    `the control pairs two more gateways of the new build the same way, its pair i next to the old/new pair i (which of the two goes first alternates), so every gateway runs as often as the others. ` +
    `Regression beyond noise means: the median TPS ratio is lower than 1 by more than the control's 95% CI reaches from 1, with the old/new CI wholly below 1; or the CPU per transaction added is larger than the control's CPU CI reaches from 0, with its CI wholly above 0. ` +
    `${machineLine()}\n\n${rows.join('\n')}\n\n${verdict}\n`;
  const json = (s: Summary, r: typeof main) => ({
    pairs: r.pairs,
    ratio_median: s.m,
    ratio_ci95: s.ci,
    ratio_q1: s.q1,
    ratio_q3: s.q3,
    tps_a_median: s.tpsA,
    tps_b_median: s.tpsB,
    cpu_us_per_tx_a_median: s.cpuA,
    cpu_us_per_tx_b_median: s.cpuB,
    cpu_us_per_tx_added_median: s.cpuAdded,
    cpu_us_per_tx_added_ci95: s.cpuAddedCi,
    failed: r.failed,
  });
  writeResult('build-ab', md, {
    old: OLD,
    new: NEW,
    variant: VARIANT,
    mode: MODE,
    clients: CLIENTS,
    seconds: SECONDS,
    pairs: PAIRS,
    results: [
      { comparison: 'old against new', a: `old ${OLD}`, b: `new ${NEW}`, ...json(sm, main) },
      { comparison: 'control: new against new', a: `new ${NEW} (gateway 3)`, b: `new ${NEW} (gateway 4)`, control: true, ...json(sc, control) },
    ],
    noise: { tps_ratio: noise, cpu_us_per_tx: cpuNoise },
    regression: { tps: tpsRegressed, cpu: cpuRegressed },
    verdict,
  });
});
