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
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { RecordingStore, type SessionRecorder } from '../src/recording/store.js';
import { Dir } from '../src/recording/types.js';

const SESSIONS = Number(process.env.REC_BENCH_SESSIONS ?? 4);
const ROUNDS = Number(process.env.REC_BENCH_ROUNDS ?? 3);
const CASES = [
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
  const store = await RecordingStore.open({ dir, masterKey: { id: 'k', key: randomBytes(32) }, signer, batchBytes: process.env.REC_BENCH_BATCH ? Number(process.env.REC_BENCH_BATCH) : undefined, onFailure: (e) => console.error('failure:', e.message) });
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
fs.rmSync(root, { recursive: true, force: true });

const md = [
  `# Recording store (${SESSIONS} concurrent sessions, medians of ${ROUNDS}; ${os.cpus().length} cores, load average ${load0} at start, Node ${process.version})`,
  '',
  '| frames | count | record() µs/frame (calling thread) | other main-thread µs/frame | frames/s to durable | MB/s | process CPU µs/frame (all threads) | stored bytes / payload byte | dropped | verify frames/s |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows,
  '',
].join('\n');
console.log(md);
fs.mkdirSync(path.join(import.meta.dirname, 'results'), { recursive: true });
fs.writeFileSync(path.join(import.meta.dirname, 'results', 'recording.md'), md);
fs.writeFileSync(path.join(import.meta.dirname, 'results', 'recording.json'), JSON.stringify({ sessions: SESSIONS, rounds: ROUNDS, results: json }, null, 2) + '\n');
