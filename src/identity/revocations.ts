// Revoked identities and tokens, kept in the LMDB state store
// (state_dir/state) so that a revocation survives a restart.
//
// An identity is (issuer, sub): a `sub` revocation names the issuer it applies to (its `iss`,
// which does not change when the issuer's short name does), or none, and then it applies to that
// subject from every issuer. Revocations written before issuers had names carry no issuer and
// so keep applying to every issuer. A `jti` revocation applies to that token id from any issuer.
//
// Lookups happen once per login, from an in-memory map mirrored from the
// store; expired entries are dropped lazily and at start.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { open, type RootDatabase } from 'lmdb';
import type { Identity } from './types.js';

export interface Revocation {
  /** What is revoked: an identity (`sub`) or one token (`jti`). */
  kind: 'sub' | 'jti';
  value: string;
  /** For `sub`: the `iss` of the issuer it applies to; absent: every issuer. */
  issuer?: string;
  /** The issuer's short name when the revocation was made (for people; matching uses `issuer`). */
  issuer_name?: string;
  /** ISO time the revocation ends; absent: until lifted. */
  until?: string;
  reason?: string;
  by: string;
  at: string;
}

type Scope = Pick<Revocation, 'kind' | 'value' | 'issuer'>;

export class RevocationStore {
  /** Canonical key (see `canon`) -> the revocation and its LMDB key. */
  private readonly cache = new Map<string, { r: Revocation; dbKey: string }>();

  private constructor(private readonly db: RootDatabase<Revocation, string>) {}

  static async open(stateDir: string): Promise<RevocationStore> {
    const path = join(stateDir, 'state');
    await mkdir(path, { recursive: true, mode: 0o700 });
    // A small store: revocations are few and rarely written.
    const db = open<Revocation, string>({ path, name: 'revocations', mapSize: 64 << 20, compression: false });
    const s = new RevocationStore(db);
    const now = Date.now();
    for (const { key, value } of db.getRange()) {
      if (value.until && Date.parse(value.until) <= now) await db.remove(key);
      else s.cache.set(canon(value), { r: value, dbKey: key });
    }
    return s;
  }

  /**
   * LMDB keys are at most ~2 KB, and subjects come from tokens: a fixed-size hash of the scope.
   * (Keys written before issuers had names were `sub:<value>` / `jti:<value>`; they are still read.)
   */
  private static dbKey(s: Scope): string {
    return `v2:${createHash('sha256').update(canon(s)).digest('hex')}`;
  }

  async add(r: Revocation): Promise<void> {
    const c = canon(r);
    const old = this.cache.get(c);
    const dbKey = old?.dbKey ?? RevocationStore.dbKey(r);
    await this.db.put(dbKey, r);
    await this.db.flushed;
    this.cache.set(c, { r, dbKey });
  }

  /** Lifts the revocation with exactly this scope; returns it, or undefined if there was none. */
  async remove(s: Scope): Promise<Revocation | undefined> {
    const c = canon(s);
    const had = this.cache.get(c);
    if (!had) return undefined;
    this.cache.delete(c);
    await this.db.remove(had.dbKey);
    return had.r;
  }

  /** The revocation that applies to this identity now, if any. */
  find(identity: Pick<Identity, 'sub' | 'jti' | 'issuer'>): Revocation | undefined {
    if (this.cache.size === 0) return undefined;
    return (
      this.live(canon({ kind: 'sub', value: identity.sub })) ??
      this.live(canon({ kind: 'sub', value: identity.sub, issuer: identity.issuer })) ??
      (identity.jti ? this.live(canon({ kind: 'jti', value: identity.jti })) : undefined)
    );
  }

  private live(k: string): Revocation | undefined {
    const e = this.cache.get(k);
    if (!e) return undefined;
    if (e.r.until && Date.parse(e.r.until) <= Date.now()) {
      this.cache.delete(k);
      void this.db.remove(e.dbKey);
      return undefined;
    }
    return e.r;
  }

  list(): Revocation[] {
    const out: Revocation[] = [];
    for (const k of [...this.cache.keys()]) {
      const r = this.live(k);
      if (r) out.push(r);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** One string per scope: kind, issuer (or none: every issuer) and value. */
function canon(s: Scope): string {
  return JSON.stringify([s.kind, s.kind === 'sub' ? (s.issuer ?? null) : null, s.value]);
}

/** Whether a live session's identity falls under a revocation. */
export function revokes(r: Scope, identity: Pick<Identity, 'sub' | 'jti' | 'issuer'>): boolean {
  if (r.kind === 'jti') return identity.jti === r.value;
  return identity.sub === r.value && (r.issuer === undefined || r.issuer === identity.issuer);
}
