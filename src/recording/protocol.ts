// Messages between the RecordingStore (main thread) and its writer thread (writer.ts).
//
// Frames travel through a SharedArrayBuffer cut into batch-sized slots: the main thread writes a
// batch's plaintext into a slot and sends only {slot, len}; the writer seals and stores it, then
// hands the slot back. Every other message is small.

import type { SessionIndexEntry } from './types.js';

export interface WriterInit {
  dir: string;
  mapSize: number;
  arena: SharedArrayBuffer;
  slotSize: number;
  /** Estimated bytes in use at open (budget accounting). */
  usedBytes: number;
  keyId: string;
  auditKey: Uint8Array;
}

export type ToWriter =
  | { t: 'start'; h: number; entry: SessionIndexEntry; dataKey: Uint8Array; noncePrefix: Uint8Array }
  | { t: 'batch'; h: number; slot: number; len: number }
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
