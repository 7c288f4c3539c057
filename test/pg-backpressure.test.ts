// A slow reader slows the server, not the gateway's memory: while psql is
// blocked, Sluice stops reading from Postgres and its RSS stays bounded.
import t from 'tap';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { withPostgres } from './helpers/pg-cluster.js';
import { connString, prepareOrders, startSluice } from './helpers/sluice.js';

// Anonymous memory (heap, buffers, threads): what bounded memory is about. File-backed
// pages of the recording store's memory map are page cache, reclaimable, and not counted.
const rssMB = (pid: number) => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const pg = await withPostgres(t);
await prepareOrders(pg);
// The relay's own memory; recording's is measured in bench/ (it has a writer thread and its own buffer).
const gw = await startSluice(t, { cluster: pg, config: { log: { level: 'info' }, recording: { enabled: false } } });
const token = await gw.mint('ci', ['ci']);

t.test('a 1 GB COPY to a stalled client keeps the gateway under 100 MB', async (t) => {
  const rows = 1_000_000;
  const width = 1000;
  const p = spawn('psql', ['-X', connString(gw), '-c', `copy (select repeat('x', ${width}) from generate_series(1, ${rows})) to stdout`], {
    env: { ...process.env, PGPASSWORD: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (c) => (stderr += c));
  p.stdout.pause();

  // While nobody reads psql's stdout, the server must end up blocked writing to us.
  let blocked = false;
  for (let i = 0; i < 100 && !blocked; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const w = await pg.sql("select wait_event from pg_stat_activity where usename = 'app' and query like 'copy (select repeat%'");
    blocked = w.trim() === 'ClientWrite';
  }
  t.ok(blocked, 'the server waits on ClientWrite while the client is stalled');
  const stalledRss = rssMB(gw.proc.pid!);
  t.ok(stalledRss < 100, `gateway RSS while stalled: ${stalledRss.toFixed(1)} MB`);

  let bytes = 0;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMB(gw.proc.pid!))), 50);
  p.stdout.on('data', (c: Buffer) => (bytes += c.length));
  p.stdout.resume();
  const code = await new Promise((r) => p.on('close', r));
  clearInterval(sampler);
  t.equal(code, 0, stderr);
  t.equal(bytes, rows * (width + 1), 'every byte arrived');
  t.ok(peak < 100, `gateway peak RSS while streaming: ${peak.toFixed(1)} MB`);
});
