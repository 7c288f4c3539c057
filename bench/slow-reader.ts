// Gateway memory while a large result streams to a slow reader: BENCH_BIG_GB
// (5) GB of rows (`select repeat('x', 1000) from generate_series(1, n)`) read
// at BENCH_SLOW_MBPS (64) MB/s, so the client, not the server, sets the pace and
// the gateway must hold back Postgres instead of buffering. The gateway's VmRSS
// and RssAnon are sampled every 100 ms; the peaks are reported per variant
// (BENCH_BIG_VARIANTS: bare and fully governed by default).
//
//   BENCH_BIG_GB=1 node --import tsx bench/slow-reader.ts
import { knobs, log, machineLine, writeResult } from './lib/env.js';
import { runBench, startCluster, startGateway } from './lib/paths.js';
import { WireClient } from './lib/pgwire.js';
import { sampleMemory } from './lib/proc.js';

const WIDTH = 1000;
const N = Math.max(1, Math.round((knobs.bigGb * 1e9) / WIDTH));
const SQL = `select repeat('x', ${WIDTH}) from generate_series(1, ${N})`;

await runBench(async (b) => {
  const pg = await startCluster(b);
  // The recording store must hold the whole stream when recording is on.
  const mapGiB = Math.max(8, Math.ceil((knobs.bigGb * 1e9 * 1.2) / 2 ** 30) + 1);
  const json: Record<string, unknown>[] = [];
  const rows = ['| path | GB streamed | reader MB/s | peak VmRSS MB | peak RssAnon MB | VmHWM MB |', '|---|---:|---:|---:|---:|---:|'];
  for (const v of knobs.bigVariants) {
    const p = await startGateway(b, pg, v, { recording: { map_size: `${mapGiB}GiB` } });
    const c = await WireClient.connect(p);
    const sampler = sampleMemory(p.pid!, 100);
    const progress = setInterval(() => log(`${v}: ${(c.bytes / 1e9).toFixed(2)} GB, peak VmRSS ${sampler.peak.rss.toFixed(1)} MB, RssAnon ${sampler.peak.anon.toFixed(1)} MB`), 10_000);
    let r;
    try {
      r = await c.query(SQL, { mbps: knobs.slowMBps });
    } finally {
      clearInterval(progress);
    }
    const peak = sampler.stop();
    c.close();
    if (r.rows !== N) throw new Error(`${v}: ${r.rows} rows, expected ${N}`);
    const mbps = r.bytes / 1e6 / r.seconds;
    log(`${v}: ${(r.bytes / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(0)} s (${mbps.toFixed(1)} MB/s), peak VmRSS ${peak.rss.toFixed(1)} MB, RssAnon ${peak.anon.toFixed(1)} MB, VmHWM ${peak.hwm.toFixed(1)} MB`);
    rows.push(`| ${v} | ${(r.bytes / 1e9).toFixed(2)} | ${mbps.toFixed(1)} | ${peak.rss.toFixed(1)} | ${peak.anon.toFixed(1)} | ${peak.hwm.toFixed(1)} |`);
    json.push({ path: v, bytes: r.bytes, rows: r.rows, seconds: r.seconds, reader_mb_per_s: mbps, peak });
    await p.stop!();
  }
  const md =
    `Slow reader: \`${SQL}\` (${knobs.bigGb} GB of values) read at ${knobs.slowMBps} MB/s; gateway memory sampled every 100 ms; ${machineLine()}\n\n` +
    `${rows.join('\n')}\n\nMB = 2^20 bytes, from /proc/<pid>/status; VmHWM is the process's lifetime peak. RssAnon leaves out file-backed pages (code, the recording store's map).\n`;
  writeResult('slow-reader', md, { gb: knobs.bigGb, reader_mb_per_s_target: knobs.slowMBps, sql: SQL, results: json });
});
