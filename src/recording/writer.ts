// The recording store's writer thread: hashes frames into each session's chain, seals batches and
// writes them with lmdb-js async puts (batched into transactions by lmdb-js). Everything costly in
// recording happens here, off the thread that relays traffic.

import { parentPort, workerData } from 'node:worker_threads';
import { chainStart, chainStep } from './chain.js';
import { batchAad, sealAudit, sealBatch } from './crypto.js';
import { openDbs, EMPTY, type StoredAudit } from './db.js';
import { FrameAssembler, type FrameSink } from './frames.js';
import { auditKey as auditDbKey, framePrefix, frameKey, frameRange, timeKey } from './keys.js';
import { storedCost, type FromWriter, type ToWriter, type WriterInit } from './protocol.js';
import type { SessionIndexEntry } from './types.js';

const init = workerData as WriterInit;
const port = parentPort!;
const dbs = openDbs(init.dir, init.mapSize);
const arena = Buffer.from(init.arena);
const auditKey = Buffer.from(init.auditKey);
const auditTail = Buffer.from(crypto.getRandomValues(new Uint8Array(4)));

interface Live {
  entry: SessionIndexEntry;
  idBuf: Buffer;
  prefix: Buffer;
  key: Buffer;
  noncePrefix: Buffer;
  asm: FrameAssembler;
  sink: FrameSink;
  hash: Buffer;
  frames: number;
  dirty: boolean;
  /** close received: no more checkpoints, the signed entry follows (finish) */
  closing: boolean;
}

const live = new Map<number, Live>();
let used = init.usedBytes;
let full = false; // over the budget
let ioError: string | null = null; // last write failed
let checkpointTimer: NodeJS.Timeout | null = null;

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

function onBatch(s: Live, slot: number, len: number): Promise<unknown> {
  const plain = arena.subarray(slot * init.slotSize, slot * init.slotSize + len);
  s.asm.push(plain, s.sink);
  const batch = s.entry.batches++;
  const value = sealBatch(s.key, s.noncePrefix, batch, batchAad(s.idBuf, batch), plain);
  const key = frameKey(s.prefix, batch);
  const cost = storedCost(value.length, key.length);
  s.entry.stored_bytes += cost;
  s.dirty = true;
  return put(dbs.frames, key, value, cost);
}

function handle(op: ToWriter, freed: number[]): void {
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
        asm: new FrameAssembler(),
        sink: () => {},
        hash: chainStart(e.id),
        frames: 0,
        dirty: false,
        closing: false,
      };
      s.sink = (_seq, _t, _dir, buf, start, end) => {
        chainStep(s.hash, buf, start, end);
        s.frames++;
      };
      live.set(op.h, s);
      put(dbs.byStart, timeKey(Date.parse(e.started_at), e.id), EMPTY, 64);
      void writeEntry(s);
      used += 1024;
      return;
    }
    case 'batch': {
      // The slot is handed back once its batch is committed, not when the put is
      // queued: lmdb's pending writes stay bounded by the arena, and the data
      // path (which pauses when slots run low) streams at the disk's pace.
      const s = live.get(op.h);
      let done: Promise<unknown> | undefined;
      try {
        if (s) done = onBatch(s, op.slot, op.len);
      } finally {
        if (done) void done.finally(() => post({ t: 'free', slots: [op.slot] }));
        else freed.push(op.slot);
      }
      return;
    }
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
      for (const s of live.values()) if (s.dirty && !s.closing) writeEntry(s);
      ackWhenFlushed(op.req);
      return;
  }
}

port.on('message', (ops: ToWriter[]) => {
  const freed: number[] = [];
  for (const op of ops) {
    try {
      handle(op, freed);
    } catch (err) {
      post({ t: 'failure', message: `recording writer error: ${(err as Error).message}` });
    }
  }
  if (freed.length) post({ t: 'free', slots: freed });
  budgetCheck();
});

// Live sessions' index entries (counters, frames so far) are written at most once a second, so a
// crash loses little more than the frames still in memory.
checkpointTimer = setInterval(() => {
  for (const s of live.values()) if (s.dirty && !s.closing) writeEntry(s);
}, 1000);
checkpointTimer.unref();
post({ t: 'ready' });
