// Crash recovery at open: sessions still 'live' in the index belong to a run that ended without
// closing them (kill -9, power loss). Their committed batches are intact (LMDB commits are atomic
// and lmdb-js commits a thread's writes in order), so each such session is read back, its chain
// head recomputed over the complete frames found, signed, and the session marked 'interrupted'.

import { headMessage } from './chain.js';
import type { Dbs } from './db.js';
import { framePrefix, frameRange } from './keys.js';
import { storedCost } from './protocol.js';
import { dataKeyOf, scanSession, type Keyring } from './read.js';
import type { SessionIndexEntry, Signer } from './types.js';

/** Recovers interrupted sessions; returns the estimated bytes the store holds (for the budget). */
export function recoverInterrupted(dbs: Dbs, ring: Keyring, signer: Signer): number {
  let used = 0;
  const fixes: SessionIndexEntry[] = [];
  for (const { value: e } of dbs.sessions.getRange({})) {
    if (e.status === 'live') fixes.push(recoverOne(dbs, ring, signer, e));
    else used += e.stored_bytes + 1024;
  }
  for (const e of fixes) used += e.stored_bytes + 1024;
  if (fixes.length) dbs.env.transactionSync(() => fixes.forEach((e) => dbs.sessions.putSync(e.id, e)));
  used += dbs.audit.getCount() * storedCost(400, 16); // an estimate: audit events are small
  return used;
}

function recoverOne(dbs: Dbs, ring: Keyring, signer: Signer, e: SessionIndexEntry): SessionIndexEntry {
  const r: SessionIndexEntry = { ...e, status: 'interrupted' };
  let note = '';
  try {
    const s = scanSession(dbs, e, dataKeyOf(ring, e));
    if (s.error) note = `; reading stopped at seq ${s.error.seq}: ${s.error.reason}`;
    r.frames = s.frames;
    r.batches = s.batches;
    r.bytes_from_client = s.bytesFromClient;
    r.bytes_to_client = s.bytesToClient;
    r.ended_at = new Date(Date.parse(e.started_at) + Math.floor(s.lastTUs / 1000)).toISOString();
    r.head = { seq: s.frames - 1, hash: s.hash.toString('hex'), frames: s.frames };
    r.stored_bytes = 0;
    for (const { key, value } of dbs.frames.getRange(frameRange(framePrefix(e.id)))) {
      r.stored_bytes += storedCost(value.length, key.length);
    }
  } catch (err) {
    note = `; its frames cannot be read: ${(err as Error).message}`;
    r.ended_at = e.started_at;
  }
  r.close_reason = `recording interrupted: the gateway stopped without closing the session (recovered at the next start, time of the last frame)${note}`;
  if (r.head) {
    r.head.signature = signer.sign(headMessage(r, r.head)).toString('base64url');
    r.head.kid = signer.kid;
  }
  return r;
}
