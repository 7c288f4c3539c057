// Shared by the differential harness's steps (see run.sh).
import fs from 'node:fs';
import path from 'node:path';

/** Password of the clusters' superuser (throwaway clusters on loopback only). */
export const PG_PASSWORD = 'Regress-Pa55word-never-shown';

/** Where sources, builds and each run's outputs live: outside the repository. */
export function cacheDir(): string {
  const dir = process.env.DIFF_CACHE ?? '/var/tmp/sluice-differential';
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function must(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run bench/differential/run.sh`);
  return v;
}

/** One pg_regress run. */
export interface RegressRun {
  name: string;
  via_sluice: boolean;
  pg_regress_exit: number;
  seconds: number;
  /** Where its results/ and regression.{out,diffs} were kept. */
  dir: string;
  /** results/*.out files written. */
  files: number;
  /** Tests pg_regress itself reported as differing from expected/ (informational). */
  failed_vs_expected: string[];
}

/** One driver check, as the check programs print it (one JSON object per line). */
export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
  ms?: number;
}

export interface DriverRun {
  driver: string;
  version: string;
  path: 'direct' | 'sluice';
  checks: Check[];
  /** Set when the program itself failed (did not compile, crashed, timed out). */
  error?: string;
}

/** Intermediate results, so report.ts can combine steps run separately. */
export const stepFile = (step: string): string => path.join(cacheDir(), 'out', `${step}.json`);

export function saveStep(step: string, data: unknown): void {
  fs.mkdirSync(path.dirname(stepFile(step)), { recursive: true });
  fs.writeFileSync(stepFile(step), JSON.stringify(data, null, 2) + '\n');
}

export function loadStep<T>(step: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(stepFile(step), 'utf8')) as T;
  } catch {
    return undefined;
  }
}
