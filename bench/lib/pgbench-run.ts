// Runs pgbench against one path and reads its TPS, transactions and failures.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Path } from './paths.js';

const run = promisify(execFile);

const pgEnv = (p: Path) => ({ ...process.env, PGHOST: p.host, PGPORT: String(p.port), PGUSER: p.user, PGPASSWORD: p.password, PGSSLMODE: 'disable' });

export async function pgbench(p: Path, args: string[]): Promise<{ tps: number; tx: number; failed: number }> {
  const { stdout } = await run('pgbench', [...args, p.database], { env: pgEnv(p), maxBuffer: 64 << 20 });
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const tx = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  return { tps, tx, failed };
}

/** pgbench's data (scale 10) in the cluster's orders database. */
export async function initPgbench(direct: Path): Promise<void> {
  await run('pgbench', ['-i', '-q', '-s', '10', direct.database], { env: pgEnv(direct) });
}

/** pgbench arguments for query mode `mode`, `clients` clients and `seconds` (the default script: TPC-B). */
export const pgbenchArgs = (mode: string, clients: number, seconds: number): string[] => ['-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(seconds)];

/** The same for -S (select-only). */
export const selectOnlyArgs = (mode: string, clients: number, seconds: number): string[] => ['-S', ...pgbenchArgs(mode, clients, seconds)];
