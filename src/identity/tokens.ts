// Token verification (external OIDC issuers and Sluice's own issuer) and token minting.
//
// A client's password is a JWT. We pick the issuer by the token's *unverified*
// `iss`, then verify it with that issuer's keys, audience and algorithm
// allow-list. Every failure is an AuthError whose message names the problem
// but never contains the token.

import { createHash, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  SignJWT,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import type { IdentityConfig, IssuerConfig } from '../config/types.js';
import { AuthError, SLUICE_ISSUER_NAME, type Identity } from './types.js';
import { loadOrCreateSigningKey } from './signing-key.js';
import { insecureKeyUrl } from '../config/load.js';

/** Tokens longer than this are refused before any parsing. */
/** The longest token accepted; protocols cap their pre-authentication messages by it. */
export const MAX_TOKEN_CHARS = 16 * 1024;
/** Verified-token cache: entries and the longest time an entry lives (seconds). */
const CACHE_MAX_ENTRIES = 10_000;
const CACHE_MAX_AGE_S = 300;
const DEFAULT_FETCH_TIMEOUT_MS = 5_000;

type KeySource = JWTVerifyGetKey | KeyObject;

/** One issuer as the verifier sees it (configured issuers and the Sluice issuer alike). */
interface IssuerState {
  /** Short name (rules, roles, revocations); `sluice` for Sluice's own issuer. */
  name: string;
  issuer: string;
  audience: string[];
  groupsClaim: string;
  algorithms: string[];
  /** Longest lifetime accepted, in seconds (exp - iat, or exp - now without iat). */
  maxTtl: number;
  /** Where max_ttl is set, for messages. */
  maxTtlKey: string;
  kind: 'sluice' | 'jwks_file' | 'jwks_uri' | 'discovery';
  cfg?: IssuerConfig;
  /** Resolved keys; for discovery, set once the discovery document was fetched. */
  keys?: KeySource;
  /** In-flight or completed discovery (cleared on failure so the next verify retries). */
  discovery?: Promise<KeySource>;
}

interface CacheEntry {
  identity: Identity;
  /** Seconds since the epoch; the entry is not used at or after this time. */
  until: number;
}

export class IdentityVerifier {
  private readonly cfg: IdentityConfig;
  private readonly stateDir: string;
  private readonly fetchTimeoutMs: number;
  private issuers = new Map<string, IssuerState>();
  private ready?: Promise<void>;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(cfg: IdentityConfig, stateDir: string, opts: { fetchTimeoutMs?: number } = {}) {
    this.cfg = cfg;
    this.stateDir = stateDir;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    // Validate the issuer list now, so config mistakes surface before the first client.
    const seen = new Set<string>();
    for (const iss of [...cfg.issuers.map((i) => i.issuer), ...(cfg.sluice_issuer.enabled ? [cfg.sluice_issuer.issuer] : [])]) {
      if (seen.has(iss)) throw new Error(`identity: issuer "${iss}" is configured more than once`);
      seen.add(iss);
    }
    const names = new Set<string>([SLUICE_ISSUER_NAME]);
    for (const i of cfg.issuers) {
      if (asymmetricOnly(i.algorithms).length === 0) {
        throw new Error(`identity: issuer "${i.issuer}" allows no asymmetric algorithm (algorithms: ${i.algorithms.join(', ') || 'none'})`);
      }
      if (names.has(i.name)) throw new Error(`identity: the issuer name "${i.name}" is used twice (or is reserved); give issuer "${i.issuer}" another name`);
      names.add(i.name);
      // Keys fetched over plain http could be swapped by anyone on the path (config.ts checks this too).
      const url = i.jwks_file ? undefined : (i.jwks_uri ?? i.issuer);
      const bad = url === undefined ? undefined : insecureKeyUrl(url);
      if (bad) throw new Error(`identity: issuer "${i.issuer}": ${i.jwks_uri ? 'jwks_uri' : 'OIDC discovery URL'} ${bad}`);
    }
  }

  /**
   * Load keys: Sluice's own key, jwks_file contents (re-read on every call), and
   * fresh remote/discovery resolvers. Also empties the verified-token cache, so a
   * key removed from a file stops being accepted. Call again to reload.
   */
  init(): Promise<void> {
    const p = this.load();
    this.ready = p;
    return p;
  }

  private async load(): Promise<void> {
    const next = new Map<string, IssuerState>();
    const s = this.cfg.sluice_issuer;
    if (s.enabled) {
      const key = await loadOrCreateSigningKey(this.stateDir);
      next.set(s.issuer, {
        name: SLUICE_ISSUER_NAME, issuer: s.issuer, audience: [s.audience], groupsClaim: 'groups', algorithms: ['EdDSA'],
        maxTtl: s.max_ttl, maxTtlKey: 'identity.sluice_issuer.max_ttl', kind: 'sluice', keys: createPublicKey(key.privateKey),
      });
    }
    for (const cfg of this.cfg.issuers) {
      const st: IssuerState = {
        name: cfg.name, issuer: cfg.issuer, audience: cfg.audience, groupsClaim: cfg.groups_claim,
        algorithms: asymmetricOnly(cfg.algorithms), maxTtl: cfg.max_ttl, maxTtlKey: `identity.issuers[${cfg.name}].max_ttl`, kind: 'discovery', cfg,
      };
      if (cfg.jwks_file) {
        st.kind = 'jwks_file';
        st.keys = await loadJwksFile(cfg.jwks_file, cfg.issuer);
      } else if (cfg.jwks_uri) {
        st.kind = 'jwks_uri';
        st.keys = this.remoteKeys(new URL(cfg.jwks_uri), cfg.issuer);
      }
      next.set(cfg.issuer, st);
    }
    this.issuers = next; // swap only after everything loaded
    this.cache.clear();
  }

  async verify(token: string): Promise<Identity> {
    token = (token ?? '').trim();
    try {
      return await this.verifyInner(token);
    } catch (err) {
      const e = err instanceof AuthError ? err : new AuthError('token_bad_signature', `token could not be verified: ${describe(err)}`);
      // Belt and braces: no message may carry the token (or a large piece of it).
      if (token.length > 0 && e.message.includes(token)) throw new AuthError(e.code, e.message.split(token).join('<token>'));
      throw e;
    }
  }

  private async verifyInner(token: string): Promise<Identity> {
    if (token === '') throw new AuthError('token_missing', 'no token: send an identity token (JWT) as the password');
    if (token.length > MAX_TOKEN_CHARS) throw new AuthError('token_malformed', `the password is not a JWT: it is longer than ${MAX_TOKEN_CHARS} characters`);

    const now = Date.now() / 1000;
    const cacheKey = createHash('sha256').update(token).digest('base64url');
    const hit = this.cache.get(cacheKey);
    if (hit) {
      if (now < hit.until) return { ...hit.identity, groups: [...hit.identity.groups] };
      this.cache.delete(cacheKey); // expired: fall through so jose reports why
    }

    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch (err) {
      throw new AuthError('token_malformed', `the password is not a JWT: ${describe(err)}`);
    }
    if (unverified.iss === undefined) throw new AuthError('token_claim_invalid', 'token has no "iss" (issuer) claim');
    if (typeof unverified.iss !== 'string') throw new AuthError('token_claim_invalid', 'token claim "iss" must be a string');

    await (this.ready ??= this.load());
    const st = this.issuers.get(unverified.iss);
    if (!st) throw new AuthError('unknown_issuer', `token issuer "${safe(unverified.iss)}" is not configured (identity.issuers)`);

    const keys = st.keys ?? (await this.discover(st));
    const opts: JWTVerifyOptions = {
      issuer: st.issuer,
      audience: st.audience,
      algorithms: st.algorithms,
      clockTolerance: this.cfg.clock_skew,
      requiredClaims: ['exp', 'sub'], // no exp, no entry: short-lived identities are the point
    };
    let payload: JWTPayload;
    try {
      payload = (typeof keys === 'function' ? await jwtVerify(token, keys, opts) : await jwtVerify(token, keys, opts)).payload;
    } catch (err) {
      throw mapJoseError(err, st, token, unverified);
    }
    checkTimes(payload, st, now, this.cfg.clock_skew);

    const identity = toIdentity(payload, st);
    const until = Math.min(payload.exp as number, now + CACHE_MAX_AGE_S);
    if (this.cache.size >= CACHE_MAX_ENTRIES) {
      // Evict the oldest insertion (Map iterates in insertion order).
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(cacheKey, { identity, until });
    return { ...identity, groups: [...identity.groups] };
  }

  /** A remote JWKS (jose caches it and refetches on unknown kid); fetch failures become issuer_unreachable. */
  private remoteKeys(url: URL, issuer: string): JWTVerifyGetKey {
    const set = createRemoteJWKSet(url, { timeoutDuration: this.fetchTimeoutMs });
    return async (header, token) => {
      try {
        return await set(header, token);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw err;
        throw new AuthError('issuer_unreachable', `cannot fetch the keys of issuer "${issuer}" from ${url.href}: ${describe(err)}`);
      }
    };
  }

  /** OIDC discovery: fetch `${issuer}/.well-known/openid-configuration` once and use its jwks_uri. */
  private discover(st: IssuerState): Promise<KeySource> {
    st.discovery ??= (async () => {
      const url = `${st.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
      let doc: unknown;
      try {
        // No redirects: an https discovery URL must not be bent to an http one.
        const res = await fetch(url, { signal: AbortSignal.timeout(this.fetchTimeoutMs), headers: { accept: 'application/json' }, redirect: 'error' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        doc = await res.json();
      } catch (err) {
        throw new AuthError('issuer_unreachable', `cannot fetch the OIDC discovery document of issuer "${st.issuer}" from ${url}: ${describe(err)}`);
      }
      const d = (doc ?? {}) as { issuer?: unknown; jwks_uri?: unknown };
      // OIDC Discovery 1.0 §4.3: the document must name the same issuer.
      if (d.issuer !== st.issuer) {
        throw new AuthError('issuer_unreachable', `the OIDC discovery document at ${url} names issuer ${JSON.stringify(safe(String(d.issuer)))}, expected "${st.issuer}"`);
      }
      let jwksUrl: URL;
      try {
        jwksUrl = new URL(String(d.jwks_uri));
        if (jwksUrl.protocol !== 'https:' && jwksUrl.protocol !== 'http:') throw new Error('not http(s)');
      } catch {
        throw new AuthError('issuer_unreachable', `the OIDC discovery document at ${url} has no usable jwks_uri`);
      }
      const insecure = insecureKeyUrl(jwksUrl.href);
      if (insecure) {
        throw new AuthError('issuer_unreachable', `the OIDC discovery document at ${url} names jwks_uri ${safe(jwksUrl.href)}, which is refused: ${insecure.replace(/^"[^"]*" /, '')}`);
      }
      const keys = this.remoteKeys(jwksUrl, st.issuer);
      st.keys = keys;
      return keys;
    })().catch((err) => {
      st.discovery = undefined; // retry on the next token rather than caching the failure
      throw err;
    });
    return st.discovery;
  }
}

/**
 * Sign a token with Sluice's own key. Throws a plain Error (meant for the CLI)
 * if the Sluice issuer is disabled or the TTL is out of range.
 */
export async function mintToken(
  cfg: IdentityConfig,
  stateDir: string,
  opts: { sub: string; groups?: string[]; ttlSeconds: number; claims?: Record<string, unknown> },
): Promise<string> {
  const s = cfg.sluice_issuer;
  if (!s.enabled) throw new Error('the Sluice issuer is disabled (identity.sluice_issuer.enabled is false), so it cannot mint tokens');
  const ttl = opts.ttlSeconds;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error(`token TTL must be a positive whole number of seconds (got ${ttl})`);
  if (ttl > s.max_ttl) throw new Error(`token TTL ${ttl}s is longer than identity.sluice_issuer.max_ttl (${s.max_ttl}s)`);
  if (typeof opts.sub !== 'string' || opts.sub === '') throw new Error('token subject (sub) must be a non-empty string');
  const groups = opts.groups ?? [];
  if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string')) throw new Error('token groups must be strings');

  const key = await loadOrCreateSigningKey(stateDir);
  const now = Math.floor(Date.now() / 1000);
  // Extra claims first, so they cannot override the registered ones set below.
  return new SignJWT({ ...(opts.claims ?? {}), groups })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
    .setIssuer(s.issuer)
    .setAudience(s.audience)
    .setSubject(opts.sub)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + ttl)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

// ---------------------------------------------------------------------------

/** Never let HMAC or "none" through, whatever the config says (alg-confusion defence). */
function asymmetricOnly(algs: string[]): string[] {
  return algs.filter((a) => !/^(HS\d+|none)$/i.test(a));
}

async function loadJwksFile(file: string, issuer: string): Promise<JWTVerifyGetKey> {
  try {
    return createLocalJWKSet(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    throw new Error(`identity: cannot load jwks_file ${file} of issuer "${issuer}": ${describe(err)}`);
  }
}

function toIdentity(payload: JWTPayload, st: IssuerState): Identity {
  if (typeof payload.sub !== 'string' || payload.sub === '') throw new AuthError('token_claim_invalid', 'token claim "sub" must be a non-empty string');
  const raw = claimAt(payload, st.groupsClaim);
  let groups: string[];
  if (raw === undefined || raw === null) groups = [];
  else if (typeof raw === 'string') groups = [raw];
  else if (Array.isArray(raw) && raw.every((g) => typeof g === 'string')) groups = [...raw];
  else throw new AuthError('token_claim_invalid', `token groups claim "${st.groupsClaim}" must be a string or an array of strings`);
  const id: Identity = { sub: payload.sub, groups, issuer: st.issuer, issuerName: st.name, exp: payload.exp, claims: payload as Record<string, unknown> };
  if (typeof payload.jti === 'string') id.jti = payload.jti;
  return id;
}

/**
 * After the signature: `iat` may not be in the future (beyond the clock skew), and the token's
 * lifetime (exp - iat, or exp - now when it has no iat) may not exceed the issuer's max_ttl, so
 * a token that leaks stays usable for a bounded time whatever its issuer put in `exp`.
 */
function checkTimes(payload: JWTPayload, st: IssuerState, now: number, skew: number): void {
  const exp = payload.exp as number; // required and checked by jose
  const iat = payload.iat; // a number when present (jose checks)
  if (typeof iat === 'number' && iat > now + skew) {
    throw new AuthError('token_issued_in_future', `token was issued in the future (iat ${iso(iat)}, now ${iso(now)}, identity.clock_skew ${skew}s): check the clocks of the issuer and of Sluice`);
  }
  const lifetime = typeof iat === 'number' ? exp - iat : exp - now;
  const limit = st.maxTtl + (typeof iat === 'number' ? 0 : skew);
  if (lifetime > limit) {
    const what = typeof iat === 'number' ? `token lifetime ${dur(lifetime)} (exp - iat) is` : `token has no iat and expires in ${dur(lifetime)}, which is`;
    throw new AuthError('token_lifetime_too_long', `${what} longer than issuer "${st.name}" accepts (${st.maxTtlKey}: ${dur(st.maxTtl)}): use a shorter-lived token`);
  }
}

/** 90s, 15m, 24h, 3650d: the largest unit that divides evenly, else seconds. */
function dur(sec: number): string {
  const s = Math.round(sec);
  if (s % 86400 === 0 && s >= 86400) return `${s / 86400}d`;
  if (s % 3600 === 0 && s >= 3600) return `${s / 3600}h`;
  if (s % 60 === 0 && s >= 60) return `${s / 60}m`;
  return `${s}s`;
}

/** A claim by name; if no claim has that exact name, a dotted path ("realm_access.roles"). */
function claimAt(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let cur: unknown = payload;
  for (const part of name.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Translate a jose error into an AuthError with a message a person can act on. */
function mapJoseError(err: unknown, st: IssuerState, token: string, claims: JWTPayload): AuthError {
  if (err instanceof AuthError) return err;
  const e = err as { code?: string; claim?: string; reason?: string; message?: string };
  const iss = `"${st.issuer}"`;
  switch (e.code) {
    case 'ERR_JWT_EXPIRED':
      return new AuthError('token_expired', `token expired at ${iso(claims.exp)} (now ${iso(Date.now() / 1000)})`);
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.reason === 'missing') {
        return new AuthError('token_claim_invalid', `token has no "${e.claim}" claim` + (e.claim === 'exp' ? ' (tokens without an expiry are refused)' : ''));
      }
      if (e.claim === 'nbf' && typeof claims.nbf === 'number') {
        return new AuthError('token_not_yet_valid', `token is not valid before ${iso(claims.nbf)} (now ${iso(Date.now() / 1000)})`);
      }
      if (e.claim === 'aud') {
        return new AuthError('token_bad_audience', `token audience ${fmtAud(claims.aud)} is not accepted by issuer ${iss} (expected ${st.audience.join(', ')})`);
      }
      return new AuthError('token_claim_invalid', `token claim "${e.claim}" is invalid: ${describe(err)}`);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new AuthError('token_alg_not_allowed', `token algorithm "${safe(headerAlg(token))}" is not allowed for issuer ${iss} (allowed: ${st.algorithms.join(', ')})`);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new AuthError('token_bad_signature', `token signature does not verify with the keys of issuer ${iss}`);
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new AuthError('token_bad_signature', `no key of issuer ${iss} matches the token (kid ${kidOf(token)}, alg "${safe(headerAlg(token))}")`);
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new AuthError('token_bad_signature', `several keys of issuer ${iss} match the token and none is singled out by its kid`);
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new AuthError('token_malformed', `the password is not a valid JWT: ${describe(err)}`);
    default:
      // e.g. a TypeError from a key that does not fit the algorithm.
      return new AuthError('token_bad_signature', `token could not be verified with the keys of issuer ${iss}: ${describe(err)}`);
  }
}

function headerAlg(token: string): string {
  try {
    return String(decodeProtectedHeader(token).alg);
  } catch {
    return '?';
  }
}

function kidOf(token: string): string {
  try {
    const kid = decodeProtectedHeader(token).kid;
    return kid === undefined ? 'absent' : `"${safe(String(kid))}"`;
  } catch {
    return 'unknown';
  }
}

function fmtAud(aud: unknown): string {
  if (aud === undefined) return '(none)';
  if (Array.isArray(aud)) return aud.map((a) => safe(String(a))).join(', ') || '(none)';
  return safe(String(aud));
}

/** 2026-11-22T10:00:00Z style, for seconds since the epoch. */
function iso(sec: unknown): string {
  const d = new Date(Number(sec) * 1000);
  return Number.isNaN(d.getTime()) ? String(sec) : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Values from an unverified token go into messages: strip control characters and cap their length. */
function safe(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}…` : clean;
}

/** An error's message plus its cause (fetch hides ECONNREFUSED in `cause`). */
function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { message?: string; code?: string } };
  if (e?.code === 'ERR_JWKS_TIMEOUT' || (err as Error)?.name === 'TimeoutError') return 'timed out';
  const msg = e?.message ?? String(err);
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause && !msg.includes(cause) ? `${msg} (${cause})` : msg;
}
