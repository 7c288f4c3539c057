// The paths a client can take to the same Postgres: direct, pgbouncer (session
// mode), and Sluice in each configuration: bare, with each of policy, masking
// and recording alone, and fully governed. Each benchmark starts the ones it needs
// on a throwaway cluster and measures them interleaved.
import { startPostgres, type PgCluster } from '../../test/helpers/pg-cluster.js';
import { prepareOrders, startSluice, TARGET_PASSWORD } from '../../test/helpers/sluice.js';
import { log } from './env.js';
import { startPgbouncer } from './pgbouncer.js';
import { PII_MASKING } from './pii.js';

export interface Path {
  name: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The proxy process (CPU and memory are read from /proc); absent for direct. */
  pid?: number;
  /** Stops a gateway early (otherwise the Bench stops it at the end). */
  stop?: () => Promise<void>;
  /** The gateway's generated config (for the CLI or the recording store); gone once it stops. */
  configPath?: string;
}

/** The statement policy of the governed variants: what a CI identity may run. */
export const POLICIES = [
  {
    name: 'bench',
    match: { groups: ['ci'] },
    rules: [
      { deny: { kind: ['drop', 'truncate', 'alter_system', 'grant', 'revoke', 'create_role'] } },
      { deny: { kind: ['update', 'delete'], where: 'absent' } },
      { deny: { functions: ['pg_read_file', 'lo_export', 'dblink*'] } },
      { allow: { kind: ['select', 'insert', 'update', 'begin', 'commit', 'rollback', 'set', 'show'] } },
    ],
  },
];

export const MASKING = [{ ...PII_MASKING, match: { groups: ['ci'] } }];

const off = { recording: { enabled: false } };
/** Sluice variants, in report order: config keys merged over the generated config. */
export const VARIANTS: Record<string, Record<string, unknown>> = {
  sluice: off,
  'sluice+policy': { ...off, policies: POLICIES },
  'sluice+masking': { ...off, masking: MASKING },
  'sluice+recording': {},
  'sluice+all': { policies: POLICIES, masking: MASKING },
};

export const VARIANT_LABELS: Record<string, string> = {
  direct: 'direct',
  pgbouncer: 'pgbouncer (session mode)',
  sluice: 'Sluice, bare',
  'sluice+policy': 'Sluice + policy',
  'sluice+masking': 'Sluice + masking',
  'sluice+recording': 'Sluice + recording',
  'sluice+all': 'Sluice, fully governed',
};

/** Owns what a benchmark started; close() stops it all, also on SIGINT/SIGTERM. */
export class Bench {
  private readonly cleanups: (() => unknown)[] = [];
  teardown(fn: () => unknown): void {
    this.cleanups.push(fn);
  }
  async close(): Promise<void> {
    for (const c of this.cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

export async function runBench(main: (b: Bench) => Promise<void>): Promise<void> {
  const b = new Bench();
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping what the benchmark started`);
    void b.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await main(b);
  } finally {
    await b.close();
  }
}

/** A throwaway cluster with user `app` and database `orders`. */
export async function startCluster(b: Bench, conf: string[] = []): Promise<PgCluster> {
  const pg = await startPostgres({ conf: ['max_connections = 300', ...conf] });
  b.teardown(() => pg.stop());
  await prepareOrders(pg);
  return pg;
}

export const directPath = (pg: PgCluster): Path => ({ name: 'direct', host: pg.host, port: pg.port, user: 'app', password: TARGET_PASSWORD, database: 'orders' });

/**
 * Sluice with `variant`'s config (plus `extra`, merged at top level and into recording), and a token for group ci.
 * `bin`: another build's bin/sluice.js (bench/build-ab.ts); default this tree's.
 */
export async function startGateway(b: Bench, pg: PgCluster, variant: string, extra: Record<string, unknown> = {}, bin?: string): Promise<Path> {
  const cfg = VARIANTS[variant];
  if (!cfg) throw new Error(`unknown variant ${variant}; known: ${Object.keys(VARIANTS).join(', ')}`);
  const target = { protocol: 'postgres', host: pg.host, port: pg.port, user: 'app', password: { env: 'ORDERS_PG_PASSWORD' }, tls: { mode: 'disable' }, allow: ['group:ci'] };
  const config: Record<string, unknown> = { log: { level: 'info' }, targets: { orders: target }, ...cfg, ...extra };
  if (extra.recording && cfg.recording) config.recording = { ...(cfg.recording as object), ...(extra.recording as object) };
  const gw = await startSluice(b, { cluster: pg, tls: false, quiet: true, config, bin });
  const token = await gw.mint('bench', ['ci'], '2h');
  return { name: variant, host: gw.host, port: gw.port, user: 'ci', password: token, database: 'orders', pid: gw.proc.pid, stop: () => gw.stop(), configPath: gw.configPath };
}

/** direct, pgbouncer (when installed and wanted) and the Sluice variants (BENCH_VARIANTS or all). */
export async function startPaths(b: Bench, pg: PgCluster, opts: { pgbouncer?: boolean; variants?: string[] } = {}): Promise<Path[]> {
  const paths: Path[] = [directPath(pg)];
  if (opts.pgbouncer !== false) {
    const bouncer = await startPgbouncer(pg);
    if (bouncer) {
      b.teardown(() => bouncer.stop());
      paths.push({ name: 'pgbouncer', host: '127.0.0.1', port: bouncer.port, user: 'app', password: TARGET_PASSWORD, database: 'orders', pid: bouncer.pid });
    } else log('pgbouncer not installed: skipping it (apt-get install pgbouncer)');
  }
  for (const v of opts.variants ?? Object.keys(VARIANTS)) paths.push(await startGateway(b, pg, v));
  return paths;
}
