// Cancel keys. A client is told its backend's real pid (so BackendKeyData,
// pg_backend_pid() and notifications all name one pid), with a secret key of
// Sluice's own: random, never the server's, 4 bytes for protocol 3.0 clients and
// 32 for 3.2. A CancelRequest is routed by (pid, secret): two targets can have a
// backend with the same pid, and only the client that holds the secret can cancel.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { PostgresTargetConfig } from '../../config/types.js';

export interface CancelEntry {
  /** The backend pid, which is also the pid the client was given. */
  readonly pid: number;
  /** Sluice's secret key, given to the client. */
  readonly secret: Buffer;
  readonly target: PostgresTargetConfig;
  readonly upstreamSecret: number;
  /** Handles the cancel inside Sluice (a statement waiting for approval); true when it did. */
  intercept?: () => boolean;
}

export class CancelKeys {
  /** Entries by pid: almost always one; more when targets on different servers share a pid. */
  private readonly byPid = new Map<number, CancelEntry[]>();

  /** Registers a session; its entry holds the (pid, secret) to give its client. */
  add(target: PostgresTargetConfig, upstreamPid: number, upstreamSecret: number, secretBytes: number): CancelEntry {
    const list = this.byPid.get(upstreamPid) ?? [];
    let secret: Buffer;
    // A short key must still be unique among the sessions with this pid.
    do secret = randomBytes(secretBytes);
    while (list.some((e) => e.secret.equals(secret)));
    const entry: CancelEntry = { pid: upstreamPid, secret, target, upstreamSecret };
    list.push(entry);
    this.byPid.set(upstreamPid, list);
    return entry;
  }

  remove(entry: CancelEntry): void {
    const list = this.byPid.get(entry.pid);
    if (!list) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byPid.delete(entry.pid);
  }

  /** Finds the entry for a client's cancel key; the secret is compared in constant time. */
  lookup(pid: number, secret: Buffer): CancelEntry | undefined {
    const list = this.byPid.get(pid);
    if (!list) return undefined;
    let found: CancelEntry | undefined;
    for (const e of list) {
      if (e.secret.length === secret.length && timingSafeEqual(e.secret, secret)) found = e;
    }
    return found;
  }
}
