// The store's Signer from the gateway's Ed25519 signing key (src/core/signing-key.ts).

import { createPublicKey, sign, verify } from 'node:crypto';
import type { SigningKey } from '../identity/signing-key.js';
import type { Signer } from './types.js';

export function signerFromSigningKey(key: SigningKey): Signer {
  const publicKey = createPublicKey(key.privateKey);
  return {
    kid: key.kid,
    sign: (data) => sign(null, data, key.privateKey),
    verify: (data, sig) => verify(null, data, publicKey, sig),
  };
}
