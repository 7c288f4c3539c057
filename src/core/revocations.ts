// Revoked identities and tokens, kept in the LMDB state store
// (state_dir/state) so that a revocation survives a restart.
//
// Lookups happen once per login, from an in-memory map mirrored from the
// store; expired entries are dropped lazily and at start.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { open, type RootDatabase } from 'lmdb';
import type { Identity } from './identity-types.js';

export interface Revocation {
  /** What is revoked: an identity (`sub`) or one token (`jti`). */
  kind: 'sub' | 'jti';
  value: string;
  /** ISO time the revocation ends; absent: until lifted. */
  until?: string;
  reason?: string;
  by: string;
  at: string;
}

export class RevocationStore {
  private readonly cache = new Map<string, Revocation>();

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
      else s.cache.set(key, value);
    }
    return s;
  }

  private static key(kind: string, value: string): string {
    return `${kind}:${value}`;
  }

  async add(r: Revocation): Promise<void> {
    const k = RevocationStore.key(r.kind, r.value);
    await this.db.put(k, r);
    await this.db.flushed;
    this.cache.set(k, r);
  }

  async remove(kind: 'sub' | 'jti', value: string): Promise<boolean> {
    const k = RevocationStore.key(kind, value);
    const had = this.cache.delete(k);
    await this.db.remove(k);
    return had;
  }

  /** The revocation that applies to this identity now, if any. */
  find(identity: Pick<Identity, 'sub' | 'jti'>): Revocation | undefined {
    if (this.cache.size === 0) return undefined;
    return this.live(RevocationStore.key('sub', identity.sub)) ?? (identity.jti ? this.live(RevocationStore.key('jti', identity.jti)) : undefined);
  }

  private live(k: string): Revocation | undefined {
    const r = this.cache.get(k);
    if (!r) return undefined;
    if (r.until && Date.parse(r.until) <= Date.now()) {
      this.cache.delete(k);
      void this.db.remove(k);
      return undefined;
    }
    return r;
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

/** Whether a live session's identity falls under a revocation. */
export function revokes(r: Pick<Revocation, 'kind' | 'value'>, identity: Pick<Identity, 'sub' | 'jti'>): boolean {
  return r.kind === 'sub' ? identity.sub === r.value : identity.jti === r.value;
}
