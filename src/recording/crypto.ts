// Encryption at rest: AES-256-GCM everywhere.
//
// - Each session has a random 256-bit data key, wrapped with the master key:
//     wrapped = nonce(12, random) ‖ ciphertext(32) ‖ tag(16),  AAD = "sluice/rec/dk/v1" ‖ 0 ‖ key_id ‖ 0 ‖ session id
// - Each batch of frames is sealed with the session's data key:
//     value   = 0x01 ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//     nonce   = 4 random bytes (per session) ‖ u64be(batch)        unique per (data key, batch)
//     AAD     = "sluice/rec/batch/v1" ‖ 0 ‖ session id ‖ 0 ‖ u32be(batch)
//   so a batch moved to another position or session fails authentication.
// - Audit events are sealed one by one with a key derived from the master key
//   (HKDF-SHA256, info "sluice/rec/audit/v1"), random nonces, AAD = "sluice/rec/audit/v1" ‖ key ‖ key_id.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export const VALUE_VERSION = 1;
/** Bytes a sealed batch adds to its plaintext: version, nonce, tag. */
export const SEAL_OVERHEAD = 1 + 12 + 16;

const DK_AAD = 'sluice/rec/dk/v1';
const BATCH_AAD = Buffer.from('sluice/rec/batch/v1\0', 'latin1');
const AUDIT_INFO = 'sluice/rec/audit/v1';

export function checkKey(key: Buffer, what: string): void {
  if (!Buffer.isBuffer(key) || key.length !== 32) throw new Error(`${what} must be 32 bytes, got ${Buffer.isBuffer(key) ? key.length : typeof key}`);
}

function dkAad(keyId: string, session: string): Buffer {
  return Buffer.from(`${DK_AAD}\0${keyId}\0${session}`, 'utf8');
}

export function wrapDataKey(master: Buffer, keyId: string, session: string, dataKey: Buffer): string {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', master, nonce);
  c.setAAD(dkAad(keyId, session));
  const ct = Buffer.concat([c.update(dataKey), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64');
}

export function unwrapDataKey(master: Buffer, keyId: string, session: string, wrapped: string): Buffer {
  const b = Buffer.from(wrapped, 'base64');
  if (b.length !== 12 + 32 + 16) throw new Error(`session ${session}: wrapped data key has ${b.length} bytes, expected 60`);
  const d = createDecipheriv('aes-256-gcm', master, b.subarray(0, 12));
  d.setAAD(dkAad(keyId, session));
  d.setAuthTag(b.subarray(44));
  try {
    return Buffer.concat([d.update(b.subarray(12, 44)), d.final()]);
  } catch {
    throw new Error(`session ${session}: cannot unwrap its data key with master key ${keyId} (wrong key, or the index entry was altered)`);
  }
}

/** Associated data of one batch: binds the ciphertext to its session and position. */
export function batchAad(session: Buffer, batch: number): Buffer {
  const a = Buffer.allocUnsafe(BATCH_AAD.length + session.length + 5);
  BATCH_AAD.copy(a, 0);
  session.copy(a, BATCH_AAD.length);
  a[BATCH_AAD.length + session.length] = 0;
  a.writeUInt32BE(batch, BATCH_AAD.length + session.length + 1);
  return a;
}

/**
 * Seals a batch: 0x01 ‖ nonce ‖ ciphertext ‖ tag. Into `into` when given (at least SEAL_OVERHEAD +
 * plain.length bytes; the result is a view of it), so that callers can reuse value buffers.
 */
export function sealBatch(dataKey: Buffer, noncePrefix: Buffer, batch: number, aad: Buffer, plain: Uint8Array, into?: Buffer): Buffer {
  const size = SEAL_OVERHEAD + plain.length;
  const out = into ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  out[0] = VALUE_VERSION;
  noncePrefix.copy(out, 1, 0, 4);
  out.writeUInt32BE(Math.floor(batch / 0x1_0000_0000), 5);
  out.writeUInt32BE(batch >>> 0, 9);
  const c = createCipheriv('aes-256-gcm', dataKey, out.subarray(1, 13));
  c.setAAD(aad);
  const n = c.update(plain).copy(out, 13);
  c.final();
  c.getAuthTag().copy(out, 13 + n);
  return out;
}

/** Decrypts a batch value; throws if it was altered, moved or truncated. */
export function openBatch(dataKey: Buffer, aad: Buffer, value: Uint8Array): Buffer {
  const v = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (v.length < SEAL_OVERHEAD || v[0] !== VALUE_VERSION) throw new Error('not a sealed batch (bad length or version)');
  const d = createDecipheriv('aes-256-gcm', dataKey, v.subarray(1, 13));
  d.setAAD(aad);
  d.setAuthTag(v.subarray(v.length - 16));
  const plain = d.update(v.subarray(13, v.length - 16));
  d.final(); // throws on a bad tag
  return plain;
}

export function auditKeyFrom(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), AUDIT_INFO, 32));
}

function auditAad(key: Uint8Array, keyId: string): Buffer {
  return Buffer.concat([Buffer.from(AUDIT_INFO + '\0', 'latin1'), key, Buffer.from('\0' + keyId, 'utf8')]);
}

/** nonce(12) ‖ ciphertext ‖ tag(16) */
export function sealAudit(auditKey: Buffer, keyId: string, dbKey: Uint8Array, plain: Buffer): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', auditKey, nonce);
  c.setAAD(auditAad(dbKey, keyId));
  const ct = c.update(plain);
  c.final();
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

export function openAudit(auditKey: Buffer, keyId: string, dbKey: Uint8Array, sealed: Uint8Array): Buffer {
  const s = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (s.length < 28) throw new Error('sealed audit event too short');
  const d = createDecipheriv('aes-256-gcm', auditKey, s.subarray(0, 12));
  d.setAAD(auditAad(dbKey, keyId));
  d.setAuthTag(s.subarray(s.length - 16));
  const plain = d.update(s.subarray(12, s.length - 16));
  d.final();
  return plain;
}
