// Benchmark knobs (environment variables, documented in bench/README.md), the
// results directory, and the line that says when and where figures were taken.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const num = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: expected a non-negative number`);
  return n;
};
const list = (name: string, dflt: string): string[] =>
  (process.env[name] ?? dflt)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export const knobs = {
  /** Seconds per pgbench run. */
  seconds: num('BENCH_SECONDS', 5),
  /** Interleaved rounds; medians are reported. */
  rounds: Math.max(1, num('BENCH_ROUNDS', 3)),
  /** pgbench -S client counts. */
  clients: list('BENCH_CLIENTS', '1,8').map(Number),
  /** pgbench -S query modes. */
  modes: list('BENCH_MODES', 'simple,extended,prepared'),
  /** pgbench TPC-B (the default script) client counts; empty skips TPC-B. */
  tpcbClients: list('BENCH_TPCB_CLIENTS', '8').map(Number),
  /** Sluice variants to run (default: all of them). */
  variants: process.env.BENCH_VARIANTS ? list('BENCH_VARIANTS', '') : undefined,
  /** Recording A/B (bench/recording-ab.ts): pairs of runs, bare then recording or the other way round. */
  abPairs: Math.max(1, num('BENCH_AB_PAIRS', 16)),
  /** Recording A/B client counts. */
  abClients: list('BENCH_AB_CLIENTS', '8').map(Number),
  /** Rows of the PII table fetched whole through each path. */
  largeRows: num('BENCH_LARGE_ROWS', 2_000_000),
  /** Idle authenticated sessions held open through the gateway. */
  idleSessions: num('BENCH_IDLE_SESSIONS', 1000),
  /** Variants the idle-session RSS is measured on. */
  idleVariants: list('BENCH_IDLE_VARIANTS', 'sluice,sluice+all'),
  /** GB streamed to the slow reader (1 GB = 1e9 bytes of row data). */
  bigGb: num('BENCH_BIG_GB', 5),
  /** The slow reader's pace, MB/s. */
  slowMBps: num('BENCH_SLOW_MBPS', 64),
  /** Variants the slow-reader RSS is measured on. */
  bigVariants: list('BENCH_BIG_VARIANTS', 'sluice,sluice+all'),
  /** Soak (bench/soak.ts): concurrent sessions through one fully governed gateway. */
  soakSessions: Math.max(1, num('BENCH_SOAK_SESSIONS', 1000)),
  /** Soak: seconds of load through the gateway. */
  soakSeconds: num('BENCH_SOAK_SECONDS', 60),
  /** Soak: seconds of the same load straight to Postgres (the ratio); 0 skips it. */
  soakDirectSeconds: num('BENCH_SOAK_DIRECT_SECONDS', 15),
  /** Soak: the gateway variant (a variant without a policy runs the denied statement, a no-op). */
  soakVariant: process.env.BENCH_SOAK_VARIANT || 'sluice+all',
};

export const median = (xs: number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The q-quantile of xs (linear between the closest ranks). */
export const quantile = (xs: number[], q: number): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (i - lo);
};

/**
 * A 95% confidence interval for the median of xs: the 2.5th and 97.5th percentiles of the medians
 * of `rounds` resamples (with replacement) of xs. The generator is seeded, so the same data always
 * gives the same interval.
 */
export function medianCI(xs: number[], rounds = 10_000): [number, number] {
  if (xs.length < 2) return [NaN, NaN];
  let seed = 0x5eed;
  const rand = (): number => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const medians = new Array<number>(rounds);
  const sample = new Array<number>(xs.length);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < xs.length; i++) sample[i] = xs[Math.floor(rand() * xs.length)]!;
    medians[r] = median(sample);
  }
  return [quantile(medians, 0.025), quantile(medians, 0.975)];
}

/** Where results go: BENCH_OUT, or bench/results. */
export function outDir(): string {
  const dir = path.resolve(process.env.BENCH_OUT ?? path.join(import.meta.dirname, '..', 'results'));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Writes `<name>.md` and `<name>.json` into the results directory and prints the markdown. */
export function writeResult(name: string, md: string, json: Record<string, unknown>): void {
  const dir = outDir();
  fs.writeFileSync(path.join(dir, `${name}.md`), md);
  fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ date: new Date().toISOString(), machine: machine(), ...json }, null, 2) + '\n');
  process.stdout.write('\n' + md);
}

export interface Machine {
  cpus: number;
  cpu_model: string;
  node: string;
  load_avg_1m: number;
  mem_gb: number;
}

const loadAtStart = os.loadavg()[0]!;

export function machine(): Machine {
  return {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    load_avg_1m: Math.round(loadAtStart * 10) / 10,
    mem_gb: Math.round(os.totalmem() / 2 ** 30),
  };
}

/** "2026-11-22; 2 × AMD EPYC …; Node v20.20.2; load 2.0 at start" */
export function machineLine(m: Machine = machine(), date = new Date().toISOString()): string {
  return `${date.slice(0, 10)}; ${m.cpus} × ${m.cpu_model}; Node ${m.node}; load average ${m.load_avg_1m.toFixed(1)} at start`;
}

export const log = (s: string): void => void process.stderr.write(s + '\n');
