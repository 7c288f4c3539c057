// SessionRecorder: the data-path side of recording. record() copies a frame into the session's
// current batch, a slot of the shared arena (frames.ts layout), and returns: no hashing, no
// encryption, no I/O on this thread. Full batches go to the writer thread in the next event-loop
// turn, partial ones after at most flushMs.

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
  /** Takes n free slots (returns false, taking none, if fewer are free). */
  takeSlots(n: number, out: number[]): boolean;
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

  constructor(
    private readonly host: RecorderHost,
    h: number,
    entry: SessionIndexEntry,
  ) {
    this.id = entry.id;
    this.h = h;
    this.entry = entry;
  }

  /** The store's buffer is filling: the data path should pause until `whenDrained`. */
  get pressure(): boolean {
    return this.host.pressure;
  }

  whenDrained(cb: () => void): void {
    this.host.whenDrained(cb);
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
    if (this.host.failed || (this.dropped !== this.droppedNoted && !this.noteGap())) {
      this.drop(len);
      return;
    }
    if (!this.put(dir, payload, offset, len)) this.drop(len);
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
      if (this.dropped !== this.droppedNoted) this.noteGap();
      this.flushPartial();
      this.closing = this.host.closeSession(this, {
        status: 'closed',
        ended_at: new Date().toISOString(),
        close_reason: summary.reason,
        bytes_from_client: summary.bytes_from_client,
        bytes_to_client: summary.bytes_to_client,
        statements: this.statements,
        decisions: { ...this.decisions },
        dropped_frames: this.dropped,
      });
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

  private drop(len: number): void {
    this.dropped++;
    this.droppedBytes += len;
  }

  /** Writes a `recording.gap` event for frames dropped since the last one; false if it cannot. */
  private noteGap(): boolean {
    const b = Buffer.from(
      JSON.stringify({ event: 'recording.gap', frames: this.dropped - this.droppedNoted, bytes: this.droppedBytes, reason: 'recording store failing or falling behind' }),
      'utf8',
    );
    if (!this.put(Dir.Event, b, 0, b.length)) return false;
    this.droppedNoted = this.dropped;
    this.droppedBytes = 0;
    return true;
  }

  private put(dir: Dir, payload: Buffer, offset: number, len: number): boolean {
    let p = this.pos;
    if (this.slot < 0 || this.end - p < FRAME_HEADER + len) {
      if (!this.reserve(len)) return false;
      p = this.pos;
    }
    const arena = this.host.arena;
    const view = this.host.view;
    const seq = this.seq++;
    const t = Math.floor((performance.now() - this.t0) * 1000);
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
