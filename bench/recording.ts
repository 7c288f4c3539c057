// Session recording store throughput and data-path cost.
//   node --import tsx bench/recording.ts
// For 100-byte and 8 KiB frames, SESSIONS concurrent sessions recording round-robin:
// - record() cost on the calling thread (µs/frame): time spent inside record() calls;
// - end-to-end throughput (frames/s, MB/s) from the first record() to flushed() (durable);
// - process CPU (all threads: main, writer, LMDB's commit thread) per frame;
// - main-thread CPU per frame outside record() (posting batches, flush timers, event loop).
// The producer yields to the event loop every 256 frames (as a relay does between socket reads)
// and waits while more than 4 MiB wait for the writer, so the figures are sustained
// rates with no frame dropped. Env: REC_BENCH_SESSIONS (4), REC_BENCH_SMALL (1000000),
// REC_BENCH_LARGE (60000), REC_BENCH_ROUNDS (3, the median is reported).
//
// A third case paces a pgbench -S-like load instead of going flat out: REC_BENCH_TPS (20000)
// transactions per second over 8 sessions for REC_BENCH_PACED_SECONDS (10, after 2 s of warm-up), each a 64-byte query
// and a 69-byte result frame, recorded every 2 ms. It reports CPU per transaction by thread, from
// /proc: the main thread (minus the same pacing loop without record() calls) and the other threads
// (writer, LMDB's commits, GC helpers). This is what recording costs the gateway at that rate.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { RecordingStore, type SessionRecorder } from '../src/recording/store.js';
import { Dir } from '../src/recording/types.js';
import { writeResult } from './lib/env.js';

const SESSIONS = Number(process.env.REC_BENCH_SESSIONS ?? 4);
/** REC_BENCH_BATCH: the store's batchBytes (default: the store's own). */
const BATCH = process.env.REC_BENCH_BATCH ? Number(process.env.REC_BENCH_BATCH) : undefined;
const ROUNDS = Number(process.env.REC_BENCH_ROUNDS ?? 3);
const CASES = process.env.REC_BENCH_PACED_ONLY ? [] : [
  { name: '100 B frames', size: 100, frames: Number(process.env.REC_BENCH_SMALL ?? 1_000_000) },
  { name: '8 KiB frames', size: 8192, frames: Number(process.env.REC_BENCH_LARGE ?? 60_000) },
];

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = { kid: 'bench', sign: (d: Buffer) => sign(null, d, privateKey), verify: (d: Buffer, s: Buffer) => verify(null, d, publicKey, s) };
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-rec-bench-'));

interface Result {
  recordUs: number;
  framesPerSec: number;
  mbPerSec: number;
  cpuUsPerFrame: number;
  mainOtherUsPerFrame: number;
  dropped: number;
  storedBytesPerPayloadByte: number;
  verifyFramesPerSec: number;
}

async function run(size: number, frames: number, round: number): Promise<Result> {
  const dir = path.join(root, `${size}-${round}`);
  const store = await RecordingStore.open({ dir, masterKey: { id: 'k', key: randomBytes(32) }, signer, batchBytes: BATCH, onFailure: (e) => console.error('failure:', e.message) });
  const recs: SessionRecorder[] = [];
  for (let s = 0; s < SESSIONS; s++) {
    recs.push(
      store.start({ id: `bench-${size}-${round}-${s}`, protocol: 'postgres', target: 'db', sub: 'bench', groups: [], issuer: 'x', claims: {}, client: 'c', started_at: new Date().toISOString() }),
    );
  }
  // Reused input buffers, as a relay's socket chunks: record() must copy.
  const chunk = randomBytes(size * 64);
  const half = Math.min(store.stats().bufferBytes / 2, 4 * 1024 * 1024); // backlog a busy relay might build
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let inRecord = 0;
  let i = 0;
  while (i < frames) {
    const a = performance.now();
    const stop = Math.min(frames, i + 256);
    for (; i < stop; i++) {
      const off = (i & 63) * size;
      recs[i % SESSIONS]!.record((i & 1) as Dir, chunk, off, off + size);
    }
    inRecord += performance.now() - a;
    await new Promise((r) => setImmediate(r));
    while (store.stats().bufferedBytes > half) await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(recs.map((r) => r.close({ reason: 'bench', bytes_from_client: 0, bytes_to_client: 0 })));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  let dropped = 0;
  let stored = 0;
  for (const r of recs) {
    const e = store.get(r.id)!;
    dropped += e.dropped_frames;
    stored += e.stored_bytes;
  }
  const v0 = performance.now();
  const v = store.verify(recs[0]!.id);
  if (!v.ok) throw new Error(`verify failed: ${v.reason}`);
  const verifyFramesPerSec = v.frames / ((performance.now() - v0) / 1000);
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const mainActiveMs = elu.active;
  return {
    recordUs: (inRecord * 1000) / frames,
    framesPerSec: frames / wall,
    mbPerSec: (frames * size) / wall / 1e6,
    cpuUsPerFrame: (cpu.user + cpu.system) / frames,
    mainOtherUsPerFrame: ((mainActiveMs - inRecord) * 1000) / frames,
    dropped,
    storedBytesPerPayloadByte: stored / (frames * size),
    verifyFramesPerSec,
  };
}

/** CPU time in µs of this process's threads: the main thread (tid = pid) and all the others. */
function threadCpu(): { main: number; other: number; per: Record<string, number> } {
  let main = 0;
  let other = 0;
  const per: Record<string, number> = {};
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      // schedstat: ns on the CPU (stat's utime+stime count 10 ms ticks).
      const us = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
      per[tid] = us;
      if (Number(tid) === process.pid) main += us;
      else other += us;
    } catch {
      // the thread ended
    }
  }
  return { main, other, per };
}

interface Paced {
  tps: number;
  mainUsPerTx: number;
  otherUsPerTx: number;
  totalUsPerTx: number;
  dropped: number;
}

const PACED_TPS = Number(process.env.REC_BENCH_TPS ?? 20_000);
const PACED_SECONDS = Number(process.env.REC_BENCH_PACED_SECONDS ?? 10);

/** pgbench -S-like pacing: 8 sessions, a query and a result frame per transaction. record=false: the loop alone. */
async function paced(record: boolean, round: number): Promise<Paced> {
  const dir = path.join(root, `paced-${record}-${round}`);
  const store = await RecordingStore.open({ dir, masterKey: { id: 'k', key: randomBytes(32) }, signer, bufferBytes: 16 << 20 });
  const recs: SessionRecorder[] = [];
  for (let s = 0; s < 8; s++) {
    recs.push(store.start({ id: `paced-${round}-${s}`, protocol: 'postgres', target: 'db', sub: 'bench', groups: [], issuer: 'x', claims: {}, client: 'c', started_at: new Date().toISOString() }));
  }
  const query = Buffer.from('Q\0\0\0\x3fSELECT abalance FROM pgbench_accounts WHERE aid = 0123456;\0'.padEnd(64, ' '));
  const result = randomBytes(69);
  // The first WARMUP seconds (JIT compilation, the writer's module loading) are not measured.
  const WARMUP = 2;
  const t0 = performance.now();
  let c0 = threadCpu();
  let measuring = false;
  let done = 0;
  let sink = 0;
  const warm = PACED_TPS * WARMUP;
  const total = warm + PACED_TPS * PACED_SECONDS;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      if (!measuring && done >= warm) {
        measuring = true;
        c0 = threadCpu();
      }
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * PACED_TPS));
      for (; done < due; done++) {
        const r = recs[done & 7]!;
        if (record) {
          r.record(Dir.ClientToGateway, query);
          r.record(Dir.GatewayToClient, result);
          if (r.pressure) sink++;
        } else sink += query[done & 63]! + result[done & 63]!;
      }
      if (done >= total) resolve();
      else setTimeout(tick, 2);
    };
    tick();
  });
  const wall = (performance.now() - t0) / 1000 - WARMUP;
  await store.flushed();
  const c1 = threadCpu();
  if (process.env.REC_BENCH_THREADS) console.error(record, JSON.stringify(Object.fromEntries(Object.entries(c1.per).map(([k, v]) => [k, ((v - (c0.per[k] ?? 0)) / (total - warm)).toFixed(2)]).filter(([, v]) => Number(v) > 0.05))));
  let dropped = 0;
  for (const r of recs) dropped += r.dropped;
  await Promise.all(recs.map((r) => r.close({ reason: 'bench', bytes_from_client: 0, bytes_to_client: 0 })));
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  void sink;
  const n = total - warm;
  const main = (c1.main - c0.main) / n;
  const other = (c1.other - c0.other) / n;
  return { tps: n / wall, mainUsPerTx: main, otherUsPerTx: other, totalUsPerTx: main + other, dropped };
}

const load0 = os.loadavg()[0]!.toFixed(1);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const rows: string[] = [];
const json: Record<string, Result> = {};
for (const c of CASES) {
  const results: Result[] = [];
  for (let r = 0; r < ROUNDS; r++) results.push(await run(c.size, c.frames, r));
  const m = (k: keyof Result): number => median(results.map((x) => x[k]));
  const res: Result = {
    recordUs: m('recordUs'),
    framesPerSec: m('framesPerSec'),
    mbPerSec: m('mbPerSec'),
    cpuUsPerFrame: m('cpuUsPerFrame'),
    mainOtherUsPerFrame: m('mainOtherUsPerFrame'),
    dropped: Math.max(...results.map((x) => x.dropped)),
    storedBytesPerPayloadByte: m('storedBytesPerPayloadByte'),
    verifyFramesPerSec: m('verifyFramesPerSec'),
  };
  json[c.name] = res;
  rows.push(
    `| ${c.name} | ${c.frames} | ${res.recordUs.toFixed(3)} | ${res.mainOtherUsPerFrame.toFixed(2)} | ${Math.round(res.framesPerSec).toLocaleString('en')} | ${res.mbPerSec.toFixed(1)} | ${res.cpuUsPerFrame.toFixed(2)} | ${res.storedBytesPerPayloadByte.toFixed(2)} | ${res.dropped} | ${Math.round(res.verifyFramesPerSec).toLocaleString('en')} |`,
  );
}
// Paced: interleave the loop alone and with recording, rounds × 2.
const base: Paced[] = [];
const withRec: Paced[] = [];
for (let r = 0; r < ROUNDS; r++) {
  base.push(await paced(false, r));
  withRec.push(await paced(true, r));
}
const pm = (xs: Paced[], k: keyof Paced): number => median(xs.map((x) => x[k]));
const pacedRes = {
  tps: pm(withRec, 'tps'),
  mainUsPerTx: pm(withRec, 'mainUsPerTx') - pm(base, 'mainUsPerTx'),
  otherUsPerTx: pm(withRec, 'otherUsPerTx') - pm(base, 'otherUsPerTx'),
  totalUsPerTx: pm(withRec, 'totalUsPerTx') - pm(base, 'totalUsPerTx'),
  dropped: Math.max(...withRec.map((x) => x.dropped)),
};
fs.rmSync(root, { recursive: true, force: true });

const md = [
  `# Recording store (${SESSIONS} concurrent sessions, medians of ${ROUNDS}; ${os.cpus().length} cores, load average ${load0} at start, Node ${process.version})`,
  '',
  '| frames | count | record() µs/frame (calling thread) | other main-thread µs/frame | frames/s to durable | MB/s | process CPU µs/frame (all threads) | stored bytes / payload byte | dropped | verify frames/s |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows,
  '',
  `pgbench -S-like pacing: ${PACED_TPS} transactions/s over 8 sessions for ${PACED_SECONDS} s, a 64-byte and a 69-byte frame each; CPU µs per transaction by thread (/proc/…/schedstat), the pacing loop alone subtracted (medians of ${ROUNDS}, interleaved).`,
  '',
  '| transactions/s | main thread µs/tx | other threads (writer, LMDB, GC) µs/tx | process µs/tx | dropped |',
  '|---|---|---|---|---|',
  `| ${Math.round(pacedRes.tps).toLocaleString('en')} | ${pacedRes.mainUsPerTx.toFixed(2)} | ${pacedRes.otherUsPerTx.toFixed(2)} | ${pacedRes.totalUsPerTx.toFixed(2)} | ${pacedRes.dropped} |`,
  '',
].join('\n');
// Into BENCH_OUT like every other step (it wrote to bench/results whatever BENCH_OUT said).
writeResult('recording', md, { sessions: SESSIONS, rounds: ROUNDS, batch_bytes: BATCH ?? 'default', results: json, paced: { tps_target: PACED_TPS, seconds: PACED_SECONDS, ...pacedRes } });
