// RecordingStore: byte-accurate, encrypted, tamper-evident session recordings in an embedded LMDB
// environment. The format and its guarantees are described in README.md next to this file.
//
// Threads: the data path only copies frames into a shared arena (recorder.ts). A writer thread
// (writer.ts) hashes, seals and writes them. Reads (get, list, frames, verify, audit) run here,
// synchronously, against LMDB's memory map.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { headMessage } from './chain.js';
import { auditKeyFrom, checkKey, openAudit, SEAL_OVERHEAD, wrapDataKey } from './crypto.js';
import { openDbs, FORMAT_VERSION, type Dbs } from './db.js';
import { BATCH_HEADER, FRAME_HEADER } from './frames.js';
import { checkSessionId, idOfTimeKey, timeBound } from './keys.js';
import { BatchRing, type AuditFields, type FromWriter, type ToWriter, type WriterInit } from './protocol.js';
import { dataKeyOf, keyFor, readFrames, scanSession, type Keyring } from './read.js';
import { SessionRecorder, type RecorderHost } from './recorder.js';
import { recoverInterrupted } from './recover.js';
import type { AuditFilter, Frame, ListFilter, SessionIndexEntry, SessionMeta, Signer, StoreOptions, VerifyResult } from './types.js';

export { SessionRecorder } from './recorder.js';

const GiB = 1024 * 1024 * 1024;
const openDirs = new Set<string>();

/**
 * Batches in flight to the writer (handed over, not yet committed) beyond which the data path
 * pauses. It bounds the memory a bulk transfer takes while recording (arena pages, sealed values,
 * LMDB's dirty pages) whatever the arena's size; 4 MiB keeps the writer busy (~30 ms of it) and
 * lets one transaction take 2 MiB (drainSlots) while the next one fills.
 */
const PRESSURE_BYTES = 4 << 20;

/**
 * Longest a batch waits in the writer before its commit (ms). Each commit costs one to a few
 * milliseconds of CPU spread over the writer, lmdb-js's libuv threads and the kernel (page writes,
 * block allocation, the sync, the wakeups), whatever its size: at a pgbench -S rate (~100 batches a
 * second), 100 ms drains cost ~15% more CPU per transaction than these (bench/recording.ts, paced
 * case). Frames wait at most flushMs + MAX_DRAIN_MS before they are durable.
 */
const MAX_DRAIN_MS = 400;

/**
 * Flow control for an arena of `slots` slots: the slots in flight that make `pressure`, and the
 * batches the writer seals and puts in one transaction (half of that). Commits, not bytes, are
 * what recording costs most at database-session rates: with 32 KB slots, pgbench -S fills 1 MiB
 * in about 200 ms, and drains of 2 MiB rather than 1 MiB (one commit per MAX_DRAIN_MS instead of
 * two) took the writer's and lmdb-js's threads from ~0.65 to ~0.4 µs per transaction
 * (bench/recording.ts, paced at 30,000 transactions/s; 2-core VM, 2026-11-23).
 */
function flowLimits(slotSize: number, slots: number): { pressureSlots: number; drainSlots: number } {
  const pressureSlots = Math.max(8, Math.min(Math.ceil(PRESSURE_BYTES / slotSize), Math.floor(slots / 4)));
  return { pressureSlots, drainSlots: Math.max(2, Math.floor(pressureSlots / 2)) };
}

/**
 * How long the writer may hold batches or requests without committing anything before the store
 * counts as failed ('stalled'): a disk or filesystem that hangs. Waiting for a writer that works,
 * however slowly, is backpressure, never a failure.
 */
const STALL_MS = 30_000;

type FailureKind = 'writer' | 'stalled' | 'dead';

export class RecordingStore implements RecorderHost {
  readonly arena: Buffer;
  readonly view: DataView;
  readonly slotSize: number;

  private readonly freeSlots: number[] = [];
  private readonly slotCount: number;
  /** Most bytes of frames one session may hold outside the arena while it waits for slots. */
  readonly maxOverflow: number;
  /** Sessions waiting for slots, in order of arrival (their frames wait in their overflow). */
  private slotQueue: SessionRecorder[] = [];
  private queueHead = 0;
  /** serveQueue() is running: the queue's head may take slots. */
  private serving = false;
  /** flushed() calls waiting for the slot queue to empty. */
  private queueWaiters: (() => void)[] = [];
  /** When the writer last showed progress (a commit, an answer), or nothing was waiting for it. */
  private lastProgress = performance.now();
  private stallTimer: NodeJS.Timeout | null = null;
  private readonly stallMs: number;
  private readonly live = new Map<string, SessionRecorder>();
  private readonly pruning = new Set<string>();
  private readonly flushSet = new Set<SessionRecorder>();
  private readonly counterSet = new Set<SessionRecorder>();
  private outbox: ToWriter[] = [];
  private postScheduled = false;
  private readonly batches: BatchRing | null;
  /** A 'poll' is in the outbox. */
  private pollQueued = false;
  /** Batches appended to the ring since the last 'poll'; wakeSlots of them wake the writer. */
  private unpolled = 0;
  private readonly wakeSlots: number;
  /** Slots in flight to the writer that make `pressure` (PRESSURE_BYTES of them). */
  private readonly pressureSlots: number;
  private flushTimer: NodeJS.Timeout | null = null;
  private nextHandle = 1;
  private nextReq = 1;
  private readonly pending = new Map<number, { resolve: (m: FromWriter) => void; reject: (e: Error) => void }>();
  private readonly failures = new Set<FailureKind>();
  private auditCounter = 0;
  private closing: Promise<void> | null = null;
  private readonly flushMs: number;

  private constructor(
    private readonly opts: StoreOptions,
    private readonly dbs: Dbs,
    private readonly ring: Keyring,
    private readonly worker: Worker | null,
    arena: SharedArrayBuffer,
    slotSize: number,
    batchRing: SharedArrayBuffer | null,
  ) {
    this.arena = Buffer.from(arena);
    this.view = new DataView(arena);
    this.slotSize = slotSize;
    this.slotCount = Math.floor(arena.byteLength / slotSize);
    this.batches = batchRing ? new BatchRing(batchRing, 'main') : null;
    const flow = flowLimits(slotSize, this.slotCount);
    this.pressureSlots = flow.pressureSlots;
    this.wakeSlots = flow.drainSlots;
    for (let i = this.slotCount - 1; i >= 0; i--) this.freeSlots.push(i);
    // A quarter of the arena: a frame that size always gets its slots once the queue reaches it.
    this.maxOverflow = Math.min(PRESSURE_BYTES, Math.floor(this.slotCount / 4) * (slotSize - BATCH_HEADER) - FRAME_HEADER);
    this.flushMs = opts.flushMs ?? 200;
    this.stallMs = opts.stallMs ?? STALL_MS;
    if (worker) {
      this.stallTimer = setInterval(this.checkStall, Math.min(1000, Math.max(10, this.stallMs / 4)));
      this.stallTimer.unref();
      worker.on('message', (m: FromWriter) => this.onWriter(m));
      worker.on('error', (err) => this.onWriterDeath(err));
      worker.on('exit', (code) => this.onWriterDeath(new Error(`writer thread exited with code ${code}`)));
      worker.unref();
    }
  }

  /** Opened with readOnly: queries only, no recording, no recovery (another process may own the store). */
  get readOnly(): boolean {
    return this.worker === null;
  }

  /**
   * Opens (or creates) the store. Sessions a crashed previous run left 'live' become 'interrupted':
   * their committed frames stay readable and their chain head is recomputed and signed.
   * With readOnly, opens an existing store for queries only, also while a gateway records into it.
   */
  static async open(opts: StoreOptions): Promise<RecordingStore> {
    checkKey(opts.masterKey.key, 'masterKey.key');
    for (const [id, k] of Object.entries(opts.oldKeys ?? {})) checkKey(k, `oldKeys[${id}]`);
    const dir = resolve(opts.dir);
    if (openDirs.has(dir)) throw new Error(`recording store ${dir} is already open in this process`);
    const mapSize = opts.mapSize ?? 8 * GiB;
    const batchBytes = Math.min(65_512, Math.max(256, Math.floor(opts.batchBytes ?? 32_744)));
    const slotSize = batchBytes - SEAL_OVERHEAD;
    const bufferBytes = Math.max(opts.bufferBytes ?? 64 * 1024 * 1024, slotSize * 64);

    const ring: Keyring = { current: opts.masterKey, old: opts.oldKeys ?? {} };
    if (opts.readOnly) {
      if (!existsSync(join(dir, 'data.mdb'))) throw new Error(`no recording store at ${dir} (nothing recorded yet?)`);
      const dbs = openDbs(dir, Math.min(mapSize, 8 * GiB), true);
      openDirs.add(dir);
      return new RecordingStore({ ...opts, dir }, dbs, ring, null, new SharedArrayBuffer(0), slotSize, null);
    }
    openDirs.add(dir);
    let dbs: Dbs;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      dbs = openDbs(dir, Math.min(mapSize, 8 * GiB));
    } catch (err) {
      openDirs.delete(dir);
      throw err;
    }
    let worker: Worker | undefined;
    try {
      claimOwnership(dbs, dir);
      const usedBytes = recoverInterrupted(dbs, ring, opts.signer);
      await dbs.env.flushed;
      const slots = Math.floor(bufferBytes / slotSize);
      const arena = new SharedArrayBuffer(slots * slotSize);
      const batchRing = BatchRing.create(slots);
      const init: WriterInit = {
        dir,
        mapSize,
        arena,
        slotSize,
        ring: batchRing,
        ...flowLimits(slotSize, slots),
        drainMs: Math.min(MAX_DRAIN_MS, 2 * (opts.flushMs ?? 200)),
        usedBytes,
        keyId: opts.masterKey.id,
        auditKey: auditKeyFrom(opts.masterKey.key),
        dropPageCache: opts.dropPageCache ?? true,
      };
      worker = spawnWriter(init);
      await writerReady(worker);
      return new RecordingStore({ ...opts, dir }, dbs, ring, worker, arena, slotSize, batchRing);
    } catch (err) {
      await worker?.terminate();
      await dbs.env.close();
      openDirs.delete(dir);
      throw err;
    }
  }

  /** True while the store cannot record (full, write errors, writer stalled or gone). */
  get failed(): boolean {
    return this.failures.size > 0;
  }

  /** Gauges for metrics: the in-memory buffer between record() and the writer, live sessions. */
  stats(): { bufferBytes: number; bufferedBytes: number; liveSessions: number; waitingSessions: number; failed: boolean } {
    return {
      bufferBytes: this.slotCount * this.slotSize,
      bufferedBytes: (this.slotCount - this.freeSlots.length) * this.slotSize,
      liveSessions: this.live.size,
      waitingSessions: this.slotQueue.length - this.queueHead,
      failed: this.failed,
    };
  }

  // ---- recording -------------------------------------------------------------------------------

  start(meta: SessionMeta): SessionRecorder {
    this.writable();
    checkSessionId(meta.id);
    if (this.live.has(meta.id) || this.dbs.sessions.get(meta.id) !== undefined) {
      throw new Error(`a recording for session ${meta.id} already exists`);
    }
    if (Number.isNaN(Date.parse(meta.started_at))) throw new Error(`session ${meta.id}: started_at ${JSON.stringify(meta.started_at)} is not a date`);
    const dataKey = randomBytes(32);
    const { id: keyId, key: master } = this.opts.masterKey;
    const entry: SessionIndexEntry = {
      id: meta.id,
      protocol: meta.protocol,
      target: meta.target,
      sub: meta.sub,
      groups: [...meta.groups],
      issuer: meta.issuer,
      claims: meta.claims,
      client: meta.client,
      started_at: meta.started_at,
      status: 'live',
      bytes_from_client: 0,
      bytes_to_client: 0,
      statements: 0,
      decisions: {},
      frames: 0,
      dropped_frames: 0,
      stored_bytes: 0,
      batches: 0,
      key_id: keyId,
      wrapped_key: wrapDataKey(master, keyId, meta.id, dataKey),
    };
    const h = this.nextHandle++;
    const r = new SessionRecorder(this, h, entry);
    this.live.set(meta.id, r);
    this.send({ t: 'start', h, entry, dataKey, noncePrefix: randomBytes(4) });
    return r;
  }

  appendAudit(event: Record<string, unknown>): void {
    if (this.closing) return;
    this.writable();
    const ms = Date.now();
    const ev = event.ts === undefined ? { ...event, ts: new Date(ms).toISOString() } : event;
    const fields: AuditFields = { ts: String(ev.ts) };
    for (const f of ['sub', 'target', 'decision', 'session'] as const) if (typeof ev[f] === 'string') fields[f] = ev[f] as string;
    this.send({ t: 'audit', ms, counter: this.auditCounter++, json: JSON.stringify(ev), fields });
  }

  /** Resolves when everything recorded so far is durable. */
  async flushed(): Promise<void> {
    if (this.readOnly) return;
    if (this.queueHead < this.slotQueue.length) await new Promise<void>((resolve) => this.queueWaiters.push(resolve));
    for (const r of this.live.values()) r.flushPartial();
    this.flushCounters();
    await this.request({ t: 'flush', req: 0 });
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const open = [...this.live.values()].filter((r) => !r.closed);
      await Promise.all(
        open.map((r) => r.close({ reason: 'recording store closed', bytes_from_client: r.bytesFromClient, bytes_to_client: r.bytesToClient }).catch(() => {})),
      );
      if (this.flushTimer) clearTimeout(this.flushTimer);
      if (this.stallTimer) clearInterval(this.stallTimer);
      if (this.worker) {
        await this.request({ t: 'shutdown', req: 0 }).catch(() => {});
        this.failures.add('dead'); // from here on the writer is gone on purpose
        await this.worker.terminate();
        this.dbs.meta.removeSync('owner');
      }
      await this.dbs.env.close();
      openDirs.delete(this.opts.dir);
    })();
    return this.closing;
  }

  // ---- RecorderHost ----------------------------------------------------------------------------

  // Backpressure: the data path pauses when PRESSURE_BYTES of batches wait for the writer (sent,
  // not yet committed), or fewer than a quarter of the slots are free (many sessions each holding a
  // partial batch); it resumes below half of both. Large results then stream at the writer's pace
  // with a bounded amount in flight (arena pages touched, sealed values, LMDB's dirty pages), and no
  // frame is dropped for being fast.
  //
  // A session that finds no free slot (the relay records the chunk it has already read before it
  // can pause) keeps its frames in its overflow and waits in slotQueue; slots that come back go to
  // the queue first, in order, so every session moves on in turn whatever the number of sessions.
  // Running out of slots is backpressure, never a failure.
  private drainWaiters: (() => void)[] = [];
  /** Slots handed to the writer and not yet given back. */
  private sent = 0;

  get pressure(): boolean {
    return (this.sent >= this.pressureSlots || this.freeSlots.length < this.slotCount / 4) && !this.failed;
  }

  whenDrained(cb: () => void): void {
    if (!this.pressure) return void queueMicrotask(cb);
    if (this.drainWaiters.length === 0) this.pendingRef(+1);
    this.drainWaiters.push(cb);
  }

  private checkDrained(): void {
    if (this.drainWaiters.length === 0) return;
    if ((this.sent > this.pressureSlots / 2 || this.freeSlots.length < this.slotCount / 2) && !this.failed) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    this.pendingRef(-1);
    for (const cb of w) cb();
  }

  /** The writer thread keeps the process alive while something waits for it (requests, drain waiters). */
  private waitingOnWriter = 0;
  private pendingRef(d: 1 | -1): void {
    this.waitingOnWriter += d;
    if (d > 0 && this.waitingOnWriter === 1) this.worker?.ref();
    else if (d < 0 && this.waitingOnWriter === 0) this.worker?.unref();
  }

  takeSlots(n: number, out: number[]): boolean {
    if (this.freeSlots.length < n || (this.queueHead < this.slotQueue.length && !this.serving)) {
      this.flushPartialsSoon();
      return false;
    }
    for (let i = 0; i < n; i++) out.push(this.freeSlots.pop()!);
    // Short of slots: hand partial batches over now rather than after flushMs.
    if (this.freeSlots.length < this.slotCount / 4) this.flushPartialsSoon();
    return true;
  }

  private flushPartialsSoon(): void {
    if (this.flushSet.size > 0 && !this.flushSoon) {
      this.flushSoon = true;
      setImmediate(this.onTimer);
    }
  }

  waitForSlots(r: SessionRecorder): void {
    if (this.failed) {
      queueMicrotask(() => r.dropOverflow());
      return;
    }
    if (this.queueHead === this.slotQueue.length) this.pendingRef(+1);
    this.slotQueue.push(r);
  }

  /** Slots came back: the sessions waiting for them take them first, in order. */
  private serveQueue(): void {
    if (this.serving || this.queueHead === this.slotQueue.length) return;
    this.serving = true;
    try {
      while (this.queueHead < this.slotQueue.length && this.freeSlots.length > 0) {
        if (!this.slotQueue[this.queueHead]!.drainOverflow()) break;
        this.queueHead++;
      }
    } finally {
      this.serving = false;
    }
    this.queueSettled();
  }

  /** Compacts the queue; once it is empty, lets the process exit and wakes flushed(). */
  private queueSettled(): void {
    if (this.queueHead < this.slotQueue.length) {
      if (this.queueHead > 64 && this.queueHead * 2 > this.slotQueue.length) {
        this.slotQueue = this.slotQueue.slice(this.queueHead);
        this.queueHead = 0;
      }
      return;
    }
    if (this.slotQueue.length === 0) return;
    this.slotQueue = [];
    this.queueHead = 0;
    this.pendingRef(-1);
    const w = this.queueWaiters;
    this.queueWaiters = [];
    for (const cb of w) cb();
  }

  /** The store failed: frames waiting for slots are dropped like every frame until it recovers. */
  private dropQueue(): void {
    const q = this.slotQueue.slice(this.queueHead);
    this.queueHead = this.slotQueue.length;
    for (const r of q) r.dropOverflow();
    this.queueSettled();
  }

  /** Slots given back (committed batches, or batches a dead writer will never take). */
  private slotsFreed(): void {
    this.checkDrained();
    this.serveQueue();
  }

  sendBatch(h: number, slot: number, len: number, frames: number): void {
    if (this.failures.has('dead') || !this.batches) {
      this.freeSlots.push(slot);
      queueMicrotask(() => this.slotsFreed());
      return;
    }
    if (this.sent++ === 0 && this.pending.size === 0) this.lastProgress = performance.now(); // work starts now
    this.unpolled++;
    if ((this.batches.push(h, slot, len, frames) || this.unpolled >= this.wakeSlots) && !this.pollQueued) {
      this.pollQueued = true;
      this.unpolled = 0;
      this.send({ t: 'poll' });
    }
  }

  wantFlush(r: SessionRecorder): void {
    this.flushSet.add(r);
    this.armTimer();
  }

  counters(r: SessionRecorder): void {
    this.counterSet.add(r);
    this.armTimer();
  }

  /** Never rejects: if the writer is gone, onFailure has said so and the next open recovers the session. */
  async closeSession(r: SessionRecorder, fields: Partial<SessionIndexEntry>): Promise<void> {
    this.counterSet.delete(r);
    this.flushSet.delete(r);
    try {
      const reply = await this.request({ t: 'close', h: r.h, req: 0, fields });
      if (reply.t === 'head') {
        const e = reply.entry;
        const head = e.head!;
        head.signature = this.opts.signer.sign(headMessage(e, head)).toString('base64url');
        head.kid = this.opts.signer.kid;
        await this.request({ t: 'finish', h: r.h, req: 0, entry: e });
      }
    } catch (err) {
      this.fail('writer', `recording store could not close session ${r.id}: ${(err as Error).message}`);
    } finally {
      this.live.delete(r.id);
    }
  }

  // ---- reading ---------------------------------------------------------------------------------

  get(id: string): SessionIndexEntry | undefined {
    this.dbs.env.resetReadTxn();
    return this.entry(id);
  }

  private entry(id: string): SessionIndexEntry | undefined {
    if (this.pruning.has(id)) return undefined;
    const stored = this.dbs.sessions.get(id);
    const r = this.live.get(id);
    return r ? liveView(r, stored) : stored;
  }

  list(filter: ListFilter = {}): SessionIndexEntry[] {
    this.dbs.env.resetReadTxn();
    const limit = filter.limit ?? Infinity;
    const out: SessionIndexEntry[] = [];
    const seen = new Set<string>();
    const range = {
      start: filter.until ? timeBound(filter.until.getTime()) : timeBound(Number.MAX_SAFE_INTEGER),
      end: filter.since ? timeBound(filter.since.getTime()) : undefined,
      reverse: true,
    };
    for (const key of this.dbs.byStart.getKeys(range)) {
      if (out.length >= limit) break;
      const id = idOfTimeKey(key);
      seen.add(id);
      const e = this.entry(id);
      if (e && matches(e, filter)) out.push(e);
    }
    // Sessions started moments ago may not be committed yet.
    let extra = false;
    for (const r of this.live.values()) {
      if (seen.has(r.id)) continue;
      const e = liveView(r, undefined);
      const t = Date.parse(e.started_at);
      if (filter.since && t < filter.since.getTime()) continue;
      if (filter.until && t >= filter.until.getTime()) continue;
      if (matches(e, filter)) {
        out.push(e);
        extra = true;
      }
    }
    if (extra) out.sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
    return out.slice(0, limit);
  }

  frames(id: string, opts: { fromSeq?: number } = {}): Iterable<Frame> {
    const e = this.mustGet(id);
    return readFrames(this.dbs, e, dataKeyOf(this.ring, e), opts.fromSeq ?? 0);
  }

  verify(id: string): VerifyResult {
    const e = this.mustGet(id);
    const s = scanSession(this.dbs, e, dataKeyOf(this.ring, e));
    if (s.error) return { ok: false, frames: s.frames, firstBadSeq: s.error.seq, reason: s.error.reason };
    const head = e.head;
    if (!head) {
      // Live: nothing is signed yet, and the chain of what is stored is consistent.
      if (e.status === 'live') return { ok: true, frames: s.frames };
      return { ok: false, frames: s.frames, firstBadSeq: 0, reason: `the ${e.status} session has no signed head` };
    }
    const signer = this.opts.signer;
    if (!head.signature) return { ok: false, frames: s.frames, firstBadSeq: 0, reason: 'the chain head is not signed' };
    if (head.kid !== undefined && head.kid !== signer.kid) {
      return { ok: false, frames: s.frames, firstBadSeq: 0, reason: `the head was signed by key ${head.kid}, not by this store's signer ${signer.kid}` };
    }
    if (!signer.verify(headMessage(e, head), Buffer.from(head.signature, 'base64url'))) {
      return { ok: false, frames: s.frames, firstBadSeq: 0, reason: 'the head signature does not match the index entry (entry or head altered)' };
    }
    if (s.frames < head.frames) {
      return { ok: false, frames: s.frames, firstBadSeq: s.frames, reason: `frames ${s.frames} to ${head.seq} are missing (the signed head covers ${head.frames})` };
    }
    if (s.frames > head.frames) {
      return { ok: false, frames: s.frames, firstBadSeq: head.frames, reason: `${s.frames - head.frames} frames after the signed head (seq ${head.seq})` };
    }
    if (s.hash.toString('hex') !== head.hash) {
      return { ok: false, frames: s.frames, firstBadSeq: 0, reason: 'the recomputed chain does not match the signed head' };
    }
    return { ok: true, frames: s.frames };
  }

  audit(filter: AuditFilter = {}): Record<string, unknown>[] {
    this.dbs.env.resetReadTxn();
    const limit = filter.limit ?? Infinity;
    const out: Record<string, unknown>[] = [];
    const range = {
      start: filter.until ? timeBound(filter.until.getTime()) : timeBound(Number.MAX_SAFE_INTEGER),
      end: filter.since ? timeBound(filter.since.getTime()) : undefined,
      reverse: true,
    };
    const keys = new Map<string, Buffer>();
    for (const { key, value } of this.dbs.audit.getRange(range)) {
      if (out.length >= limit) break;
      if (filter.sub !== undefined && value.sub !== filter.sub) continue;
      if (filter.target !== undefined && value.target !== filter.target) continue;
      if (filter.decision !== undefined && value.decision !== filter.decision) continue;
      let k = keys.get(value.key_id);
      if (!k) keys.set(value.key_id, (k = auditKeyFrom(keyFor(this.ring, value.key_id))));
      const plain = openAudit(k, value.key_id, key, value.sealed);
      out.push(JSON.parse(plain.toString('utf8')) as Record<string, unknown>);
    }
    return out;
  }

  /**
   * Retention: removes sessions that ended before olderThan, then the oldest ones until the store
   * holds at most maxBytes. Never removes live sessions. The index answers at once; the batches are
   * deleted by the writer thread (flushed() waits for that).
   */
  prune(opts: { olderThan?: Date; maxBytes?: number }): { sessions: number; bytes: number } {
    this.writable();
    this.dbs.env.resetReadTxn();
    const all: { e: SessionIndexEntry; startedMs: number }[] = [];
    let total = 0;
    for (const key of this.dbs.byStart.getKeys({})) {
      const id = idOfTimeKey(key);
      if (this.pruning.has(id)) continue;
      const e = this.dbs.sessions.get(id);
      if (!e) continue;
      total += e.stored_bytes;
      all.push({ e, startedMs: key.readUInt32BE(0) * 0x1_0000_0000 + key.readUInt32BE(4) });
    }
    const chosen: { id: string; startedMs: number; bytes: number }[] = [];
    const cut = opts.olderThan?.getTime();
    for (const { e, startedMs } of all) {
      if (e.status === 'live' || this.live.has(e.id)) continue;
      const endMs = Date.parse(e.ended_at ?? e.started_at);
      const old = cut !== undefined && endMs < cut;
      const over = opts.maxBytes !== undefined && total > opts.maxBytes;
      if (!old && !over) continue;
      chosen.push({ id: e.id, startedMs, bytes: e.stored_bytes });
      total -= e.stored_bytes;
    }
    if (chosen.length === 0) return { sessions: 0, bytes: 0 };
    for (const c of chosen) this.pruning.add(c.id);
    void this.request({ t: 'prune', req: 0, sessions: chosen }).then(
      () => chosen.forEach((c) => this.pruning.delete(c.id)),
      () => {},
    );
    return { sessions: chosen.length, bytes: chosen.reduce((a, c) => a + c.bytes, 0) };
  }

  // ---- internals -------------------------------------------------------------------------------

  private writable(): void {
    if (this.readOnly) throw new Error(`recording store ${this.opts.dir} is open read-only`);
    if (this.closing) throw new Error('recording store is closed');
  }

  private mustGet(id: string): SessionIndexEntry {
    const e = this.get(id);
    if (!e) throw new Error(`no recording for session ${id}`);
    return e;
  }

  private send(op: ToWriter): void {
    this.outbox.push(op);
    if (!this.postScheduled) {
      this.postScheduled = true;
      setImmediate(this.post);
    }
  }

  private readonly post = (): void => {
    this.postScheduled = false;
    if (this.outbox.length === 0) return;
    const ops = this.outbox;
    this.outbox = [];
    this.pollQueued = false;
    if (this.failures.has('dead') || !this.worker) return;
    this.worker.postMessage(ops);
  };

  private request(op: ToWriter & { req: number }): Promise<FromWriter> {
    const worker = this.worker;
    if (this.failures.has('dead') || !worker) return Promise.reject(new Error('recording writer thread is not running'));
    const req = this.nextReq++;
    op.req = req;
    if (this.sent === 0 && this.pending.size === 0) this.lastProgress = performance.now();
    this.send(op);
    this.pendingRef(+1);
    return new Promise((resolve, reject) => this.pending.set(req, { resolve, reject }));
  }

  private armTimer(): void {
    if (this.flushTimer !== null) return;
    this.flushTimer = setTimeout(this.onTimer, this.flushMs);
    this.flushTimer.unref();
  }

  private flushSoon = false;

  private readonly onTimer = (): void => {
    this.flushSoon = false;
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const r of this.flushSet) r.flushPartial();
    this.flushSet.clear();
    this.flushCounters();
  };

  private flushCounters(): void {
    for (const r of this.counterSet) {
      r.countersDirty = false;
      this.send({ t: 'counters', h: r.h, statements: r.statements, decisions: { ...r.decisions }, dropped: r.dropped });
    }
    this.counterSet.clear();
  }

  private onWriter(m: FromWriter): void {
    switch (m.t) {
      case 'free':
        for (const s of m.slots) this.freeSlots.push(s);
        this.sent -= m.slots.length;
        this.progress();
        this.slotsFreed();
        return;
      case 'failure':
        this.fail('writer', m.message);
        return;
      case 'recovered':
        this.recover('writer');
        return;
      case 'ready':
        return;
      case 'notice':
        this.opts.onNotice?.(m.message);
        return;
      case 'head':
      case 'ack': {
        this.progress();
        const p = this.pending.get(m.req);
        if (!p) return;
        this.pending.delete(m.req);
        this.pendingRef(-1);
        p.resolve(m);
        return;
      }
    }
  }

  private onWriterDeath(err: Error): void {
    if (this.failures.has('dead')) return;
    this.fail('dead', `recording writer thread failed: ${err.message}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** The writer committed or answered something. */
  private progress(): void {
    this.lastProgress = performance.now();
    if (this.failures.has('stalled')) this.recover('stalled');
  }

  /** Counts the writer as stalled when work waits for it and it has shown no progress for stallMs. */
  private readonly checkStall = (): void => {
    const now = performance.now();
    if (this.sent === 0 && this.pending.size === 0) {
      this.lastProgress = now;
      return;
    }
    if (now - this.lastProgress < this.stallMs || this.failures.has('stalled') || this.failures.has('dead')) return;
    this.fail(
      'stalled',
      `recording store is not writing: nothing committed for ${Math.round((now - this.lastProgress) / 1000)} s ` +
        `(${this.sent} batches and ${this.pending.size} requests waiting; is the disk or filesystem hung?)`,
    );
  };

  private fail(kind: FailureKind, message: string): void {
    queueMicrotask(() => {
      this.checkDrained();
      this.dropQueue();
    });
    if (this.failures.has(kind)) return;
    const was = this.failed;
    this.failures.add(kind);
    if (!was && !this.closing) {
      try {
        this.opts.onFailure?.(new Error(message));
      } catch {
        // a failing callback must not break recording
      }
    }
  }

  private recover(kind: FailureKind): void {
    if (!this.failures.delete(kind)) return;
    if (!this.failed) {
      try {
        this.opts.onRecover?.();
      } catch {
        // ignore
      }
    }
  }
}

function liveView(r: SessionRecorder, stored: SessionIndexEntry | undefined): SessionIndexEntry {
  return {
    ...(stored ?? r.entry),
    status: 'live',
    bytes_from_client: r.bytesFromClient,
    bytes_to_client: r.bytesToClient,
    statements: r.statements,
    decisions: { ...r.decisions },
    frames: r.seq,
    dropped_frames: r.dropped,
  };
}

function matches(e: SessionIndexEntry, f: ListFilter): boolean {
  if (f.sub !== undefined && e.sub !== f.sub) return false;
  if (f.target !== undefined && e.target !== f.target) return false;
  if (f.status !== undefined && e.status !== f.status) return false;
  if (f.decision !== undefined && !(e.decisions[f.decision]! > 0)) return false;
  return true;
}

/** One process owns a store: refuse to open one that a running process holds. */
function claimOwnership(dbs: Dbs, dir: string): void {
  const owner = dbs.meta.get('owner') as { pid: number } | undefined;
  if (owner && owner.pid !== process.pid && pidAlive(owner.pid)) {
    throw new Error(`recording store ${dir} is in use by process ${owner.pid}; stop it first (one gateway per state directory)`);
  }
  const version = dbs.meta.get('format') as number | undefined;
  if (version !== undefined && version !== FORMAT_VERSION) {
    throw new Error(
      `recording store ${dir} has format ${version}; this Sluice reads format ${FORMAT_VERSION}. ` +
        'Move that directory aside (the Sluice version that wrote it still reads it) and start again to create a new store',
    );
  }
  dbs.env.transactionSync(() => {
    dbs.meta.putSync('format', FORMAT_VERSION);
    dbs.meta.putSync('owner', { pid: process.pid, since: new Date().toISOString() });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writerReady(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromWriter): void => {
      if (m.t !== 'ready') return;
      worker.off('message', onMessage);
      worker.off('error', onError);
      resolve();
    };
    const onError = (err: Error): void => {
      worker.off('message', onMessage);
      reject(new Error(`recording writer thread did not start: ${err.message}`));
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
  });
}

function spawnWriter(init: WriterInit): Worker {
  const self = import.meta.url;
  if (self.endsWith('.ts')) {
    // Running from source under tsx: hooks registered on the main thread do not reach workers on Node 20.
    const tsx = import.meta.resolve('tsx/esm/api');
    const entry = new URL('./writer.ts', self).href;
    const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
    return new Worker(code, { eval: true, workerData: init, resourceLimits: WRITER_LIMITS });
  }
  return new Worker(new URL('./writer.js', self), { workerData: init, resourceLimits: WRITER_LIMITS });
}

/**
 * The writer allocates one sealed Buffer per batch; a small young generation
 * keeps that garbage from growing the process (as for the main thread, see
 * bin/sluice.js).
 */
const WRITER_LIMITS = { maxYoungGenerationSizeMb: 4 };

export type { SessionIndexEntry, SessionMeta, StoreOptions, Frame, Signer } from './types.js';
export { Dir } from './types.js';
