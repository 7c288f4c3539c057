// The session recording store (src/recording): round trips, concurrency, index queries, encryption
// at rest, tamper evidence, crash recovery after kill -9, a full store, retention, key rotation, audit.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { RecordingStore, type SessionRecorder } from '../src/recording/store.js';
import { Dir, type Frame, type SessionMeta, type StoreOptions } from '../src/recording/types.js';
import { signerFromSigningKey } from '../src/recording/signer.js';
import { openDbs } from '../src/recording/db.js';
import { batchAad, openBatch, sealBatch, unwrapDataKey } from '../src/recording/crypto.js';
import { frameKey, framePrefix } from '../src/recording/keys.js';
import { loadOrCreateSigningKey } from '../src/identity/signing-key.js';
import { DD } from '../src/recording/page-cache.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-rec-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const newDir = (): string => path.join(root, `store-${++dirs}`);

const signingKey = await loadOrCreateSigningKey(path.join(root, 'state'));
const signer = signerFromSigningKey(signingKey);
const master = { id: 'k1', key: randomBytes(32) };

let ids = 0;
function meta(over: Partial<SessionMeta> = {}): SessionMeta {
  return {
    id: `s${++ids}-${randomBytes(3).toString('hex')}`,
    protocol: 'postgres',
    target: 'orders-db',
    sub: 'alice@example.com',
    groups: ['analysts'],
    issuer: 'https://idp.example.com',
    claims: { email: 'alice@example.com' },
    client: '127.0.0.1:50000',
    started_at: new Date().toISOString(),
    ...over,
  };
}

async function open(over: Partial<StoreOptions> = {}): Promise<RecordingStore> {
  const store = await RecordingStore.open({ dir: newDir(), masterKey: master, signer, ...over });
  t.teardown(() => store.close());
  return store;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const all = (it: Iterable<Frame>): Frame[] => [...it];
const close = (r: SessionRecorder): Promise<void> => r.close({ reason: 'client disconnected', bytes_from_client: 0, bytes_to_client: 0 });

/** Deterministic payloads: a size mix of tiny, typical, batch-crossing and large frames. */
function payload(session: number, i: number): Buffer {
  const sizes = [0, 1, 5, 100, 1000, 4043, 9000, 16_308, 16_309, 16_314, 16_331, 40_000, 70_000];
  const n = i % 37 === 0 ? sizes[(i / 37) % sizes.length]! : (i * 7919 + session * 31) % 700;
  const b = Buffer.allocUnsafe(n);
  for (let j = 0; j < n; j++) b[j] = (i * 131 + j * 7 + session) & 255;
  return b;
}

for (const batchBytes of [undefined, 600]) t.test(`round trip (batchBytes ${batchBytes ?? 'default'}): both directions and events, byte-identical and in order`, async (t) => {
  const store = await open({ batchBytes });
  const m = meta();
  const r = store.start(m);
  t.equal(store.get(m.id)?.status, 'live');
  const want: { dir: Dir; payload: Buffer }[] = [];
  const reused = Buffer.alloc(200_000);
  for (let i = 0; i < 3000; i++) {
    const p = payload(1, i);
    // Callers hand in slices of buffers they reuse right after: record() must copy.
    p.copy(reused, 50);
    const dir = i % 3 === 0 ? Dir.ClientToGateway : Dir.GatewayToClient;
    r.record(dir, reused, 50, 50 + p.length);
    reused.fill(0xee, 50, 50 + p.length);
    want.push({ dir, payload: p });
    if (i % 500 === 0) {
      const ev = { event: 'statement', n: i, sql: `select ${i}` };
      r.event(ev);
      want.push({ dir: Dir.Event, payload: Buffer.from(JSON.stringify(ev)) });
    }
    if (i % 97 === 0) await tick();
  }
  r.count('allow');
  r.count('allow');
  r.count('deny');
  r.count(undefined, 5);
  await r.close({ reason: 'client disconnected', bytes_from_client: 123, bytes_to_client: 456 });
  r.record(Dir.ClientToGateway, Buffer.from('after close')); // ignored, no throw

  const got = all(store.frames(m.id));
  t.equal(got.length, want.length, 'every frame');
  let bad = -1;
  let lastT = 0;
  for (let i = 0; i < got.length; i++) {
    const f = got[i]!;
    if (f.seq !== i || f.dir !== want[i]!.dir || !f.payload.equals(want[i]!.payload) || f.t_us < lastT || f.session !== m.id) {
      bad = i;
      break;
    }
    lastT = f.t_us;
  }
  t.equal(bad, -1, 'seq, direction, bytes and time order match');

  const e = store.get(m.id)!;
  t.equal(e.status, 'closed');
  t.equal(e.close_reason, 'client disconnected');
  t.equal(e.bytes_from_client, 123);
  t.equal(e.bytes_to_client, 456);
  t.equal(e.statements, 8);
  t.same(e.decisions, { allow: 2, deny: 1 });
  t.equal(e.frames, want.length);
  t.equal(e.key_id, 'k1');
  t.equal(e.head?.frames, want.length);
  t.equal(e.head?.kid, signingKey.kid);
  t.ok(e.head?.signature);
  t.same(store.verify(m.id), { ok: true, frames: want.length });

  for (const from of [1, 37 * 9, 1234, want.length - 1]) {
    const part = all(store.frames(m.id, { fromSeq: from }));
    t.equal(part[0]?.seq, from, `fromSeq ${from} starts there`);
    t.equal(part.length, want.length - from);
  }
  t.throws(() => store.frames('nope'), /no recording for session nope/);
  t.throws(() => store.start({ ...m }), /already exists/);
});

t.test('interleaved concurrent sessions', async (t) => {
  const store = await open({ flushMs: 5 });
  const n = 6;
  const recs = Array.from({ length: n }, () => store.start(meta()));
  const counts = new Array<number>(n).fill(0);
  let seed = 7;
  for (let k = 0; k < 12_000; k++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const s = seed % n;
    recs[s]!.record(counts[s]! % 2 ? Dir.GatewayToClient : Dir.ClientToGateway, payload(s, counts[s]!));
    counts[s]!++;
    if (k % 50 === 0) await (k % 1000 === 0 ? sleep(6) : tick()); // partial batches too
  }
  await Promise.all(recs.map(close));
  for (let s = 0; s < n; s++) {
    const got = all(store.frames(recs[s]!.id));
    t.equal(got.length, counts[s]);
    t.ok(got.every((f, i) => f.seq === i && f.payload.equals(payload(s, i))), `session ${s} reads back byte-identical`);
    t.same(store.verify(recs[s]!.id), { ok: true, frames: counts[s] });
  }
});

t.test('list filters, newest first', async (t) => {
  const store = await open();
  const a = store.start(meta({ sub: 'alice', target: 'db1', started_at: '2024-01-01T10:00:00.000Z' }));
  const b = store.start(meta({ sub: 'bob', target: 'db2', started_at: '2024-02-01T10:00:00.000Z' }));
  const c = store.start(meta({ sub: 'alice', target: 'db2', started_at: '2024-03-01T10:00:00.000Z' }));
  const d = store.start(meta({ sub: 'carol', target: 'db1' }));
  b.count('deny');
  c.count('allow');
  d.count('review');
  const ids = (l: { id: string }[]): string[] => l.map((e) => e.id);
  t.same(ids(store.list()), [d.id, c.id, b.id, a.id], 'not yet committed sessions are listed too');
  await Promise.all([a, b, c].map(close));
  await store.flushed();
  t.same(ids(store.list()), [d.id, c.id, b.id, a.id]);
  t.same(ids(store.list({ sub: 'alice' })), [c.id, a.id]);
  t.same(ids(store.list({ target: 'db1' })), [d.id, a.id]);
  t.same(ids(store.list({ since: new Date('2024-02-01T10:00:00.000Z') })), [d.id, c.id, b.id], 'since is inclusive');
  t.same(ids(store.list({ until: new Date('2024-03-01T10:00:00.000Z') })), [b.id, a.id], 'until is exclusive');
  t.same(ids(store.list({ since: new Date('2024-01-15'), until: new Date('2024-02-15') })), [b.id]);
  t.same(ids(store.list({ status: 'live' })), [d.id]);
  t.same(ids(store.list({ status: 'closed', limit: 2 })), [c.id, b.id]);
  t.same(ids(store.list({ decision: 'deny' })), [b.id]);
  t.same(ids(store.list({ decision: 'review' })), [d.id], 'live counters are visible');
  t.same(ids(store.list({ limit: 1 })), [d.id]);
  t.equal(store.list({ sub: 'alice' })[0]!.decisions.allow, 1);
});

t.test('encryption at rest: recorded bytes are not in the LMDB files', async (t) => {
  const dir = newDir();
  const store = await RecordingStore.open({ dir, masterKey: master, signer });
  const secret = 'TOP-SECRET-4111111111111111-PATIENT-RECORD';
  const r = store.start(meta({ sub: 'visible-subject-marker' }));
  const line = Buffer.from(`row: ${secret}\n`);
  for (let i = 0; i < 2000; i++) r.record(i % 2 ? Dir.GatewayToClient : Dir.ClientToGateway, line);
  r.record(Dir.GatewayToClient, Buffer.from(secret.repeat(3000))); // spans batches
  r.event({ sql: `select '${secret}'` });
  store.appendAudit({ sub: 'alice', decision: 'allow', statement: `select '${secret}'` });
  await close(r);
  await store.close();
  const files = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)));
  const data = Buffer.concat(files);
  t.ok(data.length > 2000 * line.length, 'the recording is in the files');
  t.ok(data.includes('visible-subject-marker'), 'control: index metadata is searchable, so the search works');
  t.notOk(data.includes(secret), 'the recorded string is nowhere in the files');
  t.notOk(data.includes(secret.slice(0, 16)), 'not even a prefix of it');
  t.notOk(data.includes(Buffer.from(secret, 'utf16le')), 'nor in UTF-16');
});

t.test('tamper evidence', async (t) => {
  const dir = newDir();
  let store = await RecordingStore.open({ dir, masterKey: master, signer, batchBytes: 4072 });
  const mk = async (): Promise<string> => {
    const r = store.start(meta());
    for (let i = 0; i < 400; i++) r.record(Dir.GatewayToClient, Buffer.alloc(100, i & 255)); // 117 B a frame, 12 batches
    await close(r);
    return r.id;
  };
  const flipped = await mk();
  const dropped = await mk();
  const truncated = await mk();
  const swapped = await mk();
  const relabeled = await mk();
  const resealed = await mk();
  await store.close();

  // The first frame with bytes in a batch (a batch holds 34.5 frames of 117 bytes, so frames straddle them).
  const before = openDbs(dir, 1 << 20);
  const sealedBatch = (id: string, batch: number): Buffer => Buffer.from(before.frames.getBinary(frameKey(framePrefix(id), batch))!);
  const firstFrameIn = (id: string, batch: number): number => {
    const e = before.sessions.get(id)!;
    const plain = openBatch(unwrapDataKey(master.key, 'k1', id, e.wrapped_key), batchAad(Buffer.from(id), batch), sealedBatch(id, batch));
    return plain.readUInt16BE(0) > 0 ? plain.readUInt32BE(2) - 1 : plain.readUInt32BE(2);
  };
  const sealed = sealedBatch(flipped, 5);
  const want = { flipped: firstFrameIn(flipped, 5), dropped: firstFrameIn(dropped, 3), swapped: firstFrameIn(swapped, 2) };
  t.ok(want.flipped > 100);
  await before.env.close();

  // 1. One byte flipped in the data file, inside batch 5 of `flipped`.
  const file = path.join(dir, 'data.mdb');
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(sealed);
  t.ok(at > 0, 'found the batch in data.mdb');
  bytes[at + 1000] ^= 0x01;
  fs.writeFileSync(file, bytes);

  // 2–5. Edits through LMDB itself: a batch removed, the last batch removed, two batches swapped,
  // the index entry's subject changed.
  const raw = openDbs(dir, 1 << 20);
  await raw.frames.remove(frameKey(framePrefix(dropped), 3));
  const last = raw.sessions.get(truncated)!.batches - 1;
  await raw.frames.remove(frameKey(framePrefix(truncated), last));
  const s2 = raw.frames.getBinary(frameKey(framePrefix(swapped), 2))!;
  const s4 = raw.frames.getBinary(frameKey(framePrefix(swapped), 4))!;
  await raw.frames.put(frameKey(framePrefix(swapped), 2), Buffer.from(s4));
  await raw.frames.put(frameKey(framePrefix(swapped), 4), Buffer.from(s2));
  await raw.sessions.put(relabeled, { ...raw.sessions.get(relabeled)!, sub: 'mallory' });
  // 6. Someone holding the master key decrypts batch 3, changes a recorded byte and seals it again
  // (same nonce and AAD, so it authenticates): only the hash chain under the signed head catches it.
  const e6 = raw.sessions.get(resealed)!;
  const dk = unwrapDataKey(master.key, 'k1', resealed, e6.wrapped_key);
  const v6 = Buffer.from(raw.frames.getBinary(frameKey(framePrefix(resealed), 3))!);
  const p6 = openBatch(dk, batchAad(Buffer.from(resealed), 3), v6);
  p6[p6.length - 10] ^= 0x01;
  await raw.frames.put(frameKey(framePrefix(resealed), 3), sealBatch(dk, v6.subarray(1, 5), 3, batchAad(Buffer.from(resealed), 3), p6));
  await raw.env.close();

  store = await RecordingStore.open({ dir, masterKey: master, signer });
  t.teardown(() => store.close());
  const v1 = store.verify(flipped);
  t.match(v1, { ok: false, firstBadSeq: want.flipped, reason: /batch 5 fails authentication/ }, 'flipped byte: the batch and its first frame');
  t.throws(() => all(store.frames(flipped)), /batch 5 fails authentication/);
  t.match(store.verify(dropped), { ok: false, firstBadSeq: want.dropped, reason: /batch 3 is missing/ });
  t.match(store.verify(truncated), { ok: false, reason: /missing \(the signed head covers 400\)/ });
  t.match(store.verify(swapped), { ok: false, firstBadSeq: want.swapped, reason: /batch 2 fails authentication/ });
  t.match(store.verify(relabeled), { ok: false, reason: /signature does not match/ });
  t.equal(all(store.frames(resealed)).length, 400, 'the resealed batch reads back (its GCM tag is valid)');
  t.match(store.verify(resealed), { ok: false, frames: 400, reason: /recomputed chain does not match the signed head/ }, 'resealed batch: the chain');
});

t.test('backpressure: about 4 MiB in flight to the writer pauses the data path, nothing is dropped', async (t) => {
  const store = await open(); // a 64 MiB arena: the in-flight bound, not the arena, makes pressure
  const r = store.start(meta());
  const frame = Buffer.alloc(8192, 7);
  let n = 0;
  while (!r.pressure && n < 10_000) r.record(Dir.GatewayToClient, frame, 0, 8192 - (n++ % 3)); // no yield: nothing comes back
  const inFlight = store.stats().bufferedBytes;
  t.ok(r.pressure, `pressure after ${n} frames of 8 KiB`);
  t.ok(inFlight >= 4 << 20 && inFlight < 5 << 20, `${(inFlight / 1048576).toFixed(2)} MiB in flight`);
  await new Promise<void>((resolve) => r.whenDrained(resolve));
  t.notOk(r.pressure, 'drained');
  t.ok(store.stats().bufferedBytes <= 2.5 * (1 << 20), 'at most half of it still in flight');
  await close(r);
  t.equal(store.get(r.id)!.dropped_frames, 0);
  t.equal(all(store.frames(r.id)).length, n);
  t.same(store.verify(r.id), { ok: true, frames: n });
});

t.test('more sessions than slots: frames wait their turn for slots, none is dropped, the store never fails', async (t) => {
  const failures: Error[] = [];
  // The smallest arena: 64 slots for 300 sessions that each record before pausing.
  const store = await open({ bufferBytes: 64 * 32_715, onFailure: (e) => failures.push(e) });
  const sessions = Array.from({ length: 300 }, () => store.start(meta()));
  const sent = sessions.map(() => [] as Buffer[]);
  const pauses = sessions.map(() => 0);
  // Each session records a chunk, then waits while its recorder says so (as the relays do).
  await Promise.all(
    sessions.map(async (r, k) => {
      for (let i = 0; i < 12; i++) {
        const p = payload(k, i * 37 + 11); // sizes up to 70 kB
        r.record(Dir.GatewayToClient, p);
        r.record(Dir.Event, Buffer.from(`{"i":${i}}`));
        sent[k]!.push(p, Buffer.from(`{"i":${i}}`));
        if (r.pressure) {
          pauses[k]!++;
          await new Promise<void>((resolve) => r.whenDrained(resolve));
        }
      }
    }),
  );
  t.ok(pauses.filter((n) => n > 0).length > 200, `${pauses.filter((n) => n > 0).length} sessions paused at least once`);
  await Promise.all(sessions.map(close));
  t.same(failures, [], 'running out of slots is not a failure');
  t.notOk(store.failed);
  let bad = 0;
  for (const [k, r] of sessions.entries()) {
    const e = store.get(r.id)!;
    const got = all(store.frames(r.id));
    if (e.dropped_frames !== 0 || got.length !== sent[k]!.length || got.some((f, i) => !f.payload.equals(sent[k]![i]!)) || !store.verify(r.id).ok) bad++;
  }
  t.equal(bad, 0, 'every session stored whole, in order, and verifies');
});

t.test('a session that ignores pressure: its waiting frames are bounded, the excess is dropped with a gap', async (t) => {
  const failures: Error[] = [];
  const store = await open({ bufferBytes: 64 * 32_715, onFailure: (e) => failures.push(e) });
  const r = store.start(meta());
  const frame = Buffer.alloc(30_000, 3);
  for (let i = 0; i < 200; i++) r.record(Dir.GatewayToClient, frame); // 6 MB, no pause: more than the arena
  t.ok(r.pressure);
  await close(r);
  const e = store.get(r.id)!;
  t.ok(e.dropped_frames > 0 && e.dropped_frames < 200, `${e.dropped_frames} of 200 frames dropped`);
  const frames = all(store.frames(r.id));
  t.equal(frames.length, 200 - e.dropped_frames + 1);
  t.match(JSON.parse(frames.at(-1)!.payload.toString()), { event: 'recording.gap', frames: e.dropped_frames, reason: /did not pause/ });
  t.same(store.verify(r.id), { ok: true, frames: frames.length });
  t.same(failures, []);
});

t.test('a writer that commits nothing for stallMs counts as failed, and recovers when it writes again', async (t) => {
  const failures: Error[] = [];
  let recovered = 0;
  const dir = newDir();
  const store = await open({ dir, stallMs: 1500, onFailure: (e) => failures.push(e), onRecover: () => recovered++ });
  const r = store.start(meta());
  r.record(Dir.ClientToGateway, Buffer.from('before'));
  await store.flushed();
  // Another process holds LMDB's write lock for 4 s: the writer's next commit waits for it.
  const holder = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { open } from 'lmdb'; const env = open({ path: ${JSON.stringify(dir)}, maxDbs: 8 }); env.transactionSync(() => { process.stdout.write('locked\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 4000); }); process.exit(0);`],
    { cwd: path.resolve(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  const t0 = Date.now();
  for (let i = 0; i < 100; i++) r.record(Dir.GatewayToClient, Buffer.alloc(30_000, i));
  while (!store.failed && Date.now() - t0 < 10_000) await sleep(50);
  t.ok(store.failed, `failed after ${Date.now() - t0} ms`);
  t.match(failures[0]?.message, /^recording store is not writing: nothing committed for \d+ s/);
  await new Promise((resolve) => holder.once('exit', resolve));
  while (store.failed && Date.now() - t0 < 20_000) await sleep(50);
  t.notOk(store.failed, 'recovered once the lock was released');
  t.equal(recovered, 1);
  t.equal(failures.length, 1);
  const r2 = store.start(meta());
  r2.record(Dir.ClientToGateway, Buffer.from('after'));
  await close(r2);
  t.same(store.verify(r2.id), { ok: true, frames: 1 });
  await close(r);
});

const fincore = ['/usr/bin/fincore', '/bin/fincore'].find((p) => fs.existsSync(p));
// tmpfs keeps its pages whatever it is told: nothing to measure there.
const noPageCacheTest = !fincore || !DD ? 'needs util-linux fincore and coreutils dd' : fs.statfsSync(root).type === 0x01021994 ? `${root} is on tmpfs` : false;
for (const dropPageCache of [true, false]) {
  const title = dropPageCache ? 'page cache: after 64 MiB stored the store drops its file from the page cache' : 'page cache: dropPageCache false leaves it to the kernel';
  t.test(title, { skip: noPageCacheTest }, async (t) => {
    const dir = newDir();
    const store = await open({ dir, dropPageCache });
    const r = store.start(meta());
    const frame = randomBytes(32_000);
    const n = 3200; // ~100 MB
    for (let i = 0; i < n; i++) {
      r.record(Dir.GatewayToClient, frame);
      if (r.pressure) await new Promise<void>((resolve) => r.whenDrained(resolve));
    }
    await close(r);
    const cachedMiB = async (): Promise<number> => {
      const out = await new Promise<string>((resolve, reject) =>
        execFile(fincore!, ['--bytes', '--noheadings', '--output', 'RES', path.join(dir, 'data.mdb')], (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      return Number(out.trim()) / 1048576;
    };
    let cached = await cachedMiB();
    for (let i = 0; i < 50 && dropPageCache && cached > 70; i++) {
      await sleep(100);
      cached = await cachedMiB();
    }
    const size = fs.statSync(path.join(dir, 'data.mdb')).size / 1048576;
    t.ok(size > 95, `${size.toFixed(0)} MiB stored`);
    if (dropPageCache) t.ok(cached < 70, `${cached.toFixed(0)} MiB of it in the page cache`);
    else t.ok(cached > 90, `${cached.toFixed(0)} MiB of it in the page cache`);
    t.same(store.verify(r.id), { ok: true, frames: n }, 'every frame reads back');
  });
}

t.test('crash: kill -9 while recording; committed frames survive, the session is interrupted', async (t) => {
  const dir = newDir();
  const stateDir = path.join(root, 'state');
  const child = path.join(root, 'crash-child.mts');
  const storeUrl = new URL('../src/recording/store.ts', import.meta.url).href;
  const keyUrl = new URL('../src/identity/signing-key.ts', import.meta.url).href;
  fs.writeFileSync(
    child,
    `
import { createPublicKey, sign, verify } from 'node:crypto';
import { RecordingStore } from ${JSON.stringify(storeUrl)};
import { loadOrCreateSigningKey } from ${JSON.stringify(keyUrl)};
const k = await loadOrCreateSigningKey(${JSON.stringify(stateDir)});
const pub = createPublicKey(k.privateKey);
const signer = { kid: k.kid, sign: (d) => sign(null, d, k.privateKey), verify: (d, s) => verify(null, d, pub, s) };
const store = await RecordingStore.open({ dir: ${JSON.stringify(dir)}, masterKey: { id: 'k1', key: Buffer.from(process.env.MASTER, 'hex') }, signer });
const done = store.start({ id: 'done', protocol: 'postgres', target: 't', sub: 'u', groups: [], issuer: 'i', claims: {}, client: 'c', started_at: new Date().toISOString() });
for (let i = 0; i < 10; i++) done.record(0, Buffer.from('closed session frame ' + i));
await done.close({ reason: 'ok', bytes_from_client: 0, bytes_to_client: 0 });
const r = store.start({ id: 'victim', protocol: 'postgres', target: 't', sub: 'u', groups: [], issuer: 'i', claims: {}, client: 'c', started_at: new Date().toISOString() });
let seq = 0;
for (;;) {
  for (let i = 0; i < 200; i++, seq++) {
    const body = Buffer.alloc(seq % 50 === 0 ? 6000 : 60 + (seq % 200), seq & 255);
    body.write('frame ' + seq + ';');
    r.record(seq % 2, body);
  }
  if (seq % 2000 === 0) { await store.flushed(); process.stdout.write('flushed ' + seq + '\\n'); }
  else await new Promise((res) => setImmediate(res));
}
`,
  );
  const proc = spawn(process.execPath, ['--import', 'tsx', child], { env: { ...process.env, MASTER: master.key.toString('hex') }, stdio: ['ignore', 'pipe', 'inherit'] });
  let durable = 0;
  const exited = new Promise<void>((resolve, reject) => {
    proc.on('exit', () => resolve());
    proc.on('error', reject);
  });
  await new Promise<void>((resolve) => {
    proc.stdout.on('data', (d: Buffer) => {
      for (const m of d.toString().matchAll(/flushed (\d+)/g)) durable = Number(m[1]);
      if (durable >= 10_000) resolve();
    });
    void exited.then(() => resolve());
  });
  // While the child records, its store is not ours to open for writing; reading works.
  await t.rejects(RecordingStore.open({ dir, masterKey: master, signer }), new RegExp(`in use by process ${proc.pid}`));
  const reader = await RecordingStore.open({ dir, masterKey: master, signer, readOnly: true });
  t.equal(reader.get('victim')?.status, 'live', 'read-only: the live session of another process');
  const seen = all(reader.frames('victim'));
  t.ok(seen.length >= durable && seen.every((f, i) => f.seq === i), `read-only: ${seen.length} committed frames, in order`);
  t.match(reader.verify('victim'), { ok: true });
  t.throws(() => reader.start(meta()), /read-only/);
  t.throws(() => reader.prune({ maxBytes: 0 }), /read-only/);
  await reader.close();
  proc.kill('SIGKILL'); // mid-write: it kept recording after its last flush
  await exited;
  t.equal(proc.signalCode, 'SIGKILL');
  t.ok(durable >= 10_000, `child made ${durable} frames durable before the kill`);

  const store = await RecordingStore.open({ dir, masterKey: master, signer });
  t.teardown(() => store.close());
  const e = store.get('victim')!;
  t.equal(e.status, 'interrupted');
  t.match(e.close_reason, /interrupted/);
  t.ok(e.frames >= durable, `${e.frames} frames recovered, at least the ${durable} flushed`);
  t.ok(e.head?.signature, 'recovered head is signed');
  const got = all(store.frames('victim'));
  t.equal(got.length, e.frames);
  let bad = -1;
  for (let i = 0; i < got.length; i++) {
    const f = got[i]!;
    const want = Buffer.alloc(i % 50 === 0 ? 6000 : 60 + (i % 200), i & 255);
    want.write('frame ' + i + ';');
    if (f.seq !== i || f.dir !== i % 2 || !f.payload.equals(want)) {
      bad = i;
      break;
    }
  }
  t.equal(bad, -1, 'every recovered frame is intact and in order');
  t.same(store.verify('victim'), { ok: true, frames: e.frames });
  t.equal(store.get('done')?.status, 'closed');
  t.same(store.verify('done'), { ok: true, frames: 10 });
  // The store still works.
  const again = store.start(meta());
  again.record(Dir.ClientToGateway, Buffer.from('after the crash'));
  await close(again);
  t.equal(all(store.frames(again.id))[0]?.payload.toString(), 'after the crash');
});

t.test('a full store: onFailure once, failed, record() keeps returning; prune recovers', async (t) => {
  const failures: Error[] = [];
  let recovered = 0;
  const store = await open({ mapSize: 512 * 1024, onFailure: (e) => failures.push(e), onRecover: () => recovered++ });
  const r = store.start(meta());
  const frame = Buffer.alloc(8192, 1);
  let i = 0;
  const deadline = Date.now() + 20_000;
  for (; !store.failed && Date.now() < deadline; i++) {
    r.record(Dir.GatewayToClient, frame);
    if (i % 8 === 0) await sleep(1);
  }
  t.ok(store.failed, `failed after ${i} frames of 8 KiB`);
  t.equal(failures.length, 1);
  t.match(failures[0]!.message, /^recording store is full \(map size 524288 bytes\): /);
  t.doesNotThrow(() => {
    for (let k = 0; k < 100; k++) r.record(Dir.GatewayToClient, frame);
  }, 'record() does not throw');
  r.event({ still: 'fine' });
  await sleep(50);
  t.equal(failures.length, 1, 'one call per episode');
  await close(r);
  const e = store.get(r.id)!;
  t.equal(e.status, 'closed');
  t.ok(e.dropped_frames >= 100, `${e.dropped_frames} frames dropped`);
  const frames = all(store.frames(r.id));
  const gap = JSON.parse(frames[frames.length - 1]!.payload.toString());
  t.match(gap, { event: 'recording.gap', frames: e.dropped_frames });
  t.same(store.verify(r.id), { ok: true, frames: frames.length }, 'what was stored verifies, the gap is explicit');

  t.same(store.prune({ maxBytes: 0 }).sessions, 1);
  await store.flushed();
  t.notOk(store.failed, 'writable again after prune');
  t.equal(recovered, 1);
  const r2 = store.start(meta());
  r2.record(Dir.ClientToGateway, Buffer.from('hello'));
  await close(r2);
  t.equal(all(store.frames(r2.id)).length, 1);
});

t.test('prune by age and by size; never live sessions', async (t) => {
  const store = await open();
  const mk = async (frames: number): Promise<string> => {
    const r = store.start(meta());
    for (let i = 0; i < frames; i++) r.record(Dir.GatewayToClient, Buffer.alloc(1000, i));
    await close(r);
    return r.id;
  };
  const a = await mk(100);
  const b = await mk(100);
  await sleep(20);
  const cut = new Date();
  await sleep(5);
  const c = await mk(100);
  const live = store.start(meta({ started_at: '2020-01-01T00:00:00.000Z' }));
  live.record(Dir.ClientToGateway, Buffer.from('still here'));
  const size = store.get(a)!.stored_bytes;
  t.ok(size >= 100 * 1000, `stored_bytes ${size}`);
  const sizeAB = size + store.get(b)!.stored_bytes;

  const p = store.prune({ olderThan: cut });
  t.same(p, { sessions: 2, bytes: sizeAB }, 'a and b');
  t.equal(store.get(a), undefined);
  t.equal(store.get(b), undefined);
  await store.flushed();
  t.same(
    store.list().map((e) => e.id),
    [c, live.id],
  );
  t.throws(() => store.frames(a), /no recording/);
  const sizeC = store.get(c)!.stored_bytes;
  t.same(store.prune({ olderThan: new Date(Date.now() + 60_000) }), { sessions: 1, bytes: sizeC }, 'live session kept');
  await store.flushed();

  const d = await mk(50);
  const e = await mk(50);
  const f = await mk(50);
  const each = store.get(d)!.stored_bytes;
  const r = store.prune({ maxBytes: 2 * each + store.get(live.id)!.stored_bytes });
  t.same(r, { sessions: 1, bytes: each }, 'oldest first');
  await store.flushed();
  t.same(
    store.list().map((x) => x.id),
    [f, e, live.id],
  );
  t.same(store.prune({ maxBytes: 0 }).sessions, 2);
  await store.flushed();
  t.same(
    store.list().map((x) => x.id),
    [live.id],
  );
  await store.flushed();
  t.equal(all(store.frames(live.id))[0]?.payload.toString(), 'still here');
});

t.test('master key rotation: old sessions stay readable with oldKeys', async (t) => {
  const dir = newDir();
  const k1 = master;
  const k2 = { id: 'k2', key: randomBytes(32) };
  let store = await RecordingStore.open({ dir, masterKey: k1, signer });
  const r1 = store.start(meta());
  r1.record(Dir.ClientToGateway, Buffer.from('under k1'));
  await close(r1);
  store.appendAudit({ sub: 'alice', decision: 'allow', n: 1 });
  await store.close();

  store = await RecordingStore.open({ dir, masterKey: k2, oldKeys: { k1: k1.key }, signer });
  const r2 = store.start(meta());
  r2.record(Dir.ClientToGateway, Buffer.from('under k2'));
  await close(r2);
  store.appendAudit({ sub: 'alice', decision: 'allow', n: 2 });
  await store.flushed();
  t.equal(store.get(r1.id)?.key_id, 'k1');
  t.equal(store.get(r2.id)?.key_id, 'k2');
  t.equal(all(store.frames(r1.id))[0]?.payload.toString(), 'under k1');
  t.equal(all(store.frames(r2.id))[0]?.payload.toString(), 'under k2');
  t.same(store.verify(r1.id), { ok: true, frames: 1 });
  t.same(
    store.audit().map((e) => e.n),
    [2, 1],
  );
  await store.close();

  store = await RecordingStore.open({ dir, masterKey: k2, signer });
  t.teardown(() => store.close());
  t.equal(all(store.frames(r2.id))[0]?.payload.toString(), 'under k2');
  t.throws(() => store.frames(r1.id), /master key "k1" is needed .* oldKeys/);
  t.throws(() => store.audit(), /master key "k1" is needed/);
  t.equal(store.audit({ limit: 1 })[0]?.n, 2);
});

t.test('audit trail: append and query', async (t) => {
  const store = await open();
  store.appendAudit({ sub: 'alice', target: 'db1', decision: 'allow', statement: 'select 1' });
  store.appendAudit({ sub: 'bob', target: 'db1', decision: 'deny', statement: 'drop table x' });
  store.appendAudit({ sub: 'alice', target: 'db2', decision: 'review', statement: 'delete from y' });
  await sleep(15);
  const mid = new Date();
  await sleep(5);
  store.appendAudit({ sub: 'alice', target: 'db1', decision: 'deny', statement: 'truncate z' });
  store.appendAudit({ event: 'session.start', sub: 'carol', target: 'db3', ts: '2030-01-01T00:00:00.000Z' });
  await store.flushed();
  const st = (l: Record<string, unknown>[]): unknown[] => l.map((e) => e.statement ?? e.event);
  t.same(st(store.audit()), ['session.start', 'truncate z', 'delete from y', 'drop table x', 'select 1'], 'newest first');
  t.same(st(store.audit({ sub: 'alice' })), ['truncate z', 'delete from y', 'select 1']);
  t.same(st(store.audit({ target: 'db1' })), ['truncate z', 'drop table x', 'select 1']);
  t.same(st(store.audit({ decision: 'deny' })), ['truncate z', 'drop table x']);
  t.same(st(store.audit({ sub: 'alice', decision: 'deny' })), ['truncate z']);
  t.same(st(store.audit({ since: mid })), ['session.start', 'truncate z']);
  t.same(st(store.audit({ until: mid })), ['delete from y', 'drop table x', 'select 1']);
  t.same(st(store.audit({ limit: 2 })), ['session.start', 'truncate z']);
  t.equal(store.audit({ sub: 'carol' })[0]?.ts, '2030-01-01T00:00:00.000Z', 'a given ts is kept');
  t.match(store.audit({ limit: 1, sub: 'bob' })[0], { sub: 'bob', decision: 'deny', ts: String });
});

t.test('closing the store closes live sessions', async (t) => {
  const dir = newDir();
  let store = await RecordingStore.open({ dir, masterKey: master, signer });
  const r = store.start(meta());
  r.record(Dir.ClientToGateway, Buffer.from('abc'));
  r.record(Dir.GatewayToClient, Buffer.from('de'));
  t.doesNotThrow(() => r.record(Dir.ClientToGateway, Buffer.from('xyz'), 2, 99), 'a range past the end is clamped, not thrown');
  await store.close();
  t.doesNotThrow(() => r.record(Dir.ClientToGateway, Buffer.from('late')));
  store = await RecordingStore.open({ dir, masterKey: master, signer });
  t.teardown(() => store.close());
  t.match(store.get(r.id), { status: 'closed', close_reason: 'recording store closed', frames: 3, bytes_from_client: 4, bytes_to_client: 2 });
  t.same(store.verify(r.id), { ok: true, frames: 3 });
  t.same(
    all(store.frames(r.id)).map((f) => f.payload.toString()),
    ['abc', 'de', 'z'],
  );
});

t.test('one owner per store', async (t) => {
  const dir = newDir();
  const store = await RecordingStore.open({ dir, masterKey: master, signer });
  await t.rejects(RecordingStore.open({ dir, masterKey: master, signer }), /already open in this process/);
  await store.close();
  const again = await RecordingStore.open({ dir, masterKey: master, signer });
  await again.close();
  await t.rejects(RecordingStore.open({ dir: newDir(), masterKey: { id: 'x', key: Buffer.alloc(16) }, signer }), /masterKey.key must be 32 bytes/);
  await t.rejects(RecordingStore.open({ dir: newDir(), masterKey: master, signer, readOnly: true }), /no recording store at/);
  // A store of another format (1 chained every frame) is refused, with what to do.
  const old = newDir();
  const raw = openDbs(old, 1 << 20);
  await raw.meta.put('format', 1);
  await raw.env.close();
  await t.rejects(RecordingStore.open({ dir: old, masterKey: master, signer }), /has format 1; this Sluice reads format 2\. Move that directory aside/);
});
