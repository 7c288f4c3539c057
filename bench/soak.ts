// Soak: BENCH_SOAK_SESSIONS (1,000) concurrent sessions for BENCH_SOAK_SECONDS (60) through one
// fully governed gateway (`sluice+all`: policy, masking and recording on), and the same load
// straight to Postgres for BENCH_SOAK_DIRECT_SECONDS (15) before and after it, for the ratio (the
// shared machine drifts). BENCH_SOAK_VARIANT runs another variant of bench/lib/paths.ts instead, to
// attribute costs (the checks of what that variant leaves off are skipped).
//
// Each session loops over a mix of simple-protocol statements as fast as the gateway answers:
// - 17 in 20: a select of every column of one row of the PII table `customers` (bench/lib/pii.ts),
//   so column rules (email, card_number, ssn, full_name) and detectors (note) mask each result;
// - 2 in 20: an insert into `soak_log`, a write the policy allows;
// - 1 in 20: `drop table if exists soak_nothing`, which the policy denies: counted as expected-denied
//   through the gateway (SQLSTATE 42501 from Sluice), a no-op with a notice when direct.
// Any other error (a failed connect, a dropped connection, an unexpected ErrorResponse) is an error;
// the run exits 1 when there is any, when a recording fails verification, when a frame was dropped,
// or when the recorded statement counts differ from what the sessions sent.
//
// Reported: transactions (one transaction = one statement, autocommit), TPS and its per-second
// spread, latency quantiles, gateway CPU µs per transaction (utime+stime from /proc), Postgres and
// driver CPU per transaction, the gateway's CPU by thread, sleeps (voluntary context switches) per
// transaction, CPU with the sessions open and idle, gateway VmRSS and RssAnon sampled every second (RssAnon leaves out the
// recording store's memory map), and at the end every session's recording verified through the
// store API (hash chain and signed head), plus one through `sluice recordings verify`.
//
// The driver is bench/lib/pgwire.ts's WireClient in this process rather than pgbench: pgbench stops a
// client at its first error, so the denied statement could not be in its script, and it cannot tell
// an expected refusal from a failure; here every statement's outcome is classified and counted.
// The client decodes no rows, so its own CPU stays small (reported as driver CPU per transaction).
// Postgres runs with max_connections = sessions + 100; the gateway holds two sockets per session,
// so the open-files limit must allow about 2 × sessions + 100 (bench/run.sh raises it).
//
//   node --import tsx bench/soak.ts
//   BENCH_SOAK_SESSIONS=100 BENCH_SOAK_SECONDS=5 BENCH_SOAK_DIRECT_SECONDS=3 node --import tsx bench/soak.ts
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { loadConfig } from '../src/config/load.js';
import { openRecordingStore } from '../src/recording/open.js';
import { pgBinDir, type PgCluster } from '../test/helpers/pg-cluster.js';
import { BIN } from '../test/helpers/sluice.js';
import { knobs, log, machineLine, quantile, writeResult } from './lib/env.js';
import { directPath, runBench, startCluster, startGateway, VARIANTS, VARIANT_LABELS, type Path } from './lib/paths.js';
import { WireClient } from './lib/pgwire.js';
import { loadPiiTable, piiRow } from './lib/pii.js';
import { cpuSeconds, memory, threadCpuSeconds, voluntarySwitches, type Mem } from './lib/proc.js';

const run = promisify(execFile);
const N = knobs.soakSessions;
const SECONDS = knobs.soakSeconds;
const DIRECT_SECONDS = knobs.soakDirectSeconds;
const VARIANT = knobs.soakVariant;
/** Whether the gateway's variant has a statement policy (then the denied statement is refused). */
const POLICY = 'policies' in (VARIANTS[VARIANT] ?? {});
const MASKING = 'masking' in (VARIANTS[VARIANT] ?? {});
const RECORDING = (VARIANTS[VARIANT]?.recording as { enabled?: boolean } | undefined)?.enabled !== false;
const ROWS = 10_000;
const PARALLEL = 25; // connects in flight: well under limits.max_unauthenticated (256)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

const DENIED = 'drop table if exists soak_nothing';
/** Statement k of a session: mostly masked selects, some allowed writes, one denied in 20. */
function statement(session: number, k: number): { sql: string; deny: boolean } {
  const m = k % 20;
  if (m === 7) return { sql: DENIED, deny: true };
  if (m === 3 || m === 13) return { sql: `insert into soak_log (session, k) values (${session}, ${k})`, deny: false };
  const id = 1 + ((k * 7919 + session * 104729) % ROWS);
  return { sql: `select id, full_name, email, card_number, ssn, note from customers where id = ${id}`, deny: false };
}

interface Load {
  sessions: number;
  seconds: number;
  tx: number;
  allowed: number;
  denied: number;
  errors: number;
  errorSamples: string[];
  tps: number;
  perSecond: number[];
  latencyMs: { p50: number; p99: number; max: number };
  proxyCpuUsPerTx: number;
  pgCpuUsPerTx: number;
  driverCpuUsPerTx: number;
  /** Voluntary context switches of Postgres (postmaster and backends) and of the gateway, per transaction. */
  pgSwitchesPerTx: number;
  proxySwitchesPerTx: number;
  /** Gateway CPU per transaction by thread name (the main thread as `main`), µs. */
  proxyThreadsUsPerTx: Record<string, number>;
}

/** CPU µs per transaction by thread name between two threadCpuSeconds() samples; the main thread (tid = pid) is `main`. */
function byThread(pid: number, before: ReturnType<typeof threadCpuSeconds>, after: ReturnType<typeof threadCpuSeconds>, tx: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [tid, a] of after) {
    const name = Number(tid) === pid ? 'main' : a.comm;
    out[name] = (out[name] ?? 0) + ((a.cpu - (before.get(tid)?.cpu ?? 0)) * 1e6) / tx;
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v >= 0.5).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, Math.round(v)]));
}

/** The Postgres postmaster's pid (its backends are its children). */
const postmasterPid = (pg: PgCluster): number => Number(fs.readFileSync(path.join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);

/** Opens `n` sessions, PARALLEL at a time; failures are counted, not thrown. */
async function connectAll(p: Path, n: number, errors: string[]): Promise<WireClient[]> {
  const clients: WireClient[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, n) }, async () => {
      while (next < n) {
        next++;
        try {
          clients.push(await WireClient.connect(p));
        } catch (e) {
          errors.push(`connect: ${(e as Error).message}`);
        }
      }
    }),
  );
  return clients;
}

/** Every session loops until `seconds` have passed; outcomes classified, CPU read around the window. */
async function drive(p: Path, clients: WireClient[], seconds: number, pgPid: number, refused: boolean, connectErrors: string[]): Promise<Load> {
  const errorSamples = [...connectErrors];
  let errors = connectErrors.length;
  let allowed = 0;
  let denied = 0;
  const lat: number[] = [];
  const buckets: number[] = [];
  const proxy0 = p.pid ? cpuSeconds(p.pid) : 0;
  const pg0 = cpuSeconds(pgPid);
  const pgSw0 = voluntarySwitches(pgPid);
  const proxySw0 = p.pid ? voluntarySwitches(p.pid) : 0;
  const threads0 = p.pid ? threadCpuSeconds(p.pid) : new Map();
  const drv0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const fail = (msg: string) => {
    errors++;
    if (errorSamples.length < 10) errorSamples.push(msg);
  };
  await Promise.all(
    clients.map(async (c, i) => {
      let k = (i * 13) % 20; // sessions start at different points of the mix
      while (performance.now() < deadline) {
        const s = statement(i, k++);
        const a = performance.now();
        try {
          await c.query(s.sql);
          if (s.deny && refused) fail(`the denied statement ran: ${s.sql}`);
          else allowed++;
        } catch (e) {
          const msg = (e as Error).message;
          if (s.deny && refused && msg.includes('42501') && msg.includes('sluice:')) denied++;
          else {
            fail(msg);
            if (msg === 'connection closed' || c.socket.destroyed) return;
          }
        }
        const b = performance.now();
        lat.push(b - a);
        const sec = Math.floor((b - t0) / 1000);
        buckets[sec] = (buckets[sec] ?? 0) + 1;
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const tx = allowed + denied;
  const drv = process.cpuUsage(drv0);
  const full = Array.from({ length: Math.floor(seconds) }, (_, i) => buckets[i] ?? 0);
  return {
    sessions: clients.length,
    seconds: wall,
    tx,
    allowed,
    denied,
    errors,
    errorSamples,
    tps: tx / wall,
    perSecond: full,
    latencyMs: { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: lat.reduce((a, x) => Math.max(a, x), 0) },
    proxyCpuUsPerTx: p.pid ? ((cpuSeconds(p.pid) - proxy0) * 1e6) / tx : NaN,
    pgCpuUsPerTx: ((cpuSeconds(pgPid) - pg0) * 1e6) / tx,
    driverCpuUsPerTx: (drv.user + drv.system) / tx,
    pgSwitchesPerTx: (voluntarySwitches(pgPid) - pgSw0) / tx,
    proxySwitchesPerTx: p.pid ? (voluntarySwitches(p.pid) - proxySw0) / tx : NaN,
    proxyThreadsUsPerTx: p.pid ? byThread(p.pid, threads0, threadCpuSeconds(p.pid), tx) : {},
  };
}

/** Memory of the gateway every second: the series and its peaks. */
function sampler(pid: number) {
  const series: { t: number; rss: number; anon: number }[] = [];
  const t0 = Date.now();
  const take = (): Mem => {
    const m = memory(pid);
    series.push({ t: Math.round((Date.now() - t0) / 100) / 10, rss: Math.round(m.rss * 10) / 10, anon: Math.round(m.anon * 10) / 10 });
    return m;
  };
  const timer = setInterval(take, 1000);
  return {
    series,
    take,
    stop: () => clearInterval(timer),
  };
}

/** CPU of Postgres and the gateway, in % of one core, over `ms` while the sessions sit idle. */
async function idleCpu(pgPid: number, proxyPid: number | undefined, ms: number): Promise<{ pg_pct: number; proxy_pct: number }> {
  const pg0 = cpuSeconds(pgPid);
  const px0 = proxyPid ? cpuSeconds(proxyPid) : 0;
  await sleep(ms);
  return { pg_pct: Math.max(0, ((cpuSeconds(pgPid) - pg0) * 1e5) / ms), proxy_pct: proxyPid ? ((cpuSeconds(proxyPid) - px0) * 1e5) / ms : NaN };
}

const closeAll = async (clients: WireClient[]) => {
  for (const c of clients) c.close();
  await sleep(500);
};

await runBench(async (b) => {
  const pg = await startCluster(b, [`max_connections = ${N + 100}`]);
  log(`loading ${ROWS} rows of customers…`);
  await loadPiiTable(pg, ROWS);
  await pg.sql('create table soak_log (id bigserial primary key, session int, k int, at timestamptz default now()); alter table soak_log owner to app', 'orders');
  const pgPid = postmasterPid(pg);
  const failures: string[] = [];

  // Direct: the same sessions and mix, for the ratio.
  let directIdle = { pg_pct: NaN, proxy_pct: NaN };
  /** The same sessions and mix straight to Postgres, for the ratio: run before and after the gateway, as the machine drifts. */
  const runDirect = async (when: string): Promise<Load | null> => {
    if (DIRECT_SECONDS <= 0) return null;
    const d = directPath(pg);
    const errs: string[] = [];
    const clients = await connectAll(d, N, errs);
    if (when === 'before') directIdle = await idleCpu(pgPid, undefined, 5000);
    log(`direct (${when}): ${clients.length} sessions open; ${DIRECT_SECONDS} s of load…`);
    const l = await drive(d, clients, DIRECT_SECONDS, pgPid, false, errs);
    await closeAll(clients);
    log(`direct (${when}): ${fmt(l.tx)} tx, ${fmt(l.tps)} TPS, ${l.errors} errors, Postgres ${fmt(l.pgCpuUsPerTx)} µs CPU/tx, ${l.pgSwitchesPerTx.toFixed(2)} sleeps/tx`);
    if (l.errors) failures.push(`direct (${when}): ${l.errors} errors (${l.errorSamples.join('; ')})`);
    return l;
  };
  const directBefore = await runDirect('before');

  // Through one fully governed gateway.
  const gw = await startGateway(b, pg, VARIANT);
  const mem = sampler(gw.pid!);
  await sleep(2000);
  const atStart = mem.take();
  const errs: string[] = [];
  const c0 = performance.now();
  const clients = await connectAll(gw, N, errs);
  const connectRate = clients.length / ((performance.now() - c0) / 1000);
  const upstream = Number((await pg.sql("select count(*) from pg_stat_activity where usename = 'app'")).trim());
  const withSessions = mem.take();
  const gwIdle = await idleCpu(pgPid, gw.pid, 5000);
  log(`idle sessions, 5 s: direct: Postgres ${directIdle.pg_pct.toFixed(1)}% of a core; ${VARIANT}: Postgres ${gwIdle.pg_pct.toFixed(1)}%, gateway ${gwIdle.proxy_pct.toFixed(1)}%`);
  log(`${VARIANT}: ${clients.length} sessions open (${upstream} upstream, ${fmt(connectRate)}/s); ${SECONDS} s of load…`);
  const loadStartIdx = mem.series.length - 1;
  const gl = await drive(gw, clients, SECONDS, pgPid, POLICY, errs);
  const atEndOfLoad = mem.take();
  const duringLoad = mem.series.slice(loadStartIdx);
  const peak = { rss: Math.max(...duringLoad.map((s) => s.rss)), anon: Math.max(...duringLoad.map((s) => s.anon)) };
  await closeAll(clients);
  log(`${VARIANT}: ${fmt(gl.tx)} tx, ${fmt(gl.tps)} TPS, ${gl.errors} errors, ${gl.denied} denied as expected, gateway ${fmt(gl.proxyCpuUsPerTx)} µs CPU/tx, Postgres ${fmt(gl.pgCpuUsPerTx)} µs CPU/tx, ${gl.pgSwitchesPerTx.toFixed(2)} sleeps/tx, gateway ${gl.proxySwitchesPerTx.toFixed(2)} sleeps/tx; gateway µs/tx by thread: ${JSON.stringify(gl.proxyThreadsUsPerTx)}`);
  if (gl.errors) failures.push(`${VARIANT}: ${gl.errors} errors (${gl.errorSamples.join('; ')})`);
  if (gl.tx === 0) failures.push(`${VARIANT}: no transactions`);

  // The recordings: every session closed, verified, counted.
  const cfg = await loadConfig(gw.configPath!);
  const store = RECORDING ? await openRecordingStore(cfg, { readOnly: true }) : null;
  let entries = store?.list() ?? [];
  for (let i = 0; store && i < 60 && entries.some((e) => e.status === 'live'); i++) {
    await sleep(500);
    entries = store.list();
  }
  const afterClose = mem.take();
  await sleep(3000);
  const settled = mem.take();
  mem.stop();
  const rec = { sessions: entries.length, live: 0, verified: 0, failed: 0, frames: 0, dropped: 0, statements: 0, allowed: 0, denied: 0, stored_mb: 0, verify_s: 0, failures: [] as string[] };
  const v0 = performance.now();
  for (const e of entries) {
    if (e.status === 'live') rec.live++;
    rec.dropped += e.dropped_frames;
    rec.statements += e.statements;
    rec.allowed += e.decisions.allow ?? 0;
    rec.denied += e.decisions.deny ?? 0;
    rec.stored_mb += e.stored_bytes / 2 ** 20;
    const v = store!.verify(e.id);
    rec.frames += v.frames;
    if (v.ok) rec.verified++;
    else {
      rec.failed++;
      if (rec.failures.length < 5) rec.failures.push(`${e.id}: ${v.reason}`);
    }
  }
  rec.verify_s = (performance.now() - v0) / 1000;
  await store?.close();
  // The CLI agrees on one of them.
  let cli = '';
  if (entries[0]) {
    const r = await run(process.execPath, [BIN, 'recordings', 'verify', entries[0].id, '--config', gw.configPath!]).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `FAILED: ${e.stdout ?? ''}${e.stderr ?? ''}` }));
    cli = r.stdout.trim();
  }
  log(`recordings: ${rec.sessions} sessions, ${rec.verified} intact, ${rec.failed} failed, ${rec.live} still live, ${fmt(rec.frames)} frames, ${rec.dropped} dropped; ${fmt(rec.statements)} statements (${fmt(rec.allowed)} allowed, ${fmt(rec.denied)} denied); verify ${rec.verify_s.toFixed(1)} s; CLI: ${cli}`);
  if (RECORDING) {
    if (rec.sessions !== clients.length) failures.push(`recordings: ${rec.sessions} sessions recorded, ${clients.length} opened`);
    if (rec.failed) failures.push(`recordings: ${rec.failed} failed verification (${rec.failures.join('; ')})`);
    if (rec.live) failures.push(`recordings: ${rec.live} sessions still live 30 s after their clients closed`);
    if (rec.dropped) failures.push(`recordings: ${rec.dropped} frames dropped`);
    if (rec.statements !== gl.tx) failures.push(`recordings: ${rec.statements} statements recorded, ${gl.tx} sent`);
    if (rec.denied !== gl.denied) failures.push(`recordings: ${rec.denied} denials recorded, ${gl.denied} refused`);
    if (!cli.startsWith('intact')) failures.push(`sluice recordings verify: ${cli}`);
  }

  // Masking is on: one row through the gateway, read with psql, is masked.
  const raw = piiRow(1);
  let seen = '';
  if (MASKING) {
    const r = await run(path.join(pgBinDir(), 'psql'), ['-X', '-At', '-c', 'select email, card_number, ssn from customers where id = 1'], {
      env: { ...process.env, PGHOST: gw.host, PGPORT: String(gw.port), PGUSER: gw.user, PGPASSWORD: gw.password, PGDATABASE: 'orders', PGSSLMODE: 'disable' },
    }).catch((e: Error) => ({ stdout: `psql failed: ${e.message}` }));
    seen = r.stdout.trim();
    const masked = seen.split('|').length === 3 && !seen.includes(raw[2]!) && !seen.includes(raw[3]!) && !seen.includes(raw[4]!);
    log(`masking check: ${raw.slice(2, 5).join('|')} reads ${seen}`);
    if (!masked) failures.push(`masking: row 1 read through the gateway as ${seen}`);
  }

  await gw.stop!();
  const directAfter = await runDirect('after');

  // Report.
  const directs = [directBefore, directAfter].filter((l): l is Load => l !== null);
  const directTps = directs.length ? directs.reduce((a, l) => a + l.tps, 0) / directs.length : NaN;
  const ratio = gl.tps / directTps;
  const spread = (xs: number[]) => (xs.length ? `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}` : 'n/a');
  const rows = [
    '| path | sessions | seconds | transactions | TPS | TPS per second, min–max | errors | denied as expected | latency p50 / p99 / max ms | proxy CPU µs/tx | Postgres CPU µs/tx | driver CPU µs/tx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [name, l] of [['direct, before', directBefore], [VARIANT_LABELS[VARIANT] ?? VARIANT, gl], ['direct, after', directAfter]] as const) {
    if (!l) continue;
    rows.push(
      `| ${name} | ${fmt(l.sessions)} | ${l.seconds.toFixed(1)} | ${fmt(l.tx)} | ${fmt(l.tps)} | ${spread(l.perSecond)} | ${l.errors} | ${fmt(l.denied)} | ${l.latencyMs.p50.toFixed(1)} / ${l.latencyMs.p99.toFixed(1)} / ${l.latencyMs.max.toFixed(0)} | ${Number.isNaN(l.proxyCpuUsPerTx) ? '–' : fmt(l.proxyCpuUsPerTx)} | ${fmt(l.pgCpuUsPerTx)} | ${fmt(l.driverCpuUsPerTx)} |`,
    );
  }
  const m1 = (x: number) => x.toFixed(0);
  const memRows = [
    '| gateway memory, MB | VmRSS | RssAnon |',
    '|---|---:|---:|',
    `| at start (no sessions) | ${m1(atStart.rss)} | ${m1(atStart.anon)} |`,
    `| ${fmt(clients.length)} sessions open, before the load | ${m1(withSessions.rss)} | ${m1(withSessions.anon)} |`,
    `| peak during the load (sampled every second) | ${m1(peak.rss)} | ${m1(peak.anon)} |`,
    `| at the end of the load | ${m1(atEndOfLoad.rss)} | ${m1(atEndOfLoad.anon)} |`,
    `| sessions closed, 3 s later | ${m1(settled.rss)} | ${m1(settled.anon)} |`,
  ];
  const verdict = failures.length ? `**FAIL**: ${failures.join('; ')}` : `**PASS**: 0 errors, ${rec.verified} of ${rec.sessions} recordings intact, 0 frames dropped, recorded statements = statements sent`;
  const md =
    `Soak: ${fmt(N)} concurrent sessions for ${SECONDS} s through one gateway (${VARIANT === 'sluice+all' ? 'fully governed: policy, masking, recording' : VARIANT}), each looping over ` +
    `a masked select of one \`customers\` row (17 in 20), an allowed insert (2 in 20) and a statement the policy denies (1 in 20; counted as denied, not as an error); ` +
    `one transaction = one statement; the same load direct for ${DIRECT_SECONDS} s before and after, for the ratio; ${machineLine()}\n\n` +
    `${rows.join('\n')}\n\n` +
    (directs.length ? `Sluice's TPS is ${ratio.toFixed(2)} of direct's (the mean of the direct runs). ` : '') +
    `Sessions opened at ${fmt(connectRate)} per second (${upstream} upstream sessions). CPU is utime+stime from /proc over the load (Postgres: the postmaster and its backends; driver: this process). ` +
    `Gateway CPU by thread, µs/tx: ${Object.entries(gl.proxyThreadsUsPerTx).map(([k, v]) => `${k === 'main' ? 'main thread' : k === 'node' ? 'other threads (recording writer, LMDB, GC)' : k} ${v}`).join(', ')}. ` +
    `Sleeps (voluntary context switches) per transaction: Postgres ${gl.pgSwitchesPerTx.toFixed(2)} through the gateway${directs.length ? `, ${directs.map((l) => l.pgSwitchesPerTx.toFixed(2)).join(' and ')} direct` : ''}; gateway ${gl.proxySwitchesPerTx.toFixed(2)}. ` +
    `With the ${fmt(clients.length)} sessions open and idle for 5 s: gateway ${gwIdle.proxy_pct.toFixed(1)}% of a core, Postgres ${gwIdle.pg_pct.toFixed(1)}%.\n\n` +
    `${memRows.join('\n')}\n\n` +
    `RssAnon leaves out file-backed pages: VmRSS minus RssAnon is mostly the recording store's memory map (LMDB), which the kernel can reclaim.\n\n` +
    `Recordings: ${fmt(rec.sessions)} sessions, ${fmt(rec.verified)} verified intact through the store API (hash chain and signed head, ${rec.verify_s.toFixed(1)} s), ${rec.failed} failed, ` +
    `${fmt(rec.frames)} frames, ${rec.dropped} dropped, ${fmt(rec.stored_mb, 1)} MB stored; statements recorded ${fmt(rec.statements)} (${fmt(rec.allowed)} allowed, ${fmt(rec.denied)} denied) ` +
    `against ${fmt(gl.tx)} sent (${fmt(gl.denied)} refused); \`sluice recordings verify\` on one: ${cli}.\n\n${verdict}\n`;
  writeResult('soak', md, {
    sessions: N,
    seconds: SECONDS,
    direct_seconds: DIRECT_SECONDS,
    mix: { masked_select: 17, insert: 2, denied: 1, of: 20 },
    direct_before: directBefore,
    direct_after: directAfter,
    idle_cpu_pct: { direct: directIdle, gateway: gwIdle },
    gateway: { variant: VARIANT, ...gl, share_of_direct: ratio, sessions_per_s: connectRate, upstream_sessions: upstream },
    memory_mb: { at_start: atStart, with_sessions: withSessions, peak_during_load: peak, end_of_load: atEndOfLoad, after_close: afterClose, settled, series: mem.series },
    recordings: { ...rec, cli },
    masking_check: { raw: raw.slice(2, 5).join('|'), seen },
    pass: failures.length === 0,
    failures,
  });
  if (failures.length) process.exitCode = 1;
});
