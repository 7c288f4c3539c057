// When the recording store cannot write, recording.on_failure decides, with a
// clear message: deny_new refuses new sessions (and ends live ones), while
// continue_unrecorded goes on and says so loudly in the log.
import t from 'tap';
import pg from 'pg';
import fs from 'node:fs';
import { withPostgres } from './helpers/pg-cluster.js';
import { prepareOrders, psql, startSluice } from './helpers/sluice.js';

const cluster = await withPostgres(t);
await prepareOrders(cluster);
// ~3 MB of results: far more than a 1 MiB store budget.
const BIG = "select repeat('x', 1000) from generate_series(1, 3000)";

t.test('deny_new: the live session is ended with a message, new ones are refused', async (t) => {
  const gw = await startSluice(t, { cluster, config: { recording: { map_size: '1MiB', on_failure: 'deny_new' } } });
  const token = await gw.mint('ci', ['ci']);
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  c.on('error', () => {});
  await c.connect();
  let err = new Error('the session was not ended');
  for (let i = 0; i < 20; i++) {
    const r = await c.query(BIG).catch((e) => e);
    if (r instanceof Error) {
      err = r;
      break;
    }
  }
  // Mid-result, the FATAL goes out at the next message boundary.
  t.match(err.message, /terminating connection: the recording store cannot write .*recording\.on_failure: deny_new/);
  await gw.waitForLog((l) => l.event === 'recording.failure', 20_000);
  const r = await psql(gw, token, ['-Atc', 'select 1']);
  t.not(r.code, 0);
  t.match(r.stderr, /FATAL:\s+Sluice cannot record sessions right now \(.+\), so new sessions are refused \(recording\.on_failure: deny_new\)/);
});

t.test('continue_unrecorded: sessions go on, and the log says so loudly', async (t) => {
  const gw = await startSluice(t, { cluster, config: { recording: { map_size: '1MiB', on_failure: 'continue_unrecorded' } } });
  const token = await gw.mint('ci', ['ci']);
  for (let i = 0; i < 5; i++) await psql(gw, token, ['-Atc', BIG]);
  const fail = await gw.waitForLog((l) => l.event === 'recording.failure', 20_000);
  t.equal(fail.level, 'error');
  await gw.waitForLog((l) => l.event === 'recording.unrecorded');
  const r = await psql(gw, token, ['-Atc', 'select 42']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '42');
});
