// The recording store's writer thread: seals batches, hashes each sealed value into its session's
// chain and writes them with lmdb-js async puts. Everything costly in recording happens here, off the
// thread that relays traffic.
//
// Batches arrive through the shared ring (protocol.ts) and are not written at once: they wait in
// their arena slots until DRAIN_MS after the first one, DRAIN_SLOTS of them, or a message that must
// see them (close, flush, prune, shutdown, audit), and are then sealed and put in one event-loop turn,
// which lmdb-js commits as one transaction. At database-session rates this makes one commit and one
// wakeup of this thread per DRAIN_MS instead of one per batch.

import { parentPort, workerData } from 'node:worker_threads';
import { chainBatchInPlace, chainStart } from './chain.js';
import { batchAad, SEAL_OVERHEAD, sealAudit, sealBatch } from './crypto.js';
import { openDbs, EMPTY, type StoredAudit } from './db.js';
import { PageCacheDropper } from './page-cache.js';
import { auditKey as auditDbKey, framePrefix, frameKey, frameRange, timeKey } from './keys.js';
import { BatchRing, storedCost, type FromWriter, type ToWriter, type WriterInit } from './protocol.js';
import type { SessionIndexEntry } from './types.js';

const init = workerData as WriterInit;
const port = parentPort!;
const dbs = openDbs(init.dir, init.mapSize);
const arena = Buffer.from(init.arena);
const ring = new BatchRing(init.ring, 'writer');
const auditKey = Buffer.from(init.auditKey);
const auditTail = Buffer.from(crypto.getRandomValues(new Uint8Array(4)));

interface Live {
  entry: SessionIndexEntry;
  idBuf: Buffer;
  prefix: Buffer;
  key: Buffer;
  noncePrefix: Buffer;
  /** chain state: h_b after the batches sealed so far */
  hash: Buffer;
  /** frames complete in the batches sealed so far */
  frames: number;
  dirty: boolean;
  /** close received: no more checkpoints, the signed entry follows (finish) */
  closing: boolean;
}

const live = new Map<number, Live>();
/** Highest session handle started (handles grow): a ring entry above it waits for its 'start'. */
let lastStarted = 0;
let used = init.usedBytes;
let full = false; // over the budget
let ioError: string | null = null; // last write failed
let checkpointTimer: NodeJS.Timeout | null = null;
/** The checkpoint timer fired while a drain was due: that drain writes the live entries. */
let checkpointDue = false;
const pageCache = init.dropPageCache ? new PageCacheDropper(init.dir, () => dbs.env.flushed, (message) => post({ t: 'notice', message })) : null;

/** Longest a batch waits in its slot before it is sealed and put (ms). */
const DRAIN_MS = init.drainMs;
/** Queued batches that start a drain at once, and the most one transaction takes (unless forced). */
const DRAIN_SLOTS = init.drainSlots;
interface Queued {
  s: Live;
  slot: number;
  len: number;
  frames: number;
}
let queue: Queued[] = [];
let drainTimer: NodeJS.Timeout | null = null;
/** Drains whose transaction is not committed yet. */
let committing = 0;
/** A drain was put off until the current commit. */
let drainAfterCommit = false;

function post(m: FromWriter): void {
  port.postMessage(m);
}

/** Acknowledges a request once everything written so far is durable (write errors are reported by track). */
function ackWhenFlushed(req: number, before?: () => void): void {
  const ack = (): void => {
    before?.();
    post({ t: 'ack', req });
  };
  void Promise.resolve(dbs.env.flushed).then(ack, ack);
}

function budgetCheck(): void {
  if (!full && used > init.mapSize) {
    full = true;
    post({
      t: 'failure',
      message:
        `recording store is full (map size ${init.mapSize} bytes): about ${used} bytes in use in ${init.dir}; ` +
        'new frames are dropped until old recordings are pruned or the map size is raised',
    });
  } else if (full && used <= init.mapSize * 0.95) {
    full = false;
    if (ioError === null) post({ t: 'recovered' });
  }
}

function track(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      if (ioError !== null) {
        ioError = null;
        if (!full) post({ t: 'recovered' });
      }
    },
    (err: Error) => {
      const msg = /MDB_MAP_FULL/.test(String(err?.message))
        ? `recording store is full (map size ${init.mapSize} bytes): ${err.message}`
        : `recording store cannot write to ${init.dir}: ${err?.message ?? err}`;
      if (ioError === null) post({ t: 'failure', message: msg });
      ioError = msg;
    },
  );
}

function put<K, V>(db: { put(k: K, v: V): Promise<boolean> }, key: K, value: V, cost: number): Promise<unknown> {
  used += cost;
  return track(db.put(key, value));
}

function writeEntry(s: Live): Promise<unknown> {
  s.dirty = false;
  const e = s.entry;
  e.frames = s.frames;
  return put(dbs.sessions, e.id, e, 0);
}

/**
 * Sealed values are written into buffers of this pool and reused once their transaction is
 * committed (lmdb-js reads a value from the caller's buffer until then): no 32 KB allocation per
 * batch, whose garbage would wait for this isolate's next GC. Values in flight are bounded by the
 * arena's slots (each also holds its slot); the pool itself keeps at most VALUE_POOL_MAX.
 */
const valuePool: Buffer[] = [];
/**
 * Buffers the pool keeps: what a bulk transfer has in flight (the data path pauses at pressureSlots).
 * A burst of many sessions can have every slot in flight once; the buffers beyond this go to the GC
 * rather than staying resident for good (512 slots of 32 KB would be 16 MB).
 */
const VALUE_POOL_MAX = Math.max(8, init.pressureSlots);

function release(values: Buffer[]): void {
  for (const v of values) if (valuePool.length < VALUE_POOL_MAX) valuePool.push(v);
}

/** Seals a batch into a pooled buffer, chains it and queues its put; returns the put's promise. */
function putBatch(s: Live, slot: number, len: number, frames: number, values: Buffer[]): Promise<unknown> {
  const plain = arena.subarray(slot * init.slotSize, slot * init.slotSize + len);
  // 32 bytes of room before the value, for the chain's input (chainBatchInPlace).
  const buf = valuePool.pop() ?? Buffer.allocUnsafeSlow(32 + init.slotSize + SEAL_OVERHEAD);
  values.push(buf);
  const batch = s.entry.batches++;
  const value = sealBatch(s.key, s.noncePrefix, batch, batchAad(s.idBuf, batch), plain, buf.subarray(32));
  chainBatchInPlace(s.hash, buf, value.length);
  s.frames = frames;
  const key = frameKey(s.prefix, batch);
  const cost = storedCost(value.length, key.length);
  s.entry.stored_bytes += cost;
  s.dirty = true;
  used += cost;
  return dbs.frames.put(key, value);
}

/**
 * Seals and puts the queued batches in this turn: one LMDB transaction. The slots (and the value
 * buffers) go back once that transaction is committed, not when the puts are queued, so lmdb's
 * pending writes stay bounded by what the main thread may have in flight, and the data path (which
 * pauses beyond that) streams at the disk's pace.
 *
 * Unless forced (a message that must see the batches written), a drain waits for the previous
 * drain's commit and takes at most DRAIN_SLOTS batches: one transaction of bounded size at a time
 * (LMDB mallocs a transaction's dirty pages on the thread that commits it, a libuv pool thread, and
 * glibc keeps each such thread's peak for good).
 */
function drain(forced: boolean): void {
  if (drainTimer !== null) {
    clearTimeout(drainTimer);
    drainTimer = null;
  }
  poll(false);
  if (queue.length === 0) {
    // The checkpoint timer left the live entries to this drain: write them even with no batches.
    if (checkpointDue) checkpoint();
    return;
  }
  if (committing > 0 && !forced) {
    drainAfterCommit = true;
    return;
  }
  let q = queue;
  queue = [];
  if (!forced && q.length > DRAIN_SLOTS) {
    queue = q.slice(DRAIN_SLOTS);
    q = q.slice(0, DRAIN_SLOTS);
    drainAfterCommit = true;
  }
  const slots: number[] = [];
  const values: Buffer[] = [];
  let stored = 0;
  let last: Promise<unknown> | undefined;
  const commits: Promise<unknown>[] = [];
  for (const b of q) {
    slots.push(b.slot);
    try {
      const p = putBatch(b.s, b.slot, b.len, b.frames, values);
      stored += b.len;
      // lmdb-js hands every put of one transaction the same promise.
      if (p !== last) commits.push((last = p));
    } catch (err) {
      post({ t: 'failure', message: `recording writer error: ${(err as Error).message}` });
    }
  }
  if (checkpointDue) checkpoint();
  budgetCheck();
  pageCache?.stored(stored);
  if (commits.length === 0) {
    release(values);
    post({ t: 'free', slots });
    if (drainAfterCommit) {
      drainAfterCommit = false;
      setImmediate(onDrainTimer);
    }
    return;
  }
  committing++;
  void Promise.all(commits.map(track)).then(() => {
    committing--;
    release(values);
    post({ t: 'free', slots });
    if (committing === 0 && drainAfterCommit) {
      drainAfterCommit = false;
      drain(false);
      poll();
    }
  });
}

/** Takes the ring's entries into the queue; drains or arms the drain timer unless told not to. */
function poll(schedule = true): void {
  const freed: number[] = [];
  let blocked = false;
  for (let n = ring.waiting; n > 0; n--) {
    const b = ring.peek();
    const s = live.get(b.h);
    if (!s && b.h > lastStarted) {
      blocked = true; // its 'start' message is on its way (and polls when handled)
      break;
    }
    ring.shift();
    if (!s) {
      freed.push(b.slot);
      continue;
    }
    queue.push({ s, slot: b.slot, len: b.len, frames: b.frames });
  }
  if (freed.length) post({ t: 'free', slots: freed });
  if (!schedule) return;
  if (queue.length >= DRAIN_SLOTS) drain(false);
  if (queue.length > 0) {
    if (drainTimer === null && !drainAfterCommit) drainTimer = setTimeout(onDrainTimer, DRAIN_MS);
  } else if (!blocked && !ring.idle()) poll();
}

function onDrainTimer(): void {
  drainTimer = null;
  drain(false);
  poll();
}

function handle(op: ToWriter): void {
  // A message sees every batch appended to the ring before it was sent. Everything but polls and
  // counters also waits for them to be written (a closed entry after its last batch, flush and
  // shutdown after everything).
  poll(false);
  if (op.t !== 'poll' && op.t !== 'counters') drain(true);
  switch (op.t) {
    case 'start': {
      const e = op.entry;
      const idBuf = Buffer.from(e.id, 'utf8');
      const s: Live = {
        entry: e,
        idBuf,
        prefix: framePrefix(e.id),
        key: Buffer.from(op.dataKey),
        noncePrefix: Buffer.from(op.noncePrefix),
        hash: chainStart(e.id),
        frames: 0,
        dirty: false,
        closing: false,
      };
      live.set(op.h, s);
      lastStarted = Math.max(lastStarted, op.h);
      put(dbs.byStart, timeKey(Date.parse(e.started_at), e.id), EMPTY, 64);
      void writeEntry(s);
      used += 1024;
      return;
    }
    case 'poll':
      return;
    case 'counters': {
      const s = live.get(op.h);
      if (!s) return;
      s.entry.statements = op.statements;
      s.entry.decisions = op.decisions;
      s.entry.dropped_frames = op.dropped;
      s.dirty = true;
      return;
    }
    case 'close': {
      const s = live.get(op.h);
      if (!s) return post({ t: 'ack', req: op.req });
      // The closed entry is written only once signed (finish): a crash before that leaves the
      // session 'live', and the next open recovers it.
      const e: SessionIndexEntry = { ...s.entry, ...op.fields, frames: s.frames };
      e.head = { seq: s.frames - 1, hash: s.hash.toString('hex'), frames: s.frames };
      s.closing = true;
      return post({ t: 'head', req: op.req, entry: e });
    }
    case 'finish': {
      const s = live.get(op.h);
      live.delete(op.h);
      if (s) {
        s.entry = op.entry;
        s.frames = op.entry.frames;
        writeEntry(s);
      }
      ackWhenFlushed(op.req);
      return;
    }
    case 'audit': {
      const key = auditDbKey(op.ms, op.counter, auditTail);
      const sealed = sealAudit(auditKey, init.keyId, key, Buffer.from(op.json, 'utf8'));
      const rec: StoredAudit = { ...op.fields, key_id: init.keyId, sealed };
      put(dbs.audit, key, rec, storedCost(sealed.length + 80, key.length));
      return;
    }
    case 'flush':
      ackWhenFlushed(op.req);
      return;
    case 'prune': {
      for (const p of op.sessions) {
        const prefix = framePrefix(p.id);
        for (const key of dbs.frames.getKeys(frameRange(prefix))) void track(dbs.frames.remove(Buffer.from(key)));
        void track(dbs.byStart.remove(timeKey(p.startedMs, p.id)));
        void track(dbs.sessions.remove(p.id));
        used -= p.bytes + 1024 + 64;
      }
      ackWhenFlushed(op.req, budgetCheck);
      return;
    }
    case 'shutdown':
      if (checkpointTimer) clearInterval(checkpointTimer);
      checkpoint();
      ackWhenFlushed(op.req);
      return;
  }
}

port.on('message', (ops: ToWriter[]) => {
  for (const op of ops) {
    try {
      handle(op);
    } catch (err) {
      post({ t: 'failure', message: `recording writer error: ${(err as Error).message}` });
    }
  }
  poll();
  budgetCheck();
});

// Live sessions' index entries (counters, frames so far) are written about once a second, so a
// crash loses little more than the frames still in memory. A drain due soon writes them in its own
// transaction rather than this timer committing one more.
function checkpoint(): void {
  checkpointDue = false;
  for (const s of live.values()) if (s.dirty && !s.closing) writeEntry(s);
}
checkpointTimer = setInterval(() => {
  checkpointDue = true;
  if (drainTimer === null && !drainAfterCommit) checkpoint();
}, 1000);
checkpointTimer.unref();
post({ t: 'ready' });
