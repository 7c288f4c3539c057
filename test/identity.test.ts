// Token verification and Sluice's own issuer (src/core/identity.ts, src/core/signing-key.ts).
import t, { type Test } from 'tap';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHmac, createPublicKey } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTPayload, type CryptoKey } from 'jose';
import { IdentityVerifier, mintToken } from '../src/identity/tokens.js';
import { loadOrCreateSigningKey, publicJwks, signingKeyPath } from '../src/identity/signing-key.js';
import { AuthError, type AuthErrorCode } from '../src/identity/types.js';
import type { IdentityConfig, IssuerConfig } from '../src/config/types.js';
import { freePort } from './helpers/ports.js';

const SLUICE_ISS = 'https://sluice.test';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

function tmpState(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-id-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'state'); // not created yet: signing-key.ts must create it
}

function config(issuers: IssuerConfig[] = [], over: Partial<IdentityConfig> = {}): IdentityConfig {
  return {
    issuers,
    sluice_issuer: { enabled: true, issuer: SLUICE_ISS, audience: 'sluice', max_ttl: 3600 },
    clock_skew: 0,
    ...over,
  };
}

let issuerCount = 0;
function issuer(iss: string, over: Partial<IssuerConfig> = {}): IssuerConfig {
  return { name: `idp${++issuerCount}`, issuer: iss, audience: ['sluice'], groups_claim: 'groups', algorithms: ['RS256'], max_ttl: 86400, admin_groups: [], approver_groups: [], ...over };
}

/** Expect verify() to fail with `code`, and the message not to contain the token or its parts. */
async function rejects(tt: Tap, v: IdentityVerifier, token: string, code: AuthErrorCode, msg?: RegExp): Promise<AuthError | undefined> {
  try {
    await v.verify(token);
    tt.fail(`expected ${code}, but the token was accepted`);
    return undefined;
  } catch (err) {
    tt.type(err, AuthError);
    const e = err as AuthError;
    tt.equal(e.code, code, e.message);
    if (msg) tt.match(e.message, msg);
    if (token) tt.notOk(e.message.includes(token), 'message does not contain the token');
    for (const part of token.split('.')) if (part.length > 8) tt.notOk(e.message.includes(part), 'message does not contain a token segment');
    return e;
  }
}
type Tap = Test;

/** Sign with Sluice's state key directly, to craft tokens mintToken would refuse to make. */
async function signWithStateKey(stateDir: string, payload: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const k = await loadOrCreateSigningKey(stateDir);
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: k.kid, ...header }).sign(k.privateKey);
}

t.test('signing key: created once, private, race-safe', async (t) => {
  const state = tmpState();
  // Several concurrent first uses must all end up with the same key.
  const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSigningKey(state)));
  t.equal(new Set(keys.map((k) => k.kid)).size, 1, 'one key for all racers');
  const file = signingKeyPath(state);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  t.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
  t.same(fs.readdirSync(path.dirname(file)), ['signing-key.pem'], 'no temporary files left');
  t.match(fs.readFileSync(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  const again = await loadOrCreateSigningKey(state);
  t.equal(again.kid, keys[0]!.kid, 'reloaded from disk');
  const jwks = await publicJwks(state);
  t.equal(jwks.keys.length, 1);
  t.match(jwks.keys[0], { kty: 'OKP', crv: 'Ed25519', kid: again.kid, alg: 'EdDSA' });
  t.notOk('d' in jwks.keys[0]!, 'no private part in the JWKS');
});

t.test('Sluice issuer: mint and verify', async (t) => {
  const state = tmpState();
  const cfg = config();
  const v = new IdentityVerifier(cfg, state);
  await v.init();
  const token = await mintToken(cfg, state, { sub: 'alice', groups: ['dba', 'ops'], ttlSeconds: 600, claims: { reason: 'incident 42', sub: 'mallory' } });
  const id = await v.verify(token);
  t.equal(id.sub, 'alice', 'extra claims cannot override sub');
  t.same(id.groups, ['dba', 'ops']);
  t.equal(id.issuer, SLUICE_ISS);
  t.type(id.jti, 'string');
  t.ok(id.exp! > now() + 590 && id.exp! <= now() + 600);
  t.equal(id.claims.reason, 'incident 42');
  t.equal(id.claims.aud, 'sluice');

  const noGroups = await v.verify(await mintToken(cfg, state, { sub: 'bob', ttlSeconds: 60 }));
  t.same(noGroups.groups, []);

  await t.rejects(mintToken(cfg, state, { sub: 'a', ttlSeconds: 3601 }), /max_ttl \(3600s\)/);
  await t.rejects(mintToken(cfg, state, { sub: 'a', ttlSeconds: 0 }), /positive/);
  await t.rejects(mintToken(config([], { sluice_issuer: { ...cfg.sluice_issuer, enabled: false } }), state, { sub: 'a', ttlSeconds: 60 }), /disabled/);
});

t.test('Sluice issuer: refusals', async (t) => {
  const state = tmpState();
  const v = new IdentityVerifier(config(), state);
  await v.init();
  const base = { iss: SLUICE_ISS, aud: 'sluice', sub: 'alice' };

  await rejects(t, v, '', 'token_missing');
  await rejects(t, v, 'hunter2-is-my-password', 'token_malformed', /^the password is not a JWT: /);

  const expired = await signWithStateKey(state, { ...base, exp: now() - 300 });
  await rejects(t, v, expired, 'token_expired', /^token expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(now \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/);

  // Within clock_skew, the same token is accepted.
  const lenient = new IdentityVerifier(config([], { clock_skew: 600 }), state);
  t.equal((await lenient.verify(expired)).sub, 'alice', 'clock_skew tolerates a recently expired token');

  await rejects(t, v, await signWithStateKey(state, { ...base, exp: now() + 900, nbf: now() + 600 }), 'token_not_yet_valid', /not valid before/);
  await rejects(t, v, await signWithStateKey(state, { ...base, aud: 'other', exp: now() + 60 }), 'token_bad_audience',
    /^token audience other is not accepted by issuer "https:\/\/sluice.test" \(expected sluice\)$/);
  await rejects(t, v, await signWithStateKey(state, { ...base }), 'token_claim_invalid', /no "exp" claim/);
  await rejects(t, v, await signWithStateKey(state, { iss: SLUICE_ISS, aud: 'sluice', exp: now() + 60 }), 'token_claim_invalid', /"sub"/);
  await rejects(t, v, await signWithStateKey(state, { ...base, exp: now() + 60, groups: [1, 2] }), 'token_claim_invalid', /groups/);
  await rejects(t, v, await signWithStateKey(state, { aud: 'sluice', sub: 'a', exp: now() + 60 }), 'token_claim_invalid', /"iss"/);
  await rejects(t, v, await signWithStateKey(state, { ...base, iss: 'https://evil.test', exp: now() + 60 }), 'unknown_issuer',
    /^token issuer "https:\/\/evil.test" is not configured \(identity.issuers\)$/);

  // Tampering: a changed signature byte, and a changed payload under the old signature.
  const good = await mintToken(config(), state, { sub: 'alice', ttlSeconds: 60 });
  const [h, p, s] = good.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  sig[10]! ^= 0x01;
  await rejects(t, v, `${h}.${p}.${sig.toString('base64url')}`, 'token_bad_signature');
  const forged = b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'root', groups: ['admin'] });
  await rejects(t, v, `${h}.${forged}.${s}`, 'token_bad_signature');

  // A token signed by some other Ed25519 key claiming to be Sluice.
  const other = await generateKeyPair('EdDSA');
  const impostor = await new SignJWT({ ...base, exp: now() + 60 }).setProtectedHeader({ alg: 'EdDSA' }).sign(other.privateKey);
  await rejects(t, v, impostor, 'token_bad_signature');

  // alg "none": an unsigned token.
  const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...base, exp: now() + 60 })}.`;
  await rejects(t, v, unsigned, 'token_alg_not_allowed', /"none"/);

  // HS256 "signed" with the public key as the HMAC secret (key confusion), in both usual encodings.
  const pub = (await loadOrCreateSigningKey(state)).publicJwk;
  for (const secret of [Buffer.from(pub.x!, 'base64url'), Buffer.from(JSON.stringify(pub)), Buffer.from(createPublicKey((await loadOrCreateSigningKey(state)).privateKey).export({ format: 'pem', type: 'spki' }) as string)]) {
    const hp = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...base, exp: now() + 60 })}`;
    const hs = `${hp}.${createHmac('sha256', secret).update(hp).digest('base64url')}`;
    await rejects(t, v, hs, 'token_alg_not_allowed', /"HS256"/);
  }
});

t.test('verified-token cache still enforces exp', async (t) => {
  const state = tmpState();
  const v = new IdentityVerifier(config(), state);
  const exp = now() + 2;
  const token = await signWithStateKey(state, { iss: SLUICE_ISS, aud: 'sluice', sub: 'alice', exp });
  const first = await v.verify(token);
  const second = await v.verify(token);
  t.equal(second.claims, first.claims, 'second verify was a cache hit (same claims object)');
  second.groups.push('mutated');
  t.same((await v.verify(token)).groups, [], 'callers cannot mutate the cached identity');
  await new Promise((r) => setTimeout(r, (exp + 0.2) * 1000 - Date.now()));
  await rejects(t, v, token, 'token_expired');
});

t.test('external issuer via jwks_file (RS256)', async (t) => {
  const state = tmpState();
  const dir = path.dirname(state);
  const jwksFile = path.join(dir, 'jwks.json');
  const writeJwks = async (pk: CryptoKey, kid: string) => {
    const jwk: JWK = { ...(await exportJWK(pk)), kid, alg: 'RS256', use: 'sig' };
    fs.writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
  };
  const k1 = await generateKeyPair('RS256', { extractable: true });
  await writeJwks(k1.publicKey, 'k1');
  const ISS = 'https://idp.example';
  const v = new IdentityVerifier(config([issuer(ISS, { jwks_file: jwksFile, groups_claim: 'realm_access.roles', audience: ['sluice', 'db'] })]), state);
  await v.init();
  const sign = (payload: JWTPayload, key = k1.privateKey, kid = 'k1') =>
    new SignJWT({ iss: ISS, aud: 'db', sub: 'carol', exp: now() + 60, ...payload }).setProtectedHeader({ alg: 'RS256', kid }).sign(key);

  const id = await v.verify(await sign({ realm_access: { roles: ['readers', 'writers'] } }));
  t.same(id.groups, ['readers', 'writers'], 'dotted groups path');
  t.equal(id.issuer, ISS);
  t.equal(id.jti, undefined);
  t.same((await v.verify(await sign({ realm_access: { roles: 'readers' } }))).groups, ['readers'], 'string groups claim');
  t.same((await v.verify(await sign({}))).groups, [], 'absent groups claim');

  await rejects(t, v, await sign({ aud: 'else' }), 'token_bad_audience', /expected sluice, db/);

  // ES256 is not in this issuer's allow-list.
  const ec = await generateKeyPair('ES256');
  const es = await new SignJWT({ iss: ISS, aud: 'db', sub: 'x', exp: now() + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(ec.privateKey);
  await rejects(t, v, es, 'token_alg_not_allowed', /allowed: RS256/);

  // HS256 with the RSA public key (PEM) as HMAC secret: the classic confusion attack.
  const pem = createPublicKey({ key: (await exportJWK(k1.publicKey)) as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ format: 'pem', type: 'spki' });
  const hp = `${b64({ alg: 'HS256', kid: 'k1' })}.${b64({ iss: ISS, aud: 'db', sub: 'root', exp: now() + 60 })}`;
  await rejects(t, v, `${hp}.${createHmac('sha256', pem).update(hp).digest('base64url')}`, 'token_alg_not_allowed');

  // Key rotation in the file takes effect on init().
  const k2 = await generateKeyPair('RS256', { extractable: true });
  await writeJwks(k2.publicKey, 'k2');
  const rotated = await sign({}, k2.privateKey, 'k2');
  await rejects(t, v, rotated, 'token_bad_signature', /kid "k2"/);
  await v.init();
  t.equal((await v.verify(rotated)).sub, 'carol', 'new key accepted after init');
  await rejects(t, v, await sign({}), 'token_bad_signature', /no key/);
});

t.test('external issuers via jwks_uri and OIDC discovery', async (t) => {
  const state = tmpState();
  const kp = await generateKeyPair('ES256', { extractable: true });
  const jwks = { keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'e1', alg: 'ES256' }] };
  const hits: Record<string, number> = {};
  let base = '';
  const server = http.createServer((req, res) => {
    hits[req.url!] = (hits[req.url!] ?? 0) + 1;
    if (req.url === '/hang/.well-known/openid-configuration') return; // never answers
    const body =
      req.url === '/jwks.json' || req.url === '/oidc/keys' ? jwks
      : req.url === '/oidc/.well-known/openid-configuration' ? { issuer: `${base}/oidc`, jwks_uri: `${base}/oidc/keys` }
      : req.url === '/liar/.well-known/openid-configuration' ? { issuer: 'https://someone-else', jwks_uri: `${base}/oidc/keys` }
      : undefined;
    if (!body) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const closed = `http://127.0.0.1:${await freePort()}`;

  const CI = 'https://ci.example';
  const v = new IdentityVerifier(config([
    issuer(CI, { jwks_uri: `${base}/jwks.json`, algorithms: ['ES256'], groups_claim: 'team' }),
    issuer(`${base}/oidc`, { algorithms: ['ES256'] }),
    issuer(`${base}/liar`, { algorithms: ['ES256'] }),
    issuer(`${base}/hang`, { algorithms: ['ES256'] }),
    issuer('https://down.example', { jwks_uri: `${closed}/jwks.json`, algorithms: ['ES256'] }),
    issuer(closed, { algorithms: ['ES256'] }),
  ]), state, { fetchTimeoutMs: 300 });
  await v.init();
  const sign = (iss: string, extra: JWTPayload = {}) =>
    new SignJWT({ iss, aud: 'sluice', sub: 'deploy-bot', exp: now() + 60, ...extra }).setProtectedHeader({ alg: 'ES256', kid: 'e1' }).sign(kp.privateKey);

  const viaUri = await v.verify(await sign(CI, { team: 'platform', repository: 'acme/app' }));
  t.same(viaUri.groups, ['platform']);
  t.equal(viaUri.claims.repository, 'acme/app');
  await v.verify(await sign(CI, { team: ['a', 'b'] }));
  t.equal(hits['/jwks.json'], 1, 'jose caches the remote JWKS');

  const viaDiscovery = await v.verify(await sign(`${base}/oidc`, { groups: ['x'] }));
  t.same(viaDiscovery.groups, ['x']);
  await Promise.all([v.verify(await sign(`${base}/oidc`)), v.verify(await sign(`${base}/oidc`))]);
  t.equal(hits['/oidc/.well-known/openid-configuration'], 1, 'discovery document cached');
  t.equal(hits['/oidc/keys'], 1);

  await rejects(t, v, await sign(`${base}/liar`), 'issuer_unreachable', /names issuer "https:\/\/someone-else"/);
  await rejects(t, v, await sign(`${base}/hang`), 'issuer_unreachable', /timed out/);
  const down = await rejects(t, v, await sign('https://down.example'), 'issuer_unreachable');
  t.ok(down?.message.includes(`${closed}/jwks.json`), 'names the JWKS URL');
  const down2 = await rejects(t, v, await sign(closed), 'issuer_unreachable');
  t.ok(down2?.message.includes(`${closed}/.well-known/openid-configuration`), 'names the discovery URL');
});

t.test('config mistakes are caught at construction', async (t) => {
  const state = tmpState();
  t.throws(() => new IdentityVerifier(config([issuer(SLUICE_ISS)]), state), /more than once/);
  t.throws(() => new IdentityVerifier(config([issuer('https://x', { algorithms: ['HS256'] })]), state), /no asymmetric algorithm/);
  const missing = new IdentityVerifier(config([issuer('https://x', { jwks_file: path.join(state, 'nope.json') })]), state);
  await t.rejects(missing.init(), /cannot load jwks_file/);
});

t.test('a token issued in the future, or living longer than its issuer allows, is refused', async (t) => {
  const state = tmpState();
  const dir = path.dirname(state);
  const kp = await generateKeyPair('RS256', { extractable: true });
  const jwksFile = path.join(dir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k', alg: 'RS256' }] }));
  const EXT = 'https://ci.example';
  // clock_skew 30 s; the external issuer keeps the default 24 h, Sluice's own 1 h (config()).
  const v = new IdentityVerifier(config([issuer(EXT, { name: 'ci', jwks_file: jwksFile })], { clock_skew: 30 }), state);
  await v.init();
  const ext = (claims: JWTPayload) => new SignJWT({ iss: EXT, aud: 'sluice', sub: 'job', ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).sign(kp.privateKey);
  const own = (claims: JWTPayload) => signWithStateKey(state, { iss: SLUICE_ISS, aud: 'sluice', sub: 'alice', ...claims });

  // iat a day ahead: refused, by both kinds of issuer; within the clock skew: accepted.
  await rejects(t, v, await own({ iat: now() + 86400, exp: now() + 600 }), 'token_issued_in_future',
    /^token was issued in the future \(iat \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, now \d{4}-.*, identity\.clock_skew 30s\): check the clocks of the issuer and of Sluice$/);
  await rejects(t, v, await ext({ iat: now() + 86400, exp: now() + 2 * 86400 }), 'token_issued_in_future');
  t.equal((await v.verify(await ext({ iat: now() + 20, exp: now() + 600 }))).sub, 'job', 'iat within the clock skew is fine');

  // A 10-year token from the external issuer: refused by its max_ttl (default 24h).
  await rejects(t, v, await ext({ iat: now(), exp: now() + 10 * 365 * 86400 }), 'token_lifetime_too_long',
    /^token lifetime 3650d \(exp - iat\) is longer than issuer "ci" accepts \(identity\.issuers\[ci\]\.max_ttl: 1d\): use a shorter-lived token$/);
  // Without iat, the lifetime is what is left of it.
  await rejects(t, v, await ext({ exp: now() + 2 * 86400 }), 'token_lifetime_too_long', /^token has no iat and expires in (2d|17\d{4}s), which is longer than issuer "ci" accepts \(identity\.issuers\[ci\]\.max_ttl: 1d\)/);
  t.equal((await v.verify(await ext({ exp: now() + 3600 }))).sub, 'job', 'no iat, an hour left: fine');
  t.equal((await v.verify(await ext({ iat: now() - 86000, exp: now() + 400 }))).sub, 'job', 'exactly within 24h: fine');

  // Sluice's own issuer: its max_ttl (the mint limit) is also the longest lifetime accepted.
  await rejects(t, v, await own({ iat: now(), exp: now() + 7200 }), 'token_lifetime_too_long', /identity\.sluice_issuer\.max_ttl: 1h/);
  const id = await v.verify(await mintToken(config(), state, { sub: 'alice', ttlSeconds: 3600 }));
  t.equal(id.issuerName, 'sluice', 'a minted token at max_ttl is accepted, as issuer "sluice"');

  // A shorter per-issuer max_ttl.
  const strict = new IdentityVerifier(config([issuer(EXT, { name: 'ci', jwks_file: jwksFile, max_ttl: 600 })], { clock_skew: 30 }), state);
  await rejects(t, strict, await ext({ iat: now(), exp: now() + 3600 }), 'token_lifetime_too_long', /identity\.issuers\[ci\]\.max_ttl: 10m/);
  t.equal((await strict.verify(await ext({ iat: now(), exp: now() + 600 }))).issuerName, 'ci');
});

t.test('keys are fetched over https only (loopback excepted); discovery cannot point elsewhere', async (t) => {
  const state = tmpState();
  // Plain http to a host that is not loopback: refused when the verifier is built.
  t.throws(() => new IdentityVerifier(config([issuer('https://idp.example', { jwks_uri: 'http://idp.example/jwks' })]), state),
    /jwks_uri "http:\/\/idp\.example\/jwks" is plain http: anyone on the network path could swap the issuer's keys/);
  t.throws(() => new IdentityVerifier(config([issuer('http://idp.example')]), state), /OIDC discovery URL "http:\/\/idp\.example" is plain http/);
  t.doesNotThrow(() => new IdentityVerifier(config([issuer('https://idp.example', { jwks_uri: 'http://127.0.0.1:9/jwks' }), issuer('http://localhost:9/x')]), state), 'loopback is fine');

  // A discovery document (on loopback, so fetched) that names a plain-http jwks_uri elsewhere, and one that redirects.
  const kp = await generateKeyPair('ES256', { extractable: true });
  let base = '';
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url!);
    if (req.url === '/evil/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: `${base}/evil`, jwks_uri: 'http://keys.example/jwks' }));
    } else if (req.url === '/moved/.well-known/openid-configuration') {
      res.writeHead(302, { location: 'http://keys.example/.well-known/openid-configuration' }).end();
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const v = new IdentityVerifier(config([issuer(`${base}/evil`, { algorithms: ['ES256'] }), issuer(`${base}/moved`, { algorithms: ['ES256'] })]), state, { fetchTimeoutMs: 2000 });
  await v.init();
  const sign = (iss: string) => new SignJWT({ iss, aud: 'sluice', sub: 'x', exp: now() + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'e1' }).sign(kp.privateKey);
  await rejects(t, v, await sign(`${base}/evil`), 'issuer_unreachable', /names jwks_uri http:\/\/keys\.example\/jwks, which is refused: is plain http/);
  await rejects(t, v, await sign(`${base}/moved`), 'issuer_unreachable', /cannot fetch the OIDC discovery document/);
  t.same(hits.filter((h) => !h.includes('well-known')), [], 'no key was fetched');
});
