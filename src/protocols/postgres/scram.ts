// SCRAM-SHA-256 client (RFC 5802 / RFC 7677) for authenticating Sluice to a target
// with the stored credential. Over TLS it binds the exchange to the server
// certificate it saw (SCRAM-SHA-256-PLUS, tls-server-end-point, RFC 5929): a relay
// that terminates TLS with its own certificate then fails the server's check. The
// server's signature (server-final-message) is always required: it proves the
// server knew the password's verifier.

import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/**
 * PBKDF2 with 4096+ iterations costs milliseconds of CPU per login. The salted
 * password depends only on (password, salt, iterations), which the server keeps
 * stable, so it is cached: reconnect-heavy clients (pgbench -C, pools) then pay
 * for it once. Keys are hashes, so the cache never holds the password itself.
 */
const saltedCache = new Map<string, Buffer>();
const SALTED_CACHE_MAX = 256;

async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = createHash('sha256').update(password).update('\0').update(salt).update(String(iterations)).digest('base64');
  const hit = saltedCache.get(key);
  if (hit) return hit;
  const v = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  if (saltedCache.size >= SALTED_CACHE_MAX) saltedCache.delete(saltedCache.keys().next().value!);
  saltedCache.set(key, v);
  return v;
}

const hmac = (key: Buffer, data: string) => createHmac('sha256', key).update(data).digest();

/**
 * How the exchange is bound to the channel:
 * - `{ endPoint }`: SCRAM-SHA-256-PLUS with tls-server-end-point data (gs2 "p=…");
 * - 'y': TLS is on but the server offered no -PLUS (gs2 "y": a server that does
 *   support binding then refuses, which catches a relay that removed -PLUS);
 * - 'n': no TLS, or a certificate whose end-point hash is undefined.
 */
export type ChannelBinding = { endPoint: Buffer } | 'y' | 'n';

export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | null = null;
  private readonly gs2: string;
  /** Verified the server's signature. */
  verified = false;

  constructor(
    private readonly password: string,
    private readonly binding: ChannelBinding = 'n',
  ) {
    this.gs2 = typeof binding === 'object' ? 'p=tls-server-end-point,,' : `${binding},,`;
  }

  /** The SASL mechanism this client uses. */
  get mechanism(): string {
    return typeof this.binding === 'object' ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
  }

  /** The client-first-message, sent in SASLInitialResponse. */
  first(): string {
    // The user name is taken from the startup packet by Postgres, so it is empty here.
    this.clientFirstBare = `n=*,r=${this.nonce}`;
    return `${this.gs2}${this.clientFirstBare}`;
  }

  /** Answers the server-first-message with the client-final-message. */
  async final(serverFirst: string): Promise<string> {
    const attrs = parseAttrs(serverFirst);
    const r = attrs.get('r');
    const s = attrs.get('s');
    const i = Number(attrs.get('i'));
    if (!r || !s || !Number.isInteger(i) || i < 1) throw new Error('malformed SCRAM server-first-message');
    if (!r.startsWith(this.nonce)) throw new Error('SCRAM server nonce does not extend the client nonce');
    const salted = await saltedPassword(this.password, Buffer.from(s, 'base64'), i);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const cbind = typeof this.binding === 'object' ? Buffer.concat([Buffer.from(this.gs2), this.binding.endPoint]) : Buffer.from(this.gs2);
    const finalNoProof = `c=${cbind.toString('base64')},r=${r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalNoProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let k = 0; k < 32; k++) proof[k] = clientKey[k] ^ clientSignature[k];
    const serverKey = hmac(salted, 'Server Key');
    this.expectedServerSignature = hmac(serverKey, authMessage);
    return `${finalNoProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server-final-message, proving the server knew the password too. */
  verify(serverFinal: string): void {
    const attrs = parseAttrs(serverFinal);
    const e = attrs.get('e');
    if (e) throw new Error(`SCRAM authentication failed: ${e}`);
    const v = attrs.get('v');
    if (!this.expectedServerSignature) throw new Error('SCRAM server-final-message before the server-first-message');
    if (!v) throw new Error('the SCRAM server-final-message carries no server signature');
    const got = Buffer.from(v, 'base64');
    if (got.length !== 32 || !timingSafeEqual(got, this.expectedServerSignature)) {
      throw new Error('the SCRAM server signature is wrong: the server does not know the password');
    }
    this.verified = true;
  }
}

function parseAttrs(msg: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) m.set(part[0], part.slice(2));
  }
  return m;
}

/** md5 password hash as Postgres wants it: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
}

// ---- tls-server-end-point (RFC 5929 section 4.1) ----------------------------

/** Signature algorithm OIDs → the hash that names (md5 and sha1 are replaced by sha256). */
const SIG_HASH: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'sha256', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha256', // sha1WithRSAEncryption
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.10045.4.1': 'sha256', // ecdsa-with-SHA1
  '1.2.840.10045.4.3.1': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha256', // dsa-with-sha1
  '2.16.840.1.101.3.4.3.2': 'sha256', // dsa-with-sha256
};

/** One DER TLV at `o`: [content start, content end]. */
function derTlv(b: Buffer, o: number): [number, number] {
  let len = b[o + 1]!;
  let p = o + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p + i]!;
    p += n;
  }
  if (p + len > b.length) throw new Error('truncated DER');
  return [p, p + len];
}

function oidString(b: Buffer): string {
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/**
 * The tls-server-end-point channel binding data of a DER certificate: its hash
 * with the algorithm of its signature (sha256 for md5/sha1). Null when that is
 * undefined (Ed25519, RSASSA-PSS, ...): Postgres cannot bind to such a
 * certificate either.
 */
export function tlsServerEndPoint(der: Buffer): Buffer | null {
  try {
    const [cs] = derTlv(der, 0); // Certificate ::= SEQUENCE {
    const [, tbsEnd] = derTlv(der, cs); //   tbsCertificate,
    const [as] = derTlv(der, tbsEnd); //   signatureAlgorithm SEQUENCE { algorithm OID, ... }
    if (der[as] !== 0x06) return null;
    const [os, oe] = derTlv(der, as);
    const hash = SIG_HASH[oidString(der.subarray(os, oe))];
    return hash ? createHash(hash).update(der).digest() : null;
  } catch {
    return null;
  }
}
