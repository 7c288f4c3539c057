// Reading a session's batches back: decryption, frame reassembly, chain recomputation. Used by
// frames(), verify() and the crash recovery at open.

import { chainBatch, chainStart } from './chain.js';
import { batchAad, openBatch, unwrapDataKey } from './crypto.js';
import type { Dbs } from './db.js';
import { FormatError, FrameAssembler, NO_SEQ } from './frames.js';
import { batchOfKey, frameKey, framePrefix, frameRange } from './keys.js';
import { Dir, type Frame, type SessionIndexEntry } from './types.js';

export interface Keyring {
  current: { id: string; key: Buffer };
  old: Record<string, Buffer>;
}

export function keyFor(ring: Keyring, keyId: string): Buffer {
  if (keyId === ring.current.id) return ring.current.key;
  const k = ring.old[keyId];
  if (!k) throw new Error(`master key ${JSON.stringify(keyId)} is needed to read this data but was not provided (pass it in oldKeys)`);
  return k;
}

export function dataKeyOf(ring: Keyring, e: SessionIndexEntry): Buffer {
  return unwrapDataKey(keyFor(ring, e.key_id), e.key_id, e.id, e.wrapped_key);
}

export interface ScanResult {
  frames: number;
  /** the chain over the batches read (chain.ts) */
  hash: Buffer;
  /** batches read without error (0 … batches-1) */
  batches: number;
  lastTUs: number;
  bytesFromClient: number;
  bytesToClient: number;
  /** the first problem, if any: reading stopped there */
  error?: { seq: number; reason: string };
}

/**
 * Reads every batch of a session in order, recomputing the chain over the stored values and
 * reassembling the frames; stops at the first problem. `frames` counts complete frames (a frame whose
 * tail was never committed, after a crash, is not counted; its batch is in the chain).
 */
export function scanSession(dbs: Dbs, e: SessionIndexEntry, dataKey: Buffer): ScanResult {
  const idBuf = Buffer.from(e.id, 'utf8');
  const prefix = framePrefix(e.id);
  const asm = new FrameAssembler();
  const r: ScanResult = { frames: 0, hash: chainStart(e.id), batches: 0, lastTUs: 0, bytesFromClient: 0, bytesToClient: 0 };
  const sink = (_seq: number, tUs: number, dir: number, buf: Buffer, start: number, end: number): void => {
    r.frames++;
    r.lastTUs = tUs;
    if (dir === Dir.ClientToGateway) r.bytesFromClient += end - start - 13;
    else if (dir === Dir.GatewayToClient) r.bytesToClient += end - start - 13;
  };
  const firstBad = (): number => (asm.pendingSeq >= 0 ? asm.pendingSeq : asm.nextSeq);
  for (const { key, value } of dbs.frames.getRange({ ...frameRange(prefix), snapshot: true })) {
    const batch = batchOfKey(key, prefix.length);
    if (batch !== r.batches) {
      r.error = { seq: firstBad(), reason: batch > r.batches ? `batch ${r.batches} is missing` : `batch ${batch} is out of order` };
      return r;
    }
    let plain: Buffer;
    try {
      plain = openBatch(dataKey, batchAad(idBuf, batch), value);
    } catch {
      r.error = { seq: firstBad(), reason: `batch ${batch} fails authentication (altered, moved or truncated)` };
      return r;
    }
    chainBatch(r.hash, value);
    try {
      asm.push(plain, sink);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      r.error = { seq: firstBad(), reason: `batch ${batch} is malformed: ${err.message}` };
      return r;
    }
    r.batches++;
  }
  return r;
}

function firstSeqOf(dbs: Dbs, e: SessionIndexEntry, dataKey: Buffer, prefix: Buffer, batch: number): number | undefined {
  const v = dbs.frames.getBinary(frameKey(prefix, batch));
  if (v === undefined) return undefined;
  return openBatch(dataKey, batchAad(Buffer.from(e.id, 'utf8'), batch), v).readUInt32BE(2);
}

/** The last batch in which a frame with seq <= fromSeq starts (binary search, decrypting log n batches). */
function startBatch(dbs: Dbs, e: SessionIndexEntry, dataKey: Buffer, prefix: Buffer, fromSeq: number): number {
  let lo = 0;
  let hi = dbs.frames.getKeysCount(frameRange(prefix)) - 1;
  let best = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    let m = mid;
    let s = firstSeqOf(dbs, e, dataKey, prefix, m);
    while (s === NO_SEQ && m > lo) s = firstSeqOf(dbs, e, dataKey, prefix, --m);
    if (s === undefined || s === NO_SEQ) lo = mid + 1;
    else if (s <= fromSeq) {
      best = m;
      lo = mid + 1;
    } else hi = m - 1;
  }
  return best;
}

/** Frames of a session, decrypted and in order; throws on a batch that fails authentication. */
export function* readFrames(dbs: Dbs, e: SessionIndexEntry, dataKey: Buffer, fromSeq = 0): Generator<Frame> {
  const idBuf = Buffer.from(e.id, 'utf8');
  const prefix = framePrefix(e.id);
  const first = fromSeq > 0 ? startBatch(dbs, e, dataKey, prefix, fromSeq) : 0;
  const asm = new FrameAssembler();
  let expect = first;
  const out: Frame[] = [];
  const sink = (seq: number, tUs: number, dir: number, buf: Buffer, start: number, end: number): void => {
    if (seq >= fromSeq) out.push({ session: e.id, seq, t_us: tUs, dir: dir as Dir, payload: buf.subarray(start + 13, end) });
  };
  for (const { key, value } of dbs.frames.getRange({ start: frameKey(prefix, first), end: frameRange(prefix).end })) {
    const batch = batchOfKey(key, prefix.length);
    if (batch !== expect) throw new Error(`session ${e.id}: batch ${expect} is missing (run verify)`);
    let plain: Buffer;
    try {
      plain = openBatch(dataKey, batchAad(idBuf, batch), value);
    } catch {
      throw new Error(`session ${e.id}: batch ${batch} fails authentication (run verify)`);
    }
    if (batch === first && first > 0) asm.resumeAt(plain);
    asm.push(plain, sink);
    expect++;
    yield* out;
    out.length = 0;
  }
}
