// Step `drivers` of run.sh: JDBC (Debian's pgjdbc, compiled with javac here), psycopg2 and
// psycopg 3 check programs, each run direct and through Sluice against one throwaway cluster.
// Each program prints one JSON object per check; the direct run shows that a check failing
// through Sluice fails because of Sluice.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startPostgres } from '../../test/helpers/pg-cluster.js';
import { prepareOrders, startSluice, TARGET_PASSWORD } from '../../test/helpers/sluice.js';
import { log } from '../lib/env.js';
import { Bench } from '../lib/paths.js';
import { cacheDir, saveStep, type Check, type DriverRun } from './common.js';

const run = promisify(execFile);
const HERE = import.meta.dirname;
const JAR = process.env.DIFF_JDBC_JAR ?? '/usr/share/java/postgresql.jar';
const PY = '/usr/bin/python3'; // Debian's python3-psycopg2 and python3-psycopg live there

interface Endpoint {
  path: 'direct' | 'sluice';
  port: number;
  user: string;
  password: string;
  sslmode: string;
  rootcert: string;
}

/** pgjdbc's version: from its Debian package, else from a versioned jar name next to JAR. */
function jdbcVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libpostgresql-jdbc-java'], { encoding: 'utf8' }).split('-')[0]!;
  } catch {
    const named = fs.readdirSync(path.dirname(JAR)).find((f) => /^postgresql-\d+\.\d+\.\d+\.jar$/.test(f));
    return named?.match(/(\d+\.\d+\.\d+)/)?.[1] ?? 'unknown';
  }
}

function parseChecks(stdout: string): Check[] {
  const checks: Check[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      checks.push(JSON.parse(line) as Check);
    } catch { /* not a check line */ }
  }
  return checks;
}

async function runProgram(driver: string, version: string, ep: Endpoint, cmd: string, args: string[], env: Record<string, string> = {}): Promise<DriverRun> {
  const t0 = Date.now();
  let stdout = '';
  let error: string | undefined;
  try {
    ({ stdout } = await run(cmd, args, { env: { ...process.env, ...env }, timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    stdout = e.stdout ?? '';
    error = (e.stderr || e.message).trim().split('\n').slice(-5).join('\n');
  }
  const checks = parseChecks(stdout);
  const pass = checks.filter((c) => c.ok).length;
  log(`== ${driver} ${ep.path}: ${pass}/${checks.length} passed in ${((Date.now() - t0) / 1000).toFixed(1)} s${error ? ` (program error: ${error.split('\n')[0]})` : ''}`);
  for (const c of checks) if (!c.ok) log(`   FAIL ${c.name}: ${c.detail}`);
  return { driver, version, path: ep.path, checks, ...(error ? { error } : {}) };
}

const b = new Bench();
const results: DriverRun[] = [];
try {
  const pg = await startPostgres({ conf: ['max_connections = 100'] });
  b.teardown(() => pg.stop());
  await prepareOrders(pg);
  const gw = await startSluice(b, { cluster: pg, tls: true, quiet: true, config: { log: { level: 'info' } } });
  const token = await gw.mint('drivers', ['ci'], '2h');
  const endpoints: Endpoint[] = [
    { path: 'direct', port: pg.port, user: 'app', password: TARGET_PASSWORD, sslmode: 'verify-ca', rootcert: pg.caCert },
    { path: 'sluice', port: gw.port, user: 'ci', password: token, sslmode: 'verify-full', rootcert: gw.ca!.cert },
  ];
  const only = (process.env.DIFF_DRIVERS ?? 'jdbc,psycopg2,psycopg3').split(',');

  if (only.includes('jdbc')) {
    const classes = path.join(cacheDir(), 'java');
    fs.mkdirSync(classes, { recursive: true });
    execFileSync('javac', ['-nowarn', '-cp', JAR, '-d', classes, path.join(HERE, 'drivers', 'JdbcCheck.java')], { stdio: 'inherit' });
    const version = jdbcVersion();
    for (const ep of endpoints) {
      const url = `jdbc:postgresql://127.0.0.1:${ep.port}/orders?sslmode=${ep.sslmode}&sslrootcert=${ep.rootcert}`;
      results.push(await runProgram('pgjdbc', version, ep, 'java', ['-cp', `${JAR}:${classes}`, 'JdbcCheck', url, ep.user, ep.password]));
    }
  }
  for (const [name, mod] of [['psycopg2', 'psycopg2'], ['psycopg3', 'psycopg']] as const) {
    if (!only.includes(name)) continue;
    const version = execFileSync(PY, ['-c', `import ${mod}; print(${mod}.__version__.split()[0])`], { encoding: 'utf8' }).trim();
    for (const ep of endpoints) {
      const dsn = `host=127.0.0.1 port=${ep.port} dbname=orders user=${ep.user} sslmode=${ep.sslmode} sslrootcert=${ep.rootcert}`;
      results.push(await runProgram(name, version, ep, PY, [path.join(HERE, 'drivers', `${name}_check.py`), dsn], { PGPASSWORD: ep.password }));
    }
  }
} finally {
  await b.close();
}
saveStep('drivers', results);
