// Messages between the RecordingStore (main thread) and its writer thread (writer.ts).
//
// Frames travel through a SharedArrayBuffer cut into batch-sized slots: the main thread writes a
// batch's plaintext into a slot and appends {session, slot, len, frames} to a shared ring (BatchRing),
// without a message; the writer seals and stores it, then hands the slot back ('free'). The writer
// reads the ring when it wakes for its own drain timer, for a message, or when the main thread wakes
// it with a 'poll' message: only when the writer said it is idle or much is waiting, at most once per
// event-loop turn. Every other message is small and goes through postMessage; the writer reads the
// ring before handling each message, so a message sees every batch appended before it was sent.

import type { SessionIndexEntry } from './types.js';

export interface WriterInit {
  dir: string;
  mapSize: number;
  arena: SharedArrayBuffer;
  slotSize: number;
  /** BatchRing's shared memory. */
  ring: SharedArrayBuffer;
  /** Longest a batch waits in the writer before it is sealed and put (ms). */
  drainMs: number;
  /** Queued batches that make the writer seal and put them at once; also the most it puts in one transaction. */
  drainSlots: number;
  /** Batches in flight (handed over, not committed) at which the data path pauses. */
  pressureSlots: number;
  /** Estimated bytes in use at open (budget accounting). */
  usedBytes: number;
  keyId: string;
  auditKey: Uint8Array;
  /** Drop the data file from the page cache every 64 MiB stored (page-cache.ts). */
  dropPageCache: boolean;
}

export type ToWriter =
  | { t: 'start'; h: number; entry: SessionIndexEntry; dataKey: Uint8Array; noncePrefix: Uint8Array }
  /** Batches are waiting in the ring. */
  | { t: 'poll' }
  | { t: 'counters'; h: number; statements: number; decisions: Record<string, number>; dropped: number }
  | { t: 'close'; h: number; req: number; fields: Partial<SessionIndexEntry> }
  | { t: 'finish'; h: number; req: number; entry: SessionIndexEntry }
  | { t: 'audit'; ms: number; counter: number; json: string; fields: AuditFields }
  | { t: 'flush'; req: number }
  | { t: 'prune'; req: number; sessions: { id: string; startedMs: number; bytes: number }[] }
  | { t: 'shutdown'; req: number };

/** The fields of an audit event kept in clear for filtering. */
export interface AuditFields {
  ts: string;
  sub?: string;
  target?: string;
  decision?: string;
  session?: string;
}

export type FromWriter =
  | { t: 'free'; slots: number[] }
  | { t: 'head'; req: number; entry: SessionIndexEntry }
  | { t: 'ack'; req: number }
  | { t: 'failure'; message: string }
  | { t: 'recovered' }
  /** Worth a log line, not a failure (the store works on). */
  | { t: 'notice'; message: string }
  | { t: 'ready' };

/**
 * Estimated bytes a value takes in the LMDB file. Measured with lmdb-js 3.5 on 4 KiB pages: a value
 * above ~2000 bytes goes to overflow pages and k pages hold at most k·4096−24 bytes; smaller values
 * share leaf pages, which interleaved inserts leave about half full.
 */
export function storedCost(valueLength: number, keyLength: number): number {
  if (valueLength + keyLength > 1900) return Math.ceil((valueLength + 24) / 4096) * 4096;
  return 2 * (valueLength + keyLength + 16);
}

/**
 * Batch handoff from the main thread (one producer) to the writer (one consumer) in shared memory:
 * a ring of {h, slot, len, frames} entries. It never overflows: an entry holds an arena slot until
 * the writer has consumed it, and the ring has at least as many entries as the arena has slots.
 *
 * Layout (Int32): [0] entries appended (main), [1] entries consumed (writer), [2] 1 while the writer
 * is idle and wants a 'poll' message for the next entry, [3] unused, then 4 Int32 per entry.
 */
export class BatchRing {
  static create(slots: number): SharedArrayBuffer {
    let cap = 1;
    while (cap < slots) cap *= 2;
    const sab = new SharedArrayBuffer((4 + 4 * cap) * 4);
    new Int32Array(sab)[2] = 1; // the writer starts idle
    return sab;
  }

  private readonly a: Int32Array;
  private readonly mask: number;
  /** Appended (main) or consumed (writer) so far, as this side knows it. */
  private n: number;

  constructor(sab: SharedArrayBuffer, side: 'main' | 'writer') {
    this.a = new Int32Array(sab);
    this.mask = (this.a.length - 4) / 4 - 1;
    this.n = Atomics.load(this.a, side === 'main' ? 0 : 1);
  }

  /** Main: appends an entry; returns true if the writer is idle and must be sent a 'poll'. */
  push(h: number, slot: number, len: number, frames: number): boolean {
    const i = 4 + ((this.n & this.mask) << 2);
    const a = this.a;
    a[i] = h;
    a[i + 1] = slot;
    a[i + 2] = len;
    a[i + 3] = frames;
    this.n = (this.n + 1) | 0;
    Atomics.store(a, 0, this.n);
    return Atomics.load(a, 2) === 1 && Atomics.compareExchange(a, 2, 1, 0) === 1;
  }

  /** Writer: entries waiting. */
  get waiting(): number {
    return (Atomics.load(this.a, 0) - this.n) | 0;
  }

  /** Writer: the next entry (valid until shift()). */
  peek(): { h: number; slot: number; len: number; frames: number } {
    const i = 4 + ((this.n & this.mask) << 2);
    const a = this.a;
    return { h: a[i]!, slot: a[i + 1]!, len: a[i + 2]!, frames: a[i + 3]! };
  }

  /** Writer: consumes the entry peek() returned. */
  shift(): void {
    this.n = (this.n + 1) | 0;
    Atomics.store(this.a, 1, this.n);
  }

  /**
   * Writer: declares itself idle (the main thread sends a 'poll' with the next entry). Returns false,
   * staying busy, if entries arrived meanwhile.
   */
  idle(): boolean {
    Atomics.store(this.a, 2, 1);
    if (this.waiting === 0) return true;
    Atomics.store(this.a, 2, 0);
    return false;
  }
}
