// Smoke test for the e2e harness: a throwaway cluster that real clients
// (psql over verify-full TLS, node-postgres) can reach with SCRAM and md5.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import t from 'tap';
import { withPostgres } from './helpers/pg-cluster.js';

const run = promisify(execFile);

t.test('throwaway postgres cluster', async (t) => {
  // withPostgres registers stop() as teardown, so cleanup happens on failure too.
  const db = await withPostgres(t, { md5Users: ['md5user'] });
  await db.createUser('app', 's3cret');
  await db.createDatabase('orders', 'app');
  await db.sql('CREATE EXTENSION sslinfo', 'orders');
  await db.createUser('md5user', 'm5pw', { md5: true });

  const psql = (conninfo: string, password: string, query: string) =>
    run('psql', ['-X', conninfo, '-Atc', query], {
      env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
    });
  const tls = `sslmode=verify-full sslrootcert=${db.caCert}`;
  const conn = (user: string, host = 'host=127.0.0.1') =>
    `${host} port=${db.port} dbname=orders user=${user} ${tls}`;

  t.test('psql verify-full over 127.0.0.1 with SCRAM', async (t) => {
    const { stdout } = await psql(conn('app'), 's3cret', 'select current_user, ssl_is_used()');
    t.equal(stdout.trim(), 'app|t');
  });

  t.test('cert hostname "localhost" also verifies', async (t) => {
    // hostaddr pins the address; libpq checks the cert against host=localhost.
    const { stdout } = await psql(conn('app', 'host=localhost hostaddr=127.0.0.1'), 's3cret',
      'select ssl_is_used()');
    t.equal(stdout.trim(), 't');
  });

  t.test('wrong password is rejected', async (t) => {
    const err = await psql(conn('app'), 'nope', 'select 1').then(() => null, (e: unknown) => e);
    t.match(err, { stderr: /password authentication failed for user "app"/ });
  });

  t.test('md5 user authenticates with md5', async (t) => {
    const { stdout } = await psql(conn('md5user'), 'm5pw', 'select current_user');
    t.equal(stdout.trim(), 'md5user');
    const hash = await db.sql("select rolpassword from pg_authid where rolname = 'md5user'");
    t.match(hash.trim(), /^md5[0-9a-f]{32}$/);
  });

  t.test('node-postgres with Node TLS verification', async (t) => {
    const client = new pg.Client({
      host: db.host, port: db.port, database: 'orders', user: 'app', password: 's3cret',
      ssl: { ca: readFileSync(db.caCert, 'utf8'), rejectUnauthorized: true },
    });
    await client.connect();
    t.teardown(() => client.end());
    const res = await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    t.equal(res.rows[0]?.ssl, true);
  });

  t.test('sql() reports errors with the psql message', async (t) => {
    await t.rejects(db.sql('select * from no_such_table'), /relation "no_such_table" does not exist/);
  });
});
