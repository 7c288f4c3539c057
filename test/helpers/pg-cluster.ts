// Throwaway Postgres clusters for end-to-end tests: initdb into a temp dir,
// TLS on with a test CA, listen on 127.0.0.1:<free port>, torn down by stop().
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { issueCert, makeCA, type KeyPair } from './certs.js';
import { freePort } from './ports.js';

const run = promisify(execFile);

export interface PgClusterOptions {
  /** Users that get a `host all <name> 127.0.0.1/32 md5` pg_hba line (placed
   *  before the scram line). Create them with `createUser(n, pw, {md5: true})`
   *  so the stored hash is md5 too, or the server will demand SCRAM anyway. */
  md5Users?: string[];
  /** Users that get a `host all <name> 127.0.0.1/32 password` line (cleartext password), before the scram line. */
  passwordUsers?: string[];
  /** Extra postgresql.conf lines, e.g. ["log_statement = 'all'"]. */
  conf?: string[];
}

export interface CreateUserOptions {
  md5?: boolean;
  superuser?: boolean;
}

export interface PgCluster {
  host: '127.0.0.1';
  port: number;
  socketDir: string;
  dataDir: string;
  /** The test CA that signed the server cert (also usable for client certs). */
  ca: KeyPair;
  caCert: string;
  superuser: 'postgres';
  sql(query: string, db?: string): Promise<string>;
  createUser(name: string, password: string, opts?: CreateUserOptions): Promise<void>;
  createDatabase(name: string, owner?: string): Promise<void>;
  stop(): Promise<void>;
  logTail(lines?: number): string;
}

/** Highest /usr/lib/postgresql/<ver>/bin, else `pg_config --bindir`. */
export function pgBinDir(): string {
  const root = '/usr/lib/postgresql';
  const vers = fs.existsSync(root)
    ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    : [];
  vers.sort((a, b) => parseFloat(b) - parseFloat(a));
  if (vers.length) return path.join(root, vers[0]!, 'bin');
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('Postgres server binaries not found (install the postgresql package)');
  }
}

export const quoteIdent = (s: string): string => `"${s.replace(/"/g, '""')}"`;
export const quoteLiteral = (s: string): string => `'${s.replace(/'/g, "''")}'`;

// initdb/postgres refuse to run as root; then everything server-side runs as
// the `postgres` OS user (created by Debian's postgresql-common).
const asRoot = process.getuid?.() === 0;
function serverUser(): { uid: number; gid: number } | undefined {
  if (!asRoot) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
  return { uid: id('-u'), gid: id('-g') };
}

/** Clean env for server tools and psql: no stray PG* settings from the caller. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return env;
}

function chownTree(p: string, u: { uid: number; gid: number }): void {
  fs.chownSync(p, u.uid, u.gid);
  if (fs.statSync(p).isDirectory()) {
    for (const e of fs.readdirSync(p)) chownTree(path.join(p, e), u);
  }
}

// Last-resort cleanup if a test process exits without calling stop():
// SIGQUIT is Postgres' "immediate shutdown".
const live = new Map<string, string>(); // tmp dir -> data dir
process.on('exit', () => {
  for (const [tmp, data] of live) {
    try {
      const pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch { /* not running */ }
    try {
      fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
    } catch { /* best effort */ }
  }
});

export async function startPostgres(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = pgBinDir();
  const user = serverUser();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pg-'));
  fs.chmodSync(tmp, 0o755); // others (e.g. client processes) may read caCert
  const dataDir = path.join(tmp, 'data');
  const logFile = path.join(tmp, 'postgres.log');
  const ca = makeCA(path.join(tmp, 'tls'));
  const server = issueCert(ca, path.join(tmp, 'tls'), 'server');
  if (user) chownTree(tmp, user); // server key must be owned by the server user

  // Run a server-side binary, as `postgres` when we are root. cwd=tmp so the
  // tool never trips over an unreadable caller cwd.
  const tool = (name: string, args: string[]) => {
    const exe = path.join(bin, name);
    const [cmd, argv] = user ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
    return run(cmd, argv, { cwd: tmp, env: cleanEnv(), timeout: 60_000 });
  };
  const logTail = (lines = 40): string => {
    try {
      return fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no server log)';
    }
  };
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await tool('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w']).catch(() => {});
    fs.rmSync(tmp, { recursive: true, force: true });
    live.delete(tmp);
  };
  live.set(tmp, dataDir);

  let port = 0;
  try {
    await tool('initdb', ['-D', dataDir, '-U', 'postgres', '--auth-local=trust',
      '--auth-host=scram-sha-256', '--no-sync', '--no-locale', '-E', 'UTF8', '--no-instructions']);
    const hba = [
      'local all all trust',
      ...(opts.md5Users ?? []).map((u) => `host all ${quoteIdent(u)} 127.0.0.1/32 md5`),
      ...(opts.passwordUsers ?? []).map((u) => `host all ${quoteIdent(u)} 127.0.0.1/32 password`),
      'host all all 127.0.0.1/32 scram-sha-256',
      '',
    ];
    fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), hba.join('\n'));
    const confBase = fs.readFileSync(path.join(dataDir, 'postgresql.conf'), 'utf8');

    // freePort() is racy with parallel test files: retry with a new port if bind fails.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const conf = [
        confBase,
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        `unix_socket_directories = ${quoteLiteral(tmp)}`,
        'ssl = on',
        `ssl_cert_file = ${quoteLiteral(server.cert)}`,
        `ssl_key_file = ${quoteLiteral(server.key)}`,
        "password_encryption = 'scram-sha-256'",
        // Durability is irrelevant for throwaway clusters; speed is not.
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'max_connections = 200',
        'shared_buffers = 16MB',
        'log_min_messages = warning',
        ...(opts.conf ?? []),
        '',
      ];
      fs.writeFileSync(path.join(dataDir, 'postgresql.conf'), conf.join('\n'));
      try {
        await tool('pg_ctl', ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '30']);
        break;
      } catch (err) {
        if (attempt >= 3 || !/could not (bind|create any TCP)/i.test(logTail())) throw err;
      }
    }
  } catch (err) {
    const tail = logTail();
    await stop();
    // execFile's error message already includes the tool's stderr.
    throw new Error(`startPostgres failed: ${(err as Error).message}\n--- server log ---\n${tail}`);
  }

  const sql = async (query: string, db = 'postgres'): Promise<string> => {
    const args = ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', tmp, '-p', String(port),
      '-U', 'postgres', '-d', db, '-c', query];
    try {
      const { stdout } = await run(path.join(bin, 'psql'), args, { cwd: tmp, env: cleanEnv() });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`psql failed: ${e.stderr?.trim() || e.message}\nquery: ${query}`);
    }
  };

  return {
    host: '127.0.0.1',
    port,
    socketDir: tmp,
    dataDir,
    ca,
    caCert: ca.cert,
    superuser: 'postgres',
    sql,
    async createUser(name, password, o = {}) {
      // SET is session-local and psql -c sends both statements in one session.
      const enc = o.md5 ? 'md5' : 'scram-sha-256';
      await sql(`SET password_encryption = '${enc}'; CREATE ROLE ${quoteIdent(name)} LOGIN` +
        `${o.superuser ? ' SUPERUSER' : ''} PASSWORD ${quoteLiteral(password)}`);
    },
    async createDatabase(name, owner) {
      await sql(`CREATE DATABASE ${quoteIdent(name)}${owner ? ` OWNER ${quoteIdent(owner)}` : ''}`);
    },
    stop,
    logTail,
  };
}

/** Starts a cluster and registers its stop() as a tap teardown. */
export async function withPostgres(
  t: { teardown(fn: () => unknown): void },
  opts?: PgClusterOptions,
): Promise<PgCluster> {
  const pg = await startPostgres(opts);
  t.teardown(() => pg.stop());
  return pg;
}
