// Paired A/B runs of pgbench through two paths, back to back, alternating which
// goes first (ABBA…), so a load swing on the shared machine hits both halves of a
// pair alike. Used by bench/recording-ab.ts (recording off against on) and
// bench/build-ab.ts (an older build against this one).
import { median, medianCI, quantile } from './env.js';
import type { Path } from './paths.js';
import { pgbench } from './pgbench-run.js';
import { cpuSeconds } from './proc.js';

export interface Run {
  tps: number;
  /** The path's process CPU (all threads and children) per transaction, µs. */
  cpu: number;
  failed: number;
}

export async function measure(p: Path, args: string[]): Promise<Run> {
  const before = cpuSeconds(p.pid!);
  const r = await pgbench(p, args);
  return { tps: r.tps, cpu: ((cpuSeconds(p.pid!) - before) * 1e6) / r.tx, failed: r.failed };
}

export interface Paired {
  /** TPS of b / TPS of a, one per pair. */
  ratios: number[];
  /** CPU µs per transaction b adds over a, one per pair. */
  added: number[];
  pairs: { a: number; b: number; cpuA: number; cpuB: number }[];
  failed: number;
}

export const newPaired = (): Paired => ({ ratios: [], added: [], pairs: [], failed: 0 });

/** One unmeasured run of each: a gateway's first seconds in a query mode cost more than its steady state. */
export async function warmUp(paths: Path[], args: string[]): Promise<void> {
  for (const p of paths) await pgbench(p, args);
}

/** Pair number i of a and b (a first when i is even, b first when odd), added to `into`. */
export async function runPair(i: number, a: Path, b: Path, args: string[], into: Paired): Promise<{ ra: Run; rb: Run }> {
  const [first, second] = i % 2 === 0 ? [a, b] : [b, a];
  const r1 = await measure(first, args);
  const r2 = await measure(second, args);
  const [ra, rb] = i % 2 === 0 ? [r1, r2] : [r2, r1];
  into.failed += ra.failed + rb.failed;
  into.ratios.push(rb.tps / ra.tps);
  into.added.push(rb.cpu - ra.cpu);
  into.pairs.push({ a: ra.tps, b: rb.tps, cpuA: ra.cpu, cpuB: rb.cpu });
  return { ra, rb };
}

export interface Summary {
  /** Median TPS ratio b/a, its 95% bootstrap CI and quartiles. */
  m: number;
  ci: [number, number];
  q1: number;
  q3: number;
  /** Median CPU µs/tx b adds, and its 95% CI. */
  cpuAdded: number;
  cpuAddedCi: [number, number];
  /** Median TPS and CPU µs/tx of each side. */
  tpsA: number;
  tpsB: number;
  cpuA: number;
  cpuB: number;
}

export function summarize(r: Paired): Summary {
  return {
    m: median(r.ratios),
    ci: medianCI(r.ratios),
    q1: quantile(r.ratios, 0.25),
    q3: quantile(r.ratios, 0.75),
    cpuAdded: median(r.added),
    cpuAddedCi: medianCI(r.added),
    tpsA: median(r.pairs.map((p) => p.a)),
    tpsB: median(r.pairs.map((p) => p.b)),
    cpuA: median(r.pairs.map((p) => p.cpuA)),
    cpuB: median(r.pairs.map((p) => p.cpuB)),
  };
}
