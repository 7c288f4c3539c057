// Host keys: the listener's own (generated into state_dir on first start, its
// fingerprint logged at start) and the check of a target's key against
// `targets.<t>.host_key`.

import { randomBytes } from 'node:crypto';
import { access, link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { SshTargetConfig } from '../../config/types.js';
import { fingerprintOf, normalizeFingerprint, parseKnownHostsLine } from './known-hosts.js';

const { utils } = ssh2;

export interface ListenerHostKey {
  /** The private key text (OpenSSH or PEM) for ssh2's Server. */
  key: Buffer;
  path: string;
  type: string;
  fingerprint: string;
  generated: boolean;
}

export function defaultHostKeyPath(stateDir: string): string {
  return join(stateDir, 'keys', 'ssh_host_ed25519_key');
}

/** Writes `text` at `file` unless it exists (then returns the existing text); never overwrites a key. */
async function createExclusive(file: string, text: string): Promise<{ text: string; created: boolean }> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, file);
    return { text, created: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return { text: await readFile(file, 'utf8'), created: false };
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    if (await access(file).then(() => true, () => false)) return { text: await readFile(file, 'utf8'), created: false };
    await rename(tmp, file);
    return { text, created: true };
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/**
 * ssh2 1.17's keygen drops a leading zero byte of the Ed25519 public key now
 * and then (~1 key in 300), giving a key its own parser rejects: generate until
 * the key parses with a full 32-byte public key.
 */
function generateEd25519(): { private: string; public: string } {
  for (let i = 0; i < 20; i++) {
    const pair = utils.generateKeyPairSync('ed25519', { comment: 'sluice gateway host key' });
    const k = utils.parseKey(pair.private);
    if (!(k instanceof Error) && k.getPublicSSH().length === 4 + 11 + 4 + 32) return pair;
  }
  throw new Error('could not generate an Ed25519 SSH host key');
}

/**
 * The listener's host key: `listeners.ssh.host_key` if set (must exist), else
 * state_dir/keys/ssh_host_ed25519_key, generated on first start (mode 0600).
 */
export async function loadListenerHostKey(stateDir: string, configured?: string): Promise<ListenerHostKey> {
  let path = configured ?? defaultHostKeyPath(stateDir);
  let text: string;
  let generated = false;
  if (configured) {
    try {
      text = await readFile(configured, 'utf8');
    } catch (err) {
      throw new Error(`cannot read listeners.ssh.host_key ${configured}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else {
    await mkdir(join(stateDir, 'keys'), { recursive: true, mode: 0o700 });
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const pair = generateEd25519();
      const r = await createExclusive(path, pair.private);
      text = r.text;
      generated = r.created;
      if (generated) await writeFile(`${path}.pub`, pair.public + '\n', { mode: 0o644 }).catch(() => {});
    }
  }
  const parsed = utils.parseKey(text);
  if (parsed instanceof Error) throw new Error(`the SSH host key ${path} cannot be read: ${parsed.message}`);
  if (!parsed.isPrivateKey()) throw new Error(`the SSH host key ${path} is not a private key`);
  path = configured ?? path;
  return { key: Buffer.from(text), path, type: parsed.type, fingerprint: fingerprintOf(parsed.getPublicSSH()), generated };
}

/** The SSH type name in a public key blob. */
export function blobType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const n = blob.readUInt32BE(0);
  return n > 0 && n <= 64 && 4 + n <= blob.length ? blob.toString('latin1', 4, 4 + n) : 'unknown';
}

/** Host key algorithms to offer for a key type (RSA keys sign with rsa-sha2-*). */
function algorithmsFor(type: string): string[] {
  if (type === 'ssh-rsa') return ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
  return [type];
}

export interface HostKeyCheck {
  /** serverHostKey algorithms to negotiate, so the server shows the key type that was configured. */
  algorithms?: string[];
  /** Undefined when the presented key is the configured one; else why not (for the operator). */
  check(blob: Buffer): string | undefined;
}

/**
 * How a target's host key is verified. Neither fingerprint nor known_hosts set:
 * every key is refused (closed default), and the message names the presented
 * key so the operator can verify it out of band and configure it.
 */
export function hostKeyCheck(target: SshTargetConfig): HostKeyCheck {
  const where = `targets.${target.name}.host_key`;
  const hk = target.host_key;
  const presented = (blob: Buffer) => `${blobType(blob)} ${fingerprintOf(blob)}`;
  if (!hk) {
    return {
      check: (blob) =>
        `no host key is configured for target "${target.name}" (${where}), so Sluice refuses to connect; the server presented ${presented(blob)}: verify it out of band, then set ${where}: { fingerprint: "${fingerprintOf(blob)}" } or { known_hosts: "<ssh-keyscan line>" }`,
    };
  }
  if ('fingerprint' in hk) {
    const want = normalizeFingerprint(hk.fingerprint);
    return {
      check: (blob) =>
        fingerprintOf(blob) === want
          ? undefined
          : `the host key of target "${target.name}" does not match ${where}: it presented ${presented(blob)}, expected ${want}; the server may have been replaced or someone is intercepting the connection`,
    };
  }
  const known = parseKnownHostsLine(hk.known_hosts);
  if ('error' in known) throw new Error(`${where}.known_hosts: ${known.error}`); // validated at load
  return {
    algorithms: algorithmsFor(known.type),
    check: (blob) =>
      blob.equals(known.blob)
        ? undefined
        : `the host key of target "${target.name}" does not match ${where}.known_hosts: it presented ${presented(blob)}, expected ${known.type} ${fingerprintOf(known.blob)}; the server may have been replaced or someone is intercepting the connection`,
  };
}
