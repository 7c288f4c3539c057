// Sluice's own signing key (for tokens minted by the Sluice issuer).
//
// An Ed25519 key, generated on first use into <stateDir>/keys/signing-key.pem
// (PKCS8 PEM, mode 0600, directory 0700). Creation is race-safe: the key is
// written in full to a private temporary file, then hard-linked to its final
// name, which fails with EEXIST if another process got there first; the loser
// then reads the winner's key. Readers therefore never see a partial file.

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile, link, unlink, rename, access } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';

export interface SigningKey {
  privateKey: KeyObject;
  /** Public half as a JWK, with kid, alg and use set. */
  publicJwk: JWK;
  /** RFC 7638 JWK thumbprint (SHA-256) of the public key. */
  kid: string;
  alg: 'EdDSA';
}

export function signingKeyPath(stateDir: string): string {
  return join(stateDir, 'keys', 'signing-key.pem');
}

export async function loadOrCreateSigningKey(stateDir: string): Promise<SigningKey> {
  const file = signingKeyPath(stateDir);
  let pem = await readIfExists(file);
  if (pem === undefined) {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await mkdir(join(stateDir, 'keys'), { recursive: true, mode: 0o700 });
    pem = await createExclusive(file);
  }
  return fromPem(pem, file);
}

/** A JWKS document with Sluice's public signing key. */
export async function publicJwks(stateDir: string): Promise<{ keys: JWK[] }> {
  const { publicJwk } = await loadOrCreateSigningKey(stateDir);
  return { keys: [publicJwk] };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Generate a key and publish it at `file` unless someone else already did; return the winning PEM. */
async function createExclusive(file: string): Promise<string> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  await writeFile(tmp, pem, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, file); // atomic and exclusive: EEXIST if the file is already there
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await unlink(tmp).catch(() => {});
      return readFile(file, 'utf8');
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    // No hard links on this filesystem: fall back to check-then-rename. The
    // window is tiny and the result is still a complete file either way.
    const exists = await access(file).then(() => true, () => false);
    if (exists) {
      await unlink(tmp).catch(() => {});
      return readFile(file, 'utf8');
    }
    await rename(tmp, file);
    return readFile(file, 'utf8');
  }
  await unlink(tmp).catch(() => {});
  return pem;
}

async function fromPem(pem: string, file: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`cannot read the signing key ${file}: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the signing key ${file} is ${privateKey.asymmetricKeyType ?? 'not asymmetric'}, expected an Ed25519 key`);
  }
  const { kty, crv, x } = createPublicKey(privateKey).export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint({ kty, crv, x } as JWK, 'sha256');
  const publicJwk: JWK = { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' };
  return { privateKey, publicJwk, kid, alg: 'EdDSA' };
}
