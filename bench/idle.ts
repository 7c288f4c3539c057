// Gateway memory with many idle authenticated sessions: BENCH_IDLE_SESSIONS
// (1,000) connections are opened through Sluice, each authenticates with a
// token, runs `select 1` (so its upstream session, policy and masking state
// exist) and then sits idle. Reports the gateway's VmRSS and RssAnon from
// /proc/<pid>/status before and with the sessions open, per variant
// (BENCH_IDLE_VARIANTS: bare and fully governed by default).
//
//   node --import tsx bench/idle.ts
import { knobs, log, machineLine, writeResult } from './lib/env.js';
import { runBench, startCluster, startGateway } from './lib/paths.js';
import { WireClient } from './lib/pgwire.js';
import { memory, type Mem } from './lib/proc.js';

const N = knobs.idleSessions;
const PARALLEL = 25; // well under limits.max_unauthenticated (256)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The highest of a few samples over `ms`: RSS moves with GC, the peak is what a limit must allow. */
async function settle(pid: number, ms: number): Promise<Mem> {
  const peak: Mem = { rss: 0, anon: 0, hwm: 0 };
  for (let t = 0; t < ms; t += 250) {
    const m = memory(pid);
    peak.rss = Math.max(peak.rss, m.rss);
    peak.anon = Math.max(peak.anon, m.anon);
    peak.hwm = Math.max(peak.hwm, m.hwm);
    await sleep(250);
  }
  return peak;
}

await runBench(async (b) => {
  const pg = await startCluster(b, [`max_connections = ${N + 50}`]);
  const json: Record<string, unknown>[] = [];
  const rows = [
    '| path | sessions | VmRSS at start MB | VmRSS after one session MB | VmRSS with sessions MB | RssAnon with sessions MB | KB per session (VmRSS) | sessions opened per s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const v of knobs.idleVariants) {
    const p = await startGateway(b, pg, v);
    await sleep(1000);
    const cold = await settle(p.pid!, 1000);
    // One session first, so one-time costs (the SQL parser's module and its compiled code,
    // the recording store) are in the baseline rather than spread over the sessions.
    const warm = await WireClient.connect(p);
    await warm.query('select 1');
    warm.close();
    await sleep(1000);
    const before = await settle(p.pid!, 1000);
    const clients: WireClient[] = [];
    const t0 = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < N) {
          next++;
          const c = await WireClient.connect(p);
          await c.query('select 1');
          clients.push(c);
        }
      }),
    );
    const rate = N / ((Date.now() - t0) / 1000);
    const open = Number((await pg.sql("select count(*) from pg_stat_activity where usename = 'app'")).trim());
    const during = await settle(p.pid!, 3000);
    const perSession = ((during.rss - before.rss) * 1024) / N;
    log(`${v}: ${N} sessions (${open} upstream), VmRSS ${cold.rss.toFixed(1)} at start, ${before.rss.toFixed(1)} → ${during.rss.toFixed(1)} MB, RssAnon ${during.anon.toFixed(1)} MB`);
    rows.push(`| ${v} | ${N} | ${cold.rss.toFixed(1)} | ${before.rss.toFixed(1)} | ${during.rss.toFixed(1)} | ${during.anon.toFixed(1)} | ${perSession.toFixed(0)} | ${rate.toFixed(0)} |`);
    json.push({ path: v, sessions: N, upstream_sessions: open, at_start: cold, after_one_session: before, with_sessions: during, kb_per_session: perSession, sessions_per_s: rate });
    for (const c of clients) c.close();
    await p.stop!();
  }
  const md =
    `Idle sessions: ${N} authenticated sessions held open through the gateway (each ran \`select 1\`), peak of samples over 3 s; "after one session" is the baseline (one-time costs such as loading the SQL parser are in it); ${machineLine()}\n\n` +
    `${rows.join('\n')}\n\nMB = 2^20 bytes, from /proc/<pid>/status. RssAnon leaves out file-backed pages (code, the recording store's map).\n`;
  writeResult('idle', md, { sessions: N, results: json });
});
