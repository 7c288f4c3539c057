// Postgres's own regression suite (pg_regress, parallel_schedule) run three times against
// fresh throwaway clusters: direct, through Sluice, and direct again (the noise baseline),
// each run's results/*.out kept for the file-by-file comparison in report.ts.
// Inputs come from run.sh: DIFF_REGRESS_DIR (src/test/regress of Debian's source package),
// DIFF_LIB_DIR (regress.so plus links to autoinc.so and refint.so), DIFF_CACHE.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startPostgres, pgBinDir, quoteLiteral, type PgCluster } from '../../test/helpers/pg-cluster.js';
import { startSluice } from '../../test/helpers/sluice.js';
import { log } from '../lib/env.js';
import { Bench } from '../lib/paths.js';
import { cacheDir, must, PG_PASSWORD, type RegressRun } from './common.js';

const run = promisify(execFile);

/** What pg_regress's create_database() does, plus the intervalstyle it would pass in PGOPTIONS. */
const DB_SETUP = [
  'CREATE DATABASE "regression" TEMPLATE=template0',
  `ALTER DATABASE "regression" SET lc_messages TO 'C'`,
  `ALTER DATABASE "regression" SET lc_monetary TO 'C'`,
  `ALTER DATABASE "regression" SET lc_numeric TO 'C'`,
  `ALTER DATABASE "regression" SET lc_time TO 'C'`,
  `ALTER DATABASE "regression" SET bytea_output TO 'hex'`,
  `ALTER DATABASE "regression" SET timezone_abbreviations TO 'Default'`,
  // pg_regress sends this as PGOPTIONS='-c intervalstyle=postgres_verbose'; Sluice drops the
  // `options` startup parameter, so the database carries it (for every run, to compare like with like).
  `ALTER DATABASE "regression" SET intervalstyle TO 'postgres_verbose'`,
];

/** postgresql.conf lines pg_regress adds to its own temporary instance. */
const REGRESS_CONF = ['max_prepared_transactions = 2', 'log_lock_waits = on', 'max_connections = 200'];

const asRoot = process.getuid?.() === 0;

function chownToServer(p: string): void {
  if (!asRoot) return;
  execFileSync('chown', ['-R', 'postgres:postgres', p]);
}

export interface RunOptions {
  /** Another schedule file than DIFF_SCHEDULE or parallel_schedule. */
  schedule?: string;
  /** Leave out `ALTER DATABASE … SET intervalstyle` (shows what PGOPTIONS alone does through Sluice). */
  noDbIntervalStyle?: boolean;
}

export async function regressRun(name: string, viaSluice: boolean, opts: RunOptions = {}): Promise<RegressRun> {
  const regressDir = must('DIFF_REGRESS_DIR');
  const libDir = must('DIFF_LIB_DIR');
  const schedule = opts.schedule ?? process.env.DIFF_SCHEDULE ?? path.join(regressDir, 'parallel_schedule');
  const work = path.join(cacheDir(), 'work'); // same outputdir every run: paths in outputs match
  const keep = path.join(cacheDir(), 'runs', name);
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(keep, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(path.dirname(keep), { recursive: true });

  const b = new Bench();
  const t0 = Date.now();
  try {
    const pg: PgCluster = await startPostgres({ conf: REGRESS_CONF });
    b.teardown(() => pg.stop());
    await pg.sql(`ALTER ROLE postgres PASSWORD ${quoteLiteral(PG_PASSWORD)}`);
    for (const s of DB_SETUP) if (!(opts.noDbIntervalStyle && /intervalstyle/.test(s))) await pg.sql(s);

    let host: string = pg.host;
    let port = pg.port;
    let password = PG_PASSWORD;
    const env: Record<string, string> = { PGSSLMODE: 'require' };
    if (viaSluice) {
      const gw = await startSluice(b, {
        tls: true,
        quiet: true,
        env: { REGRESS_PG_PASSWORD: PG_PASSWORD },
        config: {
          log: { level: 'info' },
          targets: {
            regression: {
              protocol: 'postgres',
              host: pg.host,
              port: pg.port,
              database: 'regression',
              user: 'postgres',
              password: { env: 'REGRESS_PG_PASSWORD' },
              tls: { mode: 'verify-full', ca: pg.caCert, servername: 'localhost' },
              allow: ['group:ci'],
            },
          },
        },
      });
      host = gw.host;
      port = gw.port;
      password = await gw.mint('regress', ['ci'], '2h');
      // psql runs as the server's OS user: give it a copy of the gateway's CA it can read.
      const ca = path.join(work, 'gateway-ca.pem');
      fs.copyFileSync(gw.ca!.cert, ca);
      env.PGSSLMODE = 'verify-full';
      env.PGSSLROOTCERT = ca;
    }

    const pgRegress = path.join(execFileSync(path.join(pgBinDir(), 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' }).trim(), 'pgxs/src/test/regress/pg_regress');
    const args = [
      '--use-existing', '--host', host, '--port', String(port), '--user', 'postgres', '--dbname', 'regression',
      '--inputdir', regressDir, '--outputdir', work, '--dlpath', libDir, '--bindir', pgBinDir(),
      '--schedule', schedule,
      ...(process.env.DIFF_MAX_CONNECTIONS ? ['--max-connections', process.env.DIFF_MAX_CONNECTIONS] : []),
    ];
    const childEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && v !== undefined) childEnv[k] = v;
    Object.assign(childEnv, env, { PGPASSWORD: password, PGCONNECT_TIMEOUT: '20' });
    chownToServer(work);
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', pgRegress, ...args]] : [pgRegress, args];
    log(`== regress ${name}: pg_regress on ${host}:${port}${viaSluice ? ' (Sluice)' : ' (direct)'}`);
    let exit = 0;
    try {
      await run(cmd, argv, { cwd: work, env: childEnv, maxBuffer: 64 * 1024 * 1024, timeout: 30 * 60_000 });
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      exit = typeof e.code === 'number' ? e.code : -1;
      if (!fs.existsSync(path.join(work, 'results'))) throw new Error(`pg_regress failed to run: ${e.stderr ?? String(err)}\n${e.stdout ?? ''}`);
    }
    fs.renameSync(work, keep);
    const summary = fs.existsSync(path.join(keep, 'regression.out')) ? fs.readFileSync(path.join(keep, 'regression.out'), 'utf8') : '';
    const failedVsExpected = [...summary.matchAll(/^\s*(?:test\s+)?(\S+)\s+\.\.\.\s+FAILED/gm)].map((m) => m[1]!);
    const result: RegressRun = {
      name,
      via_sluice: viaSluice,
      pg_regress_exit: exit,
      seconds: Math.round((Date.now() - t0) / 100) / 10,
      dir: keep,
      files: fs.readdirSync(path.join(keep, 'results')).filter((f) => f.endsWith('.out')).length,
      failed_vs_expected: failedVsExpected,
    };
    log(`== regress ${name}: ${result.files} result files, ${failedVsExpected.length} differ from expected/, ${result.seconds} s`);
    return result;
  } finally {
    await b.close();
  }
}
