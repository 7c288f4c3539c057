// Tamper evidence: a SHA-256 hash chain over a session's frames, and the signed head.
//
//   h_0 = SHA-256(utf8(session id))
//   h_n = SHA-256(h_{n-1} ‖ u32be(seq) ‖ u64be(t_us) ‖ u8(dir) ‖ payload)
//
// The bytes after h_{n-1} are exactly a stored frame minus its 4-byte length (frames.ts), so the
// writer hashes frames in place. At close the head (last seq, h_n, frame count) is signed together
// with the session's identity fields (headMessage).

import { createHash, hash } from 'node:crypto';
import { sha256Prefixed } from './sha256.js';
import type { ChainHead, SessionIndexEntry } from './types.js';

export function chainStart(session: string): Buffer {
  return createHash('sha256').update(session, 'utf8').digest();
}

const scratch = Buffer.allocUnsafe(32 + 16 * 1024);
/** Frames up to this many chain bytes (3 SHA-256 blocks with h_{n-1}) hash faster in JS (sha256.ts). */
const JS_MAX = 150;

/** state = h_n, from state = h_{n-1} and a frame's seq ‖ t_us ‖ dir ‖ payload bytes, buf[start..end). */
export function chainStep(state: Buffer, buf: Uint8Array, start: number, end: number): void {
  const n = end - start;
  if (n <= JS_MAX) {
    sha256Prefixed(state, buf, start, end, state);
  } else if (n <= scratch.length - 32) {
    // One native call over a scratch copy: cheaper than createHash().update().update().
    scratch.set(state, 0);
    scratch.set(buf.subarray(start, end), 32);
    hash('sha256', scratch.subarray(0, 32 + n), 'buffer').copy(state);
  } else {
    createHash('sha256').update(state).update(buf.subarray(start, end)).digest().copy(state);
  }
}

/** The bytes the signer signs for a session's head: canonical JSON, one key order. */
export function headMessage(e: SessionIndexEntry, head: Pick<ChainHead, 'seq' | 'hash' | 'frames'>): Buffer {
  return Buffer.from(
    JSON.stringify({
      type: 'sluice.recording.head.v1',
      session: e.id,
      status: e.status,
      seq: head.seq,
      frames: head.frames,
      hash: head.hash,
      key_id: e.key_id,
      protocol: e.protocol,
      target: e.target,
      sub: e.sub,
      issuer: e.issuer,
      started_at: e.started_at,
      ended_at: e.ended_at ?? null,
    }),
    'utf8',
  );
}
