// `sluice demo`: an embedded Postgres (PGlite) seeded with fake PII, Sluice in
// front of it with a generated self-signed certificate, and a minted token.
// Needs nothing installed beyond `npm install`.

import { existsSync } from 'node:fs';
import net from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadConfig } from '../config/load.js';
import { mintToken } from '../identity/tokens.js';
import { createLogger } from '../observability/log.js';

const DEMO_TARGET = 'demo';

/** Resolves when 127.0.0.1:port can be listened on (0 always can); else with the error's code. */
function portFree(port: number): Promise<string | null> {
  if (port === 0) return Promise.resolve(null);
  return new Promise((resolveFree) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolveFree(err.code ?? err.message));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolveFree(null)));
  });
}

/** A self-signed EC certificate for localhost/127.0.0.1, made once per state dir. */
async function ensureCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'gateway.crt');
  const key = join(dir, 'gateway.key');
  if (existsSync(cert) && existsSync(key)) return { cert, key };
  const { generate } = await import('selfsigned');
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 1);
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  await writeFile(key, pems.private, { mode: 0o600 });
  await writeFile(cert, pems.cert);
  return { cert, key };
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '6432' },
      'admin-port': { type: 'string', default: '6480' },
      'state-dir': { type: 'string', default: '.sluice-demo' },
      'in-memory': { type: 'boolean', default: false },
    },
  });
  const port = Number(values.port);
  const adminPort = Number(values['admin-port']);
  for (const [flag, v, raw] of [['--port', port, values.port], ['--admin-port', adminPort, values['admin-port']]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 65535) {
      process.stderr.write(`sluice demo: ${flag} must be a port number, got "${raw}"\n`);
      return 2;
    }
  }
  if (port !== 0 && port === adminPort) {
    process.stderr.write(`sluice demo: --port and --admin-port are both ${port}; pick two different ports\n`);
    return 2;
  }
  // Checked before the embedded database boots (which can take minutes on a busy machine).
  for (const [flag, p, next] of [['--port', port, 6433], ['--admin-port', adminPort, 6481]] as const) {
    const why = await portFree(p);
    if (why) {
      const what = why === 'EADDRINUSE' ? 'is in use' : why === 'EACCES' ? 'needs privileges' : `cannot be used (${why})`;
      process.stderr.write(`sluice demo: port ${p} (${flag}) ${what}; pick another with ${flag} ${next}, or ${flag} 0 for any free port\n`);
      return 1;
    }
  }
  const stateDir = resolve(values['state-dir']);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const say = (s: string) => process.stderr.write(s + '\n');

  say('Starting the embedded Postgres (PGlite) and seeding demo data…');
  const { startEmbeddedPostgres } = await import('./embedded-postgres.js');
  const db = await startEmbeddedPostgres({ dataDir: values['in-memory'] ? undefined : join(stateDir, 'pgdata'), port: 0 });

  const tls = await ensureCertificate(stateDir);
  const configPath = join(stateDir, 'sluice.yaml');
  const config = {
    state_dir: '.',
    listeners: {
      postgres: { host: '127.0.0.1', port, tls: { cert: 'gateway.crt', key: 'gateway.key' } },
      admin: { host: '127.0.0.1', port: adminPort, tls: { cert: 'gateway.crt', key: 'gateway.key' } },
    },
    targets: {
      [DEMO_TARGET]: {
        protocol: 'postgres',
        host: db.host,
        port: db.port,
        database: db.database,
        user: db.user,
        // The embedded database trusts loopback and asks for no password (auth: none, an
        // explicit opt-in); a real target takes a password { env | file | command } and SCRAM.
        tls: { mode: 'disable' },
        auth: ['none'],
        allow: ['group:dba', 'group:ci', 'group:analysts'],
      },
    },
    // Statement policy: analysts read; deleting or updating customers waits for an
    // approver; other changes are refused. DBAs do anything; everything else is refused.
    policies: [
      {
        name: 'analysts',
        match: { groups: ['analysts'] },
        rules: [
          { allow: { name: 'reads', changes_state: false } },
          { review: { name: 'customers-writes', kind: ['delete', 'update'], tables: ['customers'], message: 'changes to customers need a second pair of eyes' } },
          // Any other change matches no rule: policy.default (deny) refuses it.
        ],
      },
      { name: 'dba', match: { groups: ['dba'] }, rules: [{ deny: { kind: ['alter_system'] } }, { allow: {} }] },
    ],
    // Masking: analysts see masked PII; the dba group sees clear text.
    masking: [
      {
        name: 'pii',
        match: { groups: ['analysts', 'ci'] },
        columns: [{ column: 'customers.ssn', strategy: 'redact' }, { column: 'customers.phone', strategy: 'partial' }],
        detectors: ['credit_card', 'email', 'us_ssn', 'phone', 'iban', 'aws_access_key', 'jwt', 'private_key'],
      },
    ],
    // Approvers: the dba group, and operators on this machine (the CLI mints itself a token).
    approvals: { approvers: ['dba', 'sluice-approvers'], timeout: '10m' },
    log: { level: 'info', file: 'sluice.log' },
  };
  const save = () =>
    writeFile(configPath, `# Written by \`sluice demo\`; the embedded database listens on a new port each run.\n${stringify(config)}`);
  await save();
  const cfg = await loadConfig(configPath);
  const log = createLogger(cfg.log);
  const { startGateway } = await import('../gateway/server.js');
  let gw;
  try {
    gw = await startGateway(cfg, { log, signals: false });
  } catch (err) {
    await db.stop();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      // Taken in the moment since the check above.
      process.stderr.write(`sluice demo: port ${port} or ${adminPort} was taken while the embedded database started; pick others with --port 6433 --admin-port 6481\n`);
      return 1;
    }
    throw err;
  }
  const listenPort = gw.listener('postgres')!.port;
  if (port === 0 || adminPort === 0) {
    // Ports picked by the system: write them down for the CLI in other terminals.
    config.listeners.postgres.port = listenPort;
    config.listeners.admin.port = gw.adminApi()?.port ?? adminPort;
    await save();
  }
  const token = await mintToken(cfg.identity, cfg.state_dir, { sub: 'demo-user', groups: ['analysts'], ttlSeconds: 8 * 3600 });
  const show = (p: string) => {
    const r = relative(process.cwd(), p);
    return r && !r.startsWith('..') ? r : p;
  };
  const rel = show(configPath);
  say(`
Sluice demo is running.
  gateway   127.0.0.1:${listenPort} (TLS, self-signed)  ->  embedded Postgres 127.0.0.1:${db.port}
  config    ${rel}
  logs      ${show(cfg.log.file!)}

Connect with a token instead of a password (valid 8 hours, identity demo-user, group analysts):

  PGPASSWORD='${token}' psql "host=127.0.0.1 port=${listenPort} dbname=${DEMO_TARGET} user=demo-user sslmode=require"

Then try:  \\dt    SELECT * FROM customers LIMIT 5;    (emails, cards, SSNs come back masked)
           DROP TABLE orders;                          (refused: analysts may only read)
           DELETE FROM customers WHERE id = 16;        (waits for approval; in a second terminal:
                                                        npx sluice approvals list
                                                        npx sluice approvals approve <id>)
  admin API ${gw.adminApi()?.url ?? '(off)'}   (sluice sessions list --live, sluice revoke --sub demo-user)

Mint another token:  npx sluice token mint --config ${rel} --sub you --groups dba --ttl 1h
Press Ctrl-C to stop.
`);
  const stop = () => {
    say('Stopping…');
    void gw
      .stop()
      .then(() => db.stop())
      .finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return new Promise<number>(() => {});
}
