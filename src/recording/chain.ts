// Tamper evidence: a SHA-256 hash chain over a session's stored batch values, and the signed head.
//
//   h_0     = SHA-256("sluice/rec/chain/v2" ‖ 0x00 ‖ utf8(session id))
//   h_{b+1} = SHA-256(h_b ‖ value_b)        value_b: batch b exactly as stored (sealed, crypto.ts)
//
// One hash per batch (up to 32 KB) instead of one per frame: the writer hashes the value it is about to
// put, and a verifier recomputes the chain from the stored values alone (no key needed for that
// part). Frames inside a batch are covered through the batch's AES-GCM tag, and the batch through
// the chain. At close the head (last seq, h_B, frame count) is signed together with the session's
// identity fields (headMessage).

import { createHash, hash } from 'node:crypto';
import type { ChainHead, SessionIndexEntry } from './types.js';

const CHAIN_DOMAIN = 'sluice/rec/chain/v2\0';

export function chainStart(session: string): Buffer {
  return createHash('sha256').update(CHAIN_DOMAIN, 'latin1').update(session, 'utf8').digest();
}

/** state = h_{b+1}, from state = h_b and the stored value of batch b. */
export function chainBatch(state: Buffer, value: Uint8Array): void {
  createHash('sha256').update(state).update(value).digest().copy(state);
}

/**
 * The same, for a value at buf[32, 32 + valueLength) with 32 bytes of room before it (the writer's
 * value buffers): state goes into that room and one `crypto.hash` call covers both, with no Hash
 * object (whose native state would wait for a GC).
 */
export function chainBatchInPlace(state: Buffer, buf: Buffer, valueLength: number): void {
  state.copy(buf, 0);
  hash('sha256', buf.subarray(0, 32 + valueLength), 'buffer').copy(state);
}

/** The bytes the signer signs for a session's head: canonical JSON, one key order. */
export function headMessage(e: SessionIndexEntry, head: Pick<ChainHead, 'seq' | 'hash' | 'frames'>): Buffer {
  return Buffer.from(
    JSON.stringify({
      type: 'sluice.recording.head.v2',
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
