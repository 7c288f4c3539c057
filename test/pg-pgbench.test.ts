// pgbench through Sluice: initialise, then the three query modes with 0 failures.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { withPostgres } from './helpers/pg-cluster.js';
import { prepareOrders, startSluice, type Sluice } from './helpers/sluice.js';

const run = promisify(execFile);
const pg = await withPostgres(t);
await prepareOrders(pg);
const gw = await startSluice(t, { cluster: pg });
const token = await gw.mint('nightly-etl', ['ci'], '10m');

function pgbench(gw: Sluice, args: string[]) {
  return run('pgbench', [...args, 'orders'], {
    env: {
      ...process.env,
      PGHOST: gw.host,
      PGPORT: String(gw.port),
      PGUSER: 'ci',
      PGPASSWORD: token,
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: gw.ca!.cert,
    },
    maxBuffer: 16 << 20,
  });
}

t.test('pgbench -i creates and fills the tables', async (t) => {
  const r = await pgbench(gw, ['-i', '-s', '2', '-q']);
  t.match(r.stderr, /done in/);
  t.equal((await pg.sql('select count(*) from pgbench_accounts', 'orders')).trim(), '200000');
});

for (const mode of ['simple', 'extended', 'prepared']) {
  t.test(`pgbench -M ${mode} runs with 0 failed transactions`, async (t) => {
    const r = await pgbench(gw, ['-M', mode, '-c', '4', '-j', '2', '-t', '300']);
    t.match(r.stdout, /number of transactions actually processed: 1200\/1200/);
    t.match(r.stdout, /number of failed transactions: 0 /);
  });
}

t.test('pgbench -S -C reconnects per transaction', async (t) => {
  const r = await pgbench(gw, ['-S', '-C', '-c', '2', '-t', '50']);
  t.match(r.stdout, /number of transactions actually processed: 100\/100/);
  const opens = gw.logs().filter((l) => l.event === 'session.open' && l.sub === 'nightly-etl').length;
  t.ok(opens >= 100, `${opens} sessions opened`);
});
