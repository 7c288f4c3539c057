// Parsing what an operator writes in `targets.<t>.host_key`: an OpenSSH SHA256
// fingerprint or one known_hosts line. Pure (no ssh2), so the config loader can
// validate both with line-numbered errors.

import { createHash } from 'node:crypto';

/** `SHA256:` + 43 characters of unpadded base64, as `ssh-keygen -lf` prints it. */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;

/** Key types a known_hosts line may name (the type inside the blob must agree). */
const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/;

export interface KnownHostKey {
  /** e.g. "ssh-ed25519" */
  type: string;
  /** The public key blob (SSH wire format). */
  blob: Buffer;
}

/** The OpenSSH fingerprint of a public key blob: "SHA256:" + unpadded base64 of its SHA-256. */
export function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** Normalises a configured fingerprint (trailing '=' dropped); error text for a bad one. */
export function checkFingerprint(s: string): string | undefined {
  if (FINGERPRINT.test(s.trim())) return undefined;
  return `expected an OpenSSH SHA256 fingerprint such as "SHA256:3b5x…" (43 base64 characters; \`ssh-keyscan -t ed25519 HOST | ssh-keygen -lf -\` prints it), got ${JSON.stringify(s.length > 60 ? s.slice(0, 60) + '…' : s)}`;
}

export function normalizeFingerprint(s: string): string {
  return s.trim().replace(/=+$/, '');
}

/** The key type stored at the start of a blob (SSH string), or undefined when malformed. */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (n === 0 || n > 64 || 4 + n > blob.length) return undefined;
  return blob.toString('latin1', 4, 4 + n);
}

/**
 * One known_hosts line: `[hosts] keytype base64 [comment]` (the host field is
 * optional here: Sluice already knows which target it connects to, so hashed
 * or plain host names are both ignored). Markers (@cert-authority, @revoked)
 * are not supported. Returns the key or an error message.
 */
export function parseKnownHostsLine(line: string): KnownHostKey | { error: string } {
  const words = line.trim().split(/\s+/);
  if (words[0]?.startsWith('@')) return { error: `known_hosts markers (${words[0]}) are not supported; give the host's own key line` };
  const i = words.findIndex((w) => KEY_TYPES.test(w));
  if (i < 0 || i > 1 || !words[i + 1]) {
    return { error: 'expected a known_hosts line "[host] <key type> <base64 key>", e.g. the output of `ssh-keyscan -t ed25519 HOST`' };
  }
  const type = words[i]!;
  const b64 = words[i + 1]!;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return { error: `the key of this known_hosts line is not base64` };
  const blob = Buffer.from(b64, 'base64');
  const inner = blobType(blob);
  if (inner !== type) return { error: `the key of this known_hosts line is a ${inner ?? 'malformed'} key, but the line says ${type}` };
  return { type, blob };
}
