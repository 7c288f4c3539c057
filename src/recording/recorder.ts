// SessionRecorder: the data-path side of recording. record() copies a frame into the session's
// current batch, a slot of the shared arena (frames.ts layout), and returns: no hashing, no
// encryption, no I/O on this thread. Full batches go to the writer thread in the next event-loop
// turn, partial ones after at most flushMs.
//
// When the arena has no free slot (many sessions, a writer behind), a frame is not dropped: it is
// copied aside (the session's overflow) and the session waits in the store's queue for slots, in
// order of arrival; `pressure` is true for it meanwhile, so its relay stops reading. Only a failed
// store drops frames.

import { BATCH_HEADER, FRAME_HEADER, NO_SEQ } from './frames.js';
import type { SessionIndexEntry } from './types.js';
import { Dir } from './types.js';

/** What a recorder needs from its store (implemented by RecordingStore). */
export interface RecorderHost {
  readonly arena: Buffer;
  /** A DataView of the arena (header fields: cheaper than Buffer#writeUInt32BE). */
  readonly view: DataView;
  readonly slotSize: number;
  readonly failed: boolean;
  /** True when the buffer to the writer is filling up (callers should slow down). */
  readonly pressure: boolean;
  /** Calls cb once the writer has caught up (or the store failed, so nobody waits forever). */
  whenDrained(cb: () => void): void;
  /**
   * Takes n free slots (returns false, taking none, if fewer are free or other sessions wait for
   * slots: those come first).
   */
  takeSlots(n: number, out: number[]): boolean;
  /** r has frames in its overflow: queue it for slots (its drainOverflow() is called as they free up). */
  waitForSlots(r: SessionRecorder): void;
  /** Most bytes one session may hold in its overflow (beyond: the relay ignored `pressure`). */
  readonly maxOverflow: number;
  /** Hands a finished batch to the writer; frames: the session's frames complete once it is stored. */
  sendBatch(h: number, slot: number, len: number, frames: number): void;
  /** Asks for flushPartial() within flushMs. */
  wantFlush(r: SessionRecorder): void;
  closeSession(r: SessionRecorder, fields: Partial<SessionIndexEntry>): Promise<void>;
  counters(r: SessionRecorder): void;
}

export class SessionRecorder {
  readonly id: string;
  /** Handle used with the writer thread. */
  readonly h: number;
  /** The index entry as started; live counters below. */
  readonly entry: SessionIndexEntry;

  seq = 0;
  statements = 0;
  decisions: Record<string, number> = {};
  bytesFromClient = 0;
  bytesToClient = 0;
  dropped = 0;
  private droppedBytes = 0;
  private droppedNoted = 0;
  private dropReason = '';
  private closing: Promise<void> | null = null;
  countersDirty = false;

  private readonly t0 = performance.now();
  private slot = -1; // current batch slot, -1 if none
  private base = 0; // arena offset of the slot
  private pos = 0; // arena offset of the next byte to write
  private end = 0; // arena offset where the slot ends
  private hasStart = false; // a frame starts in the current batch
  private pendingFlush = false;
  private readonly slots: number[] = [];
  /**
   * Frames waiting for arena slots, in order (each a copy of its payload): once a frame waits,
   * every later one queues behind it. Null when none waits (the usual case).
   */
  private overflow: Overflowed[] | null = null;
  private overflowBytes = 0;
  /** Index of the first frame of `overflow` not yet in the arena. */
  private overflowHead = 0;
  /** Callbacks waiting for the overflow to be written into the arena (whenDrained, close). */
  private overflowWaiters: (() => void)[] | null = null;

  constructor(
    private readonly host: RecorderHost,
    h: number,
    entry: SessionIndexEntry,
  ) {
    this.id = entry.id;
    this.h = h;
    this.entry = entry;
  }

  /**
   * The data path should pause until `whenDrained`: the store's buffer is filling, or this session's
   * frames wait for room in it.
   */
  get pressure(): boolean {
    return this.overflow !== null || this.host.pressure;
  }

  /** Calls cb once this session's frames are in the store's buffer and the writer has caught up. */
  whenDrained(cb: () => void): void {
    if (this.overflow === null) return this.host.whenDrained(cb);
    (this.overflowWaiters ??= []).push(() => this.host.whenDrained(cb));
  }

  /** Records bytes [offset, end) of payload; the bytes are copied, so payload may be reused at once. Never throws. */
  record(dir: Dir, payload: Buffer, offset = 0, end = payload.length): void {
    if (this.closing !== null) return;
    if (offset < 0 || end > payload.length || end < offset) {
      // Clamp like Buffer#copy does rather than throw into the data path.
      offset = Math.max(0, Math.min(offset, payload.length));
      end = Math.max(offset, Math.min(end, payload.length));
    }
    const len = end - offset;
    if (dir === Dir.ClientToGateway) this.bytesFromClient += len;
    else if (dir === Dir.GatewayToClient) this.bytesToClient += len;
    if (this.host.failed) {
      this.drop(len, GAP_FAILED);
      return;
    }
    const t = Math.floor((performance.now() - this.t0) * 1000);
    if (this.dropped !== this.droppedNoted && this.overflow === null) this.noteGap(t);
    if (this.overflow !== null || !this.put(dir, payload, offset, len, t)) this.spill(dir, payload, offset, len, t);
  }

  /** Records a JSON event (Dir.Event). */
  event(obj: Record<string, unknown>): void {
    if (this.closing !== null) return;
    this.eventJson(Buffer.from(JSON.stringify(obj), 'utf8'));
  }

  /** Records an event already serialised as JSON (UTF-8): for events repeated on the data path. */
  eventJson(json: Buffer): void {
    this.record(Dir.Event, json, 0, json.length);
  }

  /** Index counters: one decision of this kind (if given), and `statements` statements (default 1). */
  count(decision?: string, statements = 1): void {
    this.statements += statements;
    if (decision !== undefined) this.decisions[decision] = (this.decisions[decision] ?? 0) + 1;
    if (!this.countersDirty) {
      this.countersDirty = true;
      this.host.counters(this);
    }
  }

  /** Flushes, signs the chain head and marks the session closed. Idempotent. */
  close(summary: { reason: string; bytes_from_client: number; bytes_to_client: number }): Promise<void> {
    if (this.closing === null) {
      const fields: Partial<SessionIndexEntry> = {
        status: 'closed',
        ended_at: new Date().toISOString(),
        close_reason: summary.reason,
        bytes_from_client: summary.bytes_from_client,
        bytes_to_client: summary.bytes_to_client,
        statements: this.statements,
        decisions: { ...this.decisions },
      };
      const finish = (): Promise<void> => {
        this.flushPartial();
        return this.host.closeSession(this, { ...fields, dropped_frames: this.dropped });
      };
      this.noteGapIfAny();
      // Frames still waiting for room in the arena are written first (or dropped if the store fails).
      this.closing = this.overflow === null ? finish() : this.overflowWritten().then(finish);
    }
    return this.closing;
  }

  get closed(): boolean {
    return this.closing !== null;
  }

  /** Hands the current partial batch to the writer (called by the store's flush timer). */
  flushPartial(): void {
    this.pendingFlush = false;
    if (this.slot >= 0 && this.pos > this.base + BATCH_HEADER) this.finishBatch();
  }

  /** Frames waiting for room in the arena (for `flushed()`, which waits for them). */
  get overflowing(): boolean {
    return this.overflow !== null;
  }

  /**
   * Called by the store, in queue order, while slots are free: moves overflowed frames into the arena
   * in order. True once none is left (the session leaves the queue); false when it needs more slots
   * than are free (it stays at the head of the queue: a frame needs at most maxOverflow bytes of
   * slots, and every slot comes back once the writer has committed it).
   */
  drainOverflow(): boolean {
    const q = this.overflow;
    if (q === null) return true;
    while (this.overflowHead < q.length) {
      const f = q[this.overflowHead]!;
      if (!this.put(f.dir, f.data, 0, f.data.length, f.t)) return false;
      q[this.overflowHead++] = EMPTY_FRAME;
    }
    this.overflow = null;
    this.overflowBytes = 0;
    this.overflowHead = 0;
    this.releaseOverflowWaiters();
    return true;
  }

  /** The store failed: frames waiting for room are dropped (counted; a gap event marks them later). */
  dropOverflow(): void {
    const q = this.overflow;
    if (q === null) return;
    for (let i = this.overflowHead; i < q.length; i++) this.drop(q[i]!.data.length, GAP_FAILED);
    this.overflow = null;
    this.overflowBytes = 0;
    this.overflowHead = 0;
    this.releaseOverflowWaiters();
  }

  /** Resolves once no frame waits for room in the arena (a gap noted meanwhile included). */
  private overflowWritten(): Promise<void> {
    return new Promise<void>((resolve) => (this.overflowWaiters ??= []).push(resolve)).then(() => {
      if (!this.host.failed) this.noteGapIfAny();
      return this.overflow === null ? undefined : this.overflowWritten();
    });
  }

  private noteGapIfAny(): void {
    if (this.dropped !== this.droppedNoted && this.overflow === null) this.noteGap(Math.floor((performance.now() - this.t0) * 1000));
  }

  private releaseOverflowWaiters(): void {
    const w = this.overflowWaiters;
    if (w === null) return;
    this.overflowWaiters = null;
    for (const cb of w) cb();
  }

  private drop(len: number, reason: string): void {
    this.dropped++;
    this.droppedBytes += len;
    this.dropReason = reason;
  }

  /** Copies a frame aside until the arena has room for it (see the top of this file). */
  private spill(dir: Dir, payload: Buffer, offset: number, len: number, t: number, force = false): void {
    if (this.overflowBytes + len > this.host.maxOverflow && !force) {
      // Only a data path that ignores `pressure` (or one frame of over maxOverflow bytes) gets here:
      // memory stays bounded.
      this.drop(len, GAP_OVERFLOW);
      return;
    }
    const data = Buffer.allocUnsafe(len);
    payload.copy(data, 0, offset, offset + len);
    if (this.overflow === null) {
      this.overflow = [];
      // The partial batch goes to the writer now: its slot comes back sooner.
      this.flushPartial();
      this.host.waitForSlots(this);
    }
    this.overflow.push({ dir, t, data });
    this.overflowBytes += len;
  }

  /** Writes a `recording.gap` event for frames dropped since the last one (callers: no overflow). */
  private noteGap(t: number): void {
    const b = Buffer.from(
      JSON.stringify({ event: 'recording.gap', frames: this.dropped - this.droppedNoted, bytes: this.droppedBytes, reason: this.dropReason }),
      'utf8',
    );
    this.droppedNoted = this.dropped;
    this.droppedBytes = 0;
    // Only with no frame waiting for room (so at most one gap note waits): past the overflow's bound.
    if (!this.put(Dir.Event, b, 0, b.length, t)) this.spill(Dir.Event, b, 0, b.length, t, true);
  }

  private put(dir: Dir, payload: Buffer, offset: number, len: number, t: number): boolean {
    let p = this.pos;
    if (this.slot < 0 || this.end - p < FRAME_HEADER + len) {
      if (!this.reserve(len)) return false;
      p = this.pos;
    }
    const arena = this.host.arena;
    const view = this.host.view;
    const seq = this.seq++;
    if (!this.hasStart) {
      view.setUint32(this.base + 2, seq);
      this.hasStart = true;
    }
    view.setUint32(p, len);
    view.setUint32(p + 4, seq);
    view.setUint32(p + 8, Math.floor(t / 0x1_0000_0000));
    view.setUint32(p + 12, t >>> 0);
    arena[p + 16] = dir;
    p += FRAME_HEADER;
    let n = Math.min(len, this.end - p);
    // TypedArray#set rather than Buffer#copy, whose argument checks showed in profiles of the paced
    // bench next to the copy itself; the whole chunk (the usual case) needs no view.
    arena.set(n === payload.length ? payload : payload.subarray(offset, offset + n), p);
    this.pos = p + n;
    while (n < len) {
      // The payload continues in the next batch (slots reserved by reserve()).
      this.finishBatch(seq);
      const c = Math.min(len - n, this.host.slotSize - BATCH_HEADER);
      this.openBatch(this.slots.pop()!, c);
      payload.copy(arena, this.pos, offset + n, offset + n + c);
      this.pos += c;
      n += c;
    }
    if (this.end - this.pos < FRAME_HEADER + 1) this.finishBatch();
    else if (!this.pendingFlush) {
      this.pendingFlush = true;
      this.host.wantFlush(this);
    }
    return true;
  }

  /**
   * Takes every slot a frame of len bytes needs beyond the current batch, so that a frame is either
   * stored whole or dropped whole; opens a new batch if the header does not fit in the current one.
   */
  private reserve(len: number): boolean {
    const room = this.slot >= 0 ? this.end - this.pos : 0;
    const newBatch = room < FRAME_HEADER + (len > 0 ? 1 : 0);
    const per = this.host.slotSize - BATCH_HEADER;
    const rest = newBatch ? FRAME_HEADER + len : len - (room - FRAME_HEADER);
    const n = Math.ceil(rest / per);
    if (n > 0 && !this.host.takeSlots(n, this.slots)) return false;
    if (newBatch) {
      if (this.slot >= 0) this.finishBatch();
      this.openBatch(this.slots.pop()!, 0);
    }
    return true;
  }

  private openBatch(slot: number, cont: number): void {
    const view = this.host.view;
    this.slot = slot;
    this.base = slot * this.host.slotSize;
    this.end = this.base + this.host.slotSize;
    view.setUint16(this.base, cont);
    view.setUint32(this.base + 2, NO_SEQ);
    this.pos = this.base + BATCH_HEADER;
    this.hasStart = false;
  }

  /** frames: how many frames are complete once this batch is stored (default: all recorded so far). */
  private finishBatch(frames = this.seq): void {
    this.host.sendBatch(this.h, this.slot, this.pos - this.base, frames);
    this.slot = -1;
  }
}

const GAP_FAILED = 'the recording store failed';
const GAP_OVERFLOW = 'frames arrived faster than the recording store took them and the data path did not pause';

interface Overflowed {
  dir: Dir;
  /** µs since start, taken when record() was called. */
  t: number;
  data: Buffer;
}

const EMPTY_FRAME: Overflowed = { dir: Dir.Event, t: 0, data: Buffer.alloc(0) };
