// SCRAM-SHA-256 client (RFC 5802 / RFC 7677) for authenticating Sluice to a target
// with the stored credential. Channel binding is not used (mechanism SCRAM-SHA-256,
// gs2 header "n,,"); TLS to the target is verified separately per targets.*.tls.

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

export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | null = null;

  constructor(private readonly password: string) {}

  /** The client-first-message, sent in SASLInitialResponse. */
  first(): string {
    // The user name is taken from the startup packet by Postgres, so it is empty here.
    this.clientFirstBare = `n=*,r=${this.nonce}`;
    return `n,,${this.clientFirstBare}`;
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
    const finalNoProof = `c=biws,r=${r}`;
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
    if (!v || !this.expectedServerSignature) throw new Error('malformed SCRAM server-final-message');
    const got = Buffer.from(v, 'base64');
    if (got.length !== 32 || !timingSafeEqual(got, this.expectedServerSignature)) {
      throw new Error('SCRAM server signature does not match: the target is not who it claims to be');
    }
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
