// Opening the recording store from the config: master keys, the gateway's
// signing key as the chain signer, background retention. Used by the gateway
// and by the CLI commands that read recordings.

import { createPublicKey, sign, verify } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { RecordingConfig, SecretRef, SluiceConfig } from '../config/types.js';
import { resolveSecret } from '../config/secrets.js';
import { loadOrCreateSecret } from '../config/state-secrets.js';
import { loadOrCreateSigningKey } from '../identity/signing-key.js';
import { RecordingStore, type StoreOptions } from './store.js';

/** A master key from config: 32 bytes as base64 (44 chars) or hex (64 chars). */
function decodeKey(text: string, label: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32) throw new Error(`${label} must be 32 bytes, as 64 hex characters or base64 (openssl rand -base64 32)`);
  return key;
}

async function keyFrom(ref: SecretRef, cfg: SluiceConfig, label: string): Promise<Buffer> {
  return decodeKey(await resolveSecret(ref, dirname(cfg.source || '.'), { label }), label);
}

export async function openRecordingStore(
  cfg: SluiceConfig,
  hooks: Pick<StoreOptions, 'onFailure' | 'onRecover' | 'onNotice'> & { readOnly?: boolean } = {},
): Promise<RecordingStore> {
  const rc: RecordingConfig = cfg.recording;
  const key = rc.master_key
    ? await keyFrom(rc.master_key, cfg, 'recording.master_key')
    : await loadOrCreateSecret(cfg.state_dir, 'recording.key');
  const oldKeys: Record<string, Buffer> = {};
  for (const [id, ref] of Object.entries(rc.old_keys)) oldKeys[id] = await keyFrom(ref, cfg, `recording.old_keys.${id}`);
  const sk = await loadOrCreateSigningKey(cfg.state_dir);
  const publicKey = createPublicKey(sk.privateKey);
  return RecordingStore.open({
    dir: join(cfg.state_dir, 'recordings'),
    masterKey: { id: rc.key_id, key },
    oldKeys,
    signer: {
      kid: sk.kid,
      sign: (data) => sign(null, data, sk.privateKey),
      verify: (data, sig) => verify(null, data, publicKey, sig),
    },
    mapSize: rc.map_size,
    // With backpressure on the data path a small buffer suffices. 512 slots of 32 KB: slots are
    // reused last-freed first and only touched pages are resident, so this is ~2-3 MB resident under
    // a bulk transfer (the 4 MiB in-flight bound) and a page or two per session with a partial batch.
    bufferBytes: 16 << 20,
    dropPageCache: rc.page_cache === 'drop',
    ...hooks,
  });
}

/** Prunes by retention and size budget now and then every hour; returns a stopper. */
export function startRetention(store: RecordingStore, rc: RecordingConfig, log: (msg: string, n: { sessions: number; bytes: number }) => void): () => void {
  const run = () => {
    const r = store.prune({
      olderThan: rc.retention > 0 ? new Date(Date.now() - rc.retention) : undefined,
      maxBytes: rc.max_size > 0 ? rc.max_size : undefined,
    });
    if (r.sessions) log('recordings pruned', r);
  };
  run();
  const t = setInterval(run, 3600_000);
  t.unref();
  return () => clearInterval(t);
}
