// The recording store's writer thread: seals batches, hashes each sealed value into its session's
// chain and writes them with lmdb-js async puts. Everything costly in recording happens here, off the
// thread that relays traffic.
//
// Batches arrive through the shared ring (protocol.ts) and are not written at once: they wait in
// their arena slots until DRAIN_MS after the first one, DRAIN_SLOTS of them, or a message that must
// see them (close, flush, prune, shutdown, audit), and are then sealed and put in one event-loop turn,
// which lmdb-js commits as one transaction. At database-session rates this makes one commit and one
// wakeup of this thread per DRAIN_MS instead of one per batch.

import { getSystemErrorName } from 'node:util';
import { parentPort, workerData } from 'node:worker_threads';
import type { Database } from 'lmdb';
import { chainBatchInPlace, chainStart } from './chain.js';
import { batchAad, SEAL_OVERHEAD, sealAudit, sealBatch } from './crypto.js';
import { openDbs, EMPTY, FORMAT_VERSION, type StoredAudit } from './db.js';
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

function budgetCheck(): void {
  if (!full && used > init.mapSize) {
    full = true;
    post({
      t: 'failure',
      message:
        `recording store is full (map size ${init.mapSize} bytes): about ${used} bytes in use; ` +
        'new frames are dropped until old recordings are pruned or the map size is raised',
    });
  } else if (full && used <= init.mapSize * 0.95) {
    full = false;
    if (ioError === null) post({ t: 'recovered' });
  }
}

// ---- write failures ------------------------------------------------------------------------------
//
// A write that fails (ENOSPC, EIO, a genuine MDB_MAP_FULL) is kept, not lost: a batch with its arena
// slot and sealed value, an index entry as its session's latest state, an audit event, a removal.
// While writes fail, every later write is kept too. Every PROBE_MS the writer writes everything kept
// in one transaction (or, with nothing kept, rewrites the format record): once that commits, the
// store works again ('recovered'), with nothing that was handed to it before the failure missing.
// Meanwhile the main thread drops new frames and the gateway refuses or ends sessions as configured.

/** How often a failing store tries its kept writes again (ms). */
const PROBE_MS = 1000;

type Kept = { k: 'batch'; b: SealedBatch } | { k: 'put'; db: Database<any, any>; key: unknown; value: unknown } | { k: 'remove'; db: Database<any, any>; key: unknown };

interface SealedBatch {
  key: Buffer;
  value: Buffer;
  slot: number;
  /** The pooled buffer holding value. */
  buf: Buffer;
}

/** Why writes fail, as reported (null: they work). */
let ioError: string | null = null;
/** The 'failure' message of the current episode has been posted (so 'recovered' may follow). */
let reported: Promise<void> = Promise.resolve();
const kept: Kept[] = [];
/** Index entries to write again, by session id: the session's latest state is what gets written. */
const keptEntries = new Map<string, Live>();
let probeTimer: NodeJS.Timeout | null = null;

// lmdb-js rejects a failed commit's puts with "Commit failed (see commitError for details)" and the
// real error (errno in `code`) in a promise it rejects at the same time, unhandled unless read here;
// an unhandled rejection can end this thread. Anything else unhandled is reported, not fatal.
process.on('unhandledRejection', (err) => {
  // A failed commit reaches promises lmdb-js chains internally too; the failure is reported already.
  if ((err as { commitError?: unknown } | null)?.commitError) return quiet(err);
  post({ t: 'notice', message: `recording writer: unhandled ${describeCause(err)}` });
});

/** The cause of a failed write in words, e.g. "No space left on device (ENOSPC)". */
async function describeWriteError(err: unknown): Promise<string> {
  let cause: unknown = err;
  const ce = (err as { commitError?: Promise<unknown> } | null)?.commitError;
  if (ce && typeof ce.then === 'function') {
    cause = await Promise.race([ce.then(() => err, (e: unknown) => e), new Promise((r) => setTimeout(r, 1000, err))]);
  }
  const what = describeCause(cause);
  return /MDB_MAP_FULL/.test(what) ? `recording store is full (map size ${init.mapSize} bytes): ${what}` : `recording store cannot write: ${what}`;
}

function describeCause(cause: unknown): string {
  const e = cause as { message?: unknown; code?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(cause);
  if (typeof e?.code !== 'number' || e.code <= 0) return message;
  // lmdb-js appends where it failed ("…: Attempting to write page at position …"): the errno says it.
  let name = '';
  try {
    name = getSystemErrorName(-e.code);
  } catch {
    name = `errno ${e.code}`;
  }
  return `${message.split(': ')[0]} (${name})`;
}

/** Marks lmdb-js's commitError promise handled (the cause is read from it once per episode). */
function quiet(err: unknown): void {
  const ce = (err as { commitError?: Promise<unknown> } | null)?.commitError;
  if (ce && typeof ce.then === 'function') ce.then(undefined, () => {});
}

/** A write failed: report it (once per episode) and try again every PROBE_MS. */
function writeFailed(err: unknown): void {
  quiet(err);
  releaseFlushAcks();
  if (ioError !== null) return;
  ioError = 'recording store cannot write';
  reported = describeWriteError(err).then((message) => {
    if (ioError !== null) ioError = message;
    post({ t: 'failure', message });
  });
  if (probeTimer === null) probeTimer = setTimeout(probe, PROBE_MS);
}

function issue(w: Kept): Promise<unknown> {
  if (w.k === 'batch') return dbs.frames.put(w.b.key, w.b.value);
  return w.k === 'put' ? w.db.put(w.key, w.value) : w.db.remove(w.key);
}

/** Writes, or keeps the write while writes fail. */
function submit(w: Kept): void {
  if (ioError !== null) {
    kept.push(w);
    return;
  }
  issue(w).then(undefined, (err: unknown) => {
    kept.push(w);
    writeFailed(err);
  });
}

function put(db: Database<any, any>, key: unknown, value: unknown, cost: number): void {
  used += cost;
  submit({ k: 'put', db, key, value });
}

function remove(db: Database<any, any>, key: unknown): void {
  submit({ k: 'remove', db, key });
}

function writeEntry(s: Live): void {
  s.dirty = false;
  const e = s.entry;
  e.frames = s.frames;
  if (ioError !== null) {
    keptEntries.set(e.id, s);
    return;
  }
  dbs.sessions.put(e.id, e).then(undefined, (err: unknown) => {
    keptEntries.set(e.id, s);
    writeFailed(err);
  });
}

/** Writes everything kept in one transaction; recovers if it commits, else tries again later. */
function probe(): void {
  probeTimer = null;
  if (ioError === null) return;
  const ws = kept.splice(0);
  const entries = [...keptEntries.values()];
  keptEntries.clear();
  const writes: Promise<unknown>[] = ws.map(issue);
  for (const s of entries) {
    s.entry.frames = s.frames;
    writes.push(dbs.sessions.put(s.entry.id, s.entry));
  }
  // Something to commit even when nothing is kept (a write that threw rather than failed).
  writes.push(dbs.meta.put('format', FORMAT_VERSION));
  let lastErr: unknown = null;
  const failed = (err: unknown): boolean => {
    quiet(err);
    lastErr = err;
    return false;
  };
  void Promise.all(writes.map((p) => p.then(() => true, failed))).then(async (ok) => {
    const slots: number[] = [];
    const values: Buffer[] = [];
    ws.forEach((w, i) => {
      if (!ok[i]) kept.push(w);
      else if (w.k === 'batch') {
        slots.push(w.b.slot);
        values.push(w.b.buf);
      }
    });
    entries.forEach((s, j) => {
      if (!ok[ws.length + j] && !keptEntries.has(s.entry.id)) keptEntries.set(s.entry.id, s);
    });
    if (slots.length) {
      release(values);
      post({ t: 'free', slots });
    }
    if (lastErr !== null) {
      releaseFlushAcks();
      releaseProbeAcks(false);
      probeTimer = setTimeout(probe, PROBE_MS);
      return;
    }
    await reported;
    ioError = null;
    if (!full) post({ t: 'recovered' });
    releaseProbeAcks(true);
    // Batches that waited in the ring meanwhile.
    if (queue.length > 0 && drainTimer === null && !drainAfterCommit) drainTimer = setTimeout(onDrainTimer, 0);
  });
}

/** Acks waiting for the data file's flush: released at once when a write fails (that flush never comes). */
const flushAcks = new Set<() => void>();
/** Acks asked for while writes fail: released after the next probe. */
let probeAcks: (() => void)[] = [];

/**
 * Acknowledges a request once everything written so far is durable. While writes fail, once the
 * kept writes have been tried again: the failure was reported, and a request must not hang on it.
 */
function ackWhenFlushed(req: number, before?: () => void): void {
  let done = false;
  const ack = (): void => {
    if (done) return;
    done = true;
    flushAcks.delete(ack);
    before?.();
    post({ t: 'ack', req });
  };
  if (ioError !== null) probeAcks.push(ack);
  else waitFlushed(ack);
}

function waitFlushed(ack: () => void): void {
  flushAcks.add(ack);
  void Promise.resolve(dbs.env.flushed).then(ack, ack);
}

function releaseFlushAcks(): void {
  for (const ack of [...flushAcks]) ack();
}

function releaseProbeAcks(written: boolean): void {
  const acks = probeAcks;
  probeAcks = [];
  for (const ack of acks) (written ? waitFlushed : (a: () => void) => a())(ack);
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

/** Seals a batch into a pooled buffer and chains it. */
function sealInto(s: Live, slot: number, len: number, frames: number): SealedBatch {
  const plain = arena.subarray(slot * init.slotSize, slot * init.slotSize + len);
  // 32 bytes of room before the value, for the chain's input (chainBatchInPlace).
  const buf = valuePool.pop() ?? Buffer.allocUnsafeSlow(32 + init.slotSize + SEAL_OVERHEAD);
  const batch = s.entry.batches++;
  const value = sealBatch(s.key, s.noncePrefix, batch, batchAad(s.idBuf, batch), plain, buf.subarray(32));
  chainBatchInPlace(s.hash, buf, value.length);
  s.frames = frames;
  const key = frameKey(s.prefix, batch);
  const cost = storedCost(value.length, key.length);
  s.entry.stored_bytes += cost;
  s.dirty = true;
  used += cost;
  return { key, value, slot, buf };
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
  /** The batches put, with their transaction's promise (kept if it fails). */
  const issued: SealedBatch[] = [];
  const txnOf: Promise<unknown>[] = [];
  for (const b of q) {
    let sealed: SealedBatch;
    try {
      sealed = sealInto(b.s, b.slot, b.len, b.frames);
    } catch (err) {
      slots.push(b.slot);
      writeFailed(err);
      continue;
    }
    stored += b.len;
    if (ioError !== null) {
      kept.push({ k: 'batch', b: sealed }); // its slot comes back once written
      continue;
    }
    const p = dbs.frames.put(sealed.key, sealed.value);
    // lmdb-js hands every put of one transaction the same promise.
    if (p !== last) commits.push((last = p));
    issued.push(sealed);
    txnOf.push(p);
  }
  if (checkpointDue) checkpoint();
  budgetCheck();
  pageCache?.stored(stored);
  if (commits.length === 0) {
    if (slots.length) post({ t: 'free', slots });
    if (drainAfterCommit) {
      drainAfterCommit = false;
      setImmediate(onDrainTimer);
    }
    return;
  }
  committing++;
  const failed = new Set<Promise<unknown>>();
  void Promise.all(
    commits.map((p) =>
      p.then(undefined, (err: unknown) => {
        failed.add(p);
        writeFailed(err);
      }),
    ),
  ).then(() => {
    committing--;
    for (let i = 0; i < issued.length; i++) {
      const sb = issued[i]!;
      if (failed.has(txnOf[i]!)) kept.push({ k: 'batch', b: sb });
      else {
        slots.push(sb.slot);
        values.push(sb.buf);
      }
    }
    release(values);
    if (slots.length) post({ t: 'free', slots });
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
      writeEntry(s);
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
        for (const key of dbs.frames.getKeys(frameRange(prefix))) remove(dbs.frames, Buffer.from(key));
        remove(dbs.byStart, timeKey(p.startedMs, p.id));
        remove(dbs.sessions, p.id);
        keptEntries.delete(p.id);
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
      // Counted as a write failure: the probe says when writing works again.
      writeFailed(err);
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
