// Binary LMDB keys (keyEncoding 'binary'; LMDB compares keys bytewise, so these sort as documented).
//
//   frames      utf8(session id) ‖ 0x00 ‖ u32be(batch)      a session's batches are contiguous, in order
//   by_start    u64be(started_at ms) ‖ utf8(session id)     sessions in start order (list, prune)
//   audit       u64be(epoch ms) ‖ u32be(counter) ‖ 4 random  audit events in time order
//
// Session ids are non-empty, at most 200 bytes of UTF-8, without NUL (checked by checkSessionId).

const enc = new TextEncoder();

export function checkSessionId(id: string): Buffer {
  const b = Buffer.from(id, 'utf8');
  if (b.length === 0 || b.length > 200 || b.includes(0)) {
    throw new Error(`invalid session id ${JSON.stringify(id)}: 1 to 200 bytes of UTF-8 without NUL`);
  }
  return b;
}

/** The key prefix of a session's batches (id ‖ 0x00). */
export function framePrefix(id: string): Buffer {
  const idb = enc.encode(id);
  const k = Buffer.allocUnsafe(idb.length + 1);
  k.set(idb, 0);
  k[idb.length] = 0;
  return k;
}

export function frameKey(prefix: Buffer, batch: number): Buffer {
  const k = Buffer.allocUnsafe(prefix.length + 4);
  prefix.copy(k, 0);
  k.writeUInt32BE(batch, prefix.length);
  return k;
}

/** [start, end) covering every batch of the session with this prefix. */
export function frameRange(prefix: Buffer): { start: Buffer; end: Buffer } {
  const end = Buffer.from(prefix);
  end[end.length - 1] = 1;
  return { start: prefix, end };
}

export function batchOfKey(key: Uint8Array, prefixLength: number): number {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).readUInt32BE(prefixLength);
}

function u64be(b: Buffer, v: number, off: number): void {
  b.writeUInt32BE(Math.floor(v / 0x1_0000_0000), off);
  b.writeUInt32BE(v >>> 0, off + 4);
}

export function readU64be(b: Uint8Array, off: number): number {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return v.readUInt32BE(off) * 0x1_0000_0000 + v.readUInt32BE(off + 4);
}

export function timeKey(ms: number, id: string): Buffer {
  const idb = enc.encode(id);
  const k = Buffer.allocUnsafe(8 + idb.length);
  u64be(k, Math.max(0, ms), 0);
  k.set(idb, 8);
  return k;
}

/** Bound for time-ordered keys: every key of an instant >= ms sorts at or after timeBound(ms). */
export function timeBound(ms: number): Buffer {
  const k = Buffer.alloc(8);
  u64be(k, Math.max(0, ms), 0);
  return k;
}

export function idOfTimeKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset + 8, key.byteLength - 8).toString('utf8');
}

export function auditKey(ms: number, counter: number, tail: Buffer): Buffer {
  const k = Buffer.allocUnsafe(16);
  u64be(k, ms, 0);
  k.writeUInt32BE(counter >>> 0, 8);
  tail.copy(k, 12, 0, 4);
  return k;
}
