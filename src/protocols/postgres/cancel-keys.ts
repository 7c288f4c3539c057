// Sluice hands each client its own BackendKeyData and keeps the mapping to the
// upstream one, so a CancelRequest can only cancel that client's own query and
// upstream process ids never leak.

import { randomInt, timingSafeEqual } from 'node:crypto';
import type { PostgresTargetConfig } from '../../core/config-types.js';

export interface CancelEntry {
  secret: number;
  target: PostgresTargetConfig;
  upstreamPid: number;
  upstreamSecret: number;
  /** Handles the cancel inside Sluice (a statement waiting for approval); true when it did. */
  intercept?: () => boolean;
}

export class CancelKeys {
  private readonly byPid = new Map<number, CancelEntry>();

  /** Registers a session and returns the (pid, secret) to give its client. */
  add(target: PostgresTargetConfig, upstreamPid: number, upstreamSecret: number): { pid: number; secret: number } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.byPid.has(pid));
    const secret = randomInt(0, 0x7fffffff);
    this.byPid.set(pid, { secret, target, upstreamPid, upstreamSecret });
    return { pid, secret };
  }

  setIntercept(pid: number, fn: () => boolean): void {
    const e = this.byPid.get(pid);
    if (e) e.intercept = fn;
  }

  remove(pid: number): void {
    this.byPid.delete(pid);
  }

  /** Finds the entry for a client's cancel key; constant-time on the secret. */
  lookup(pid: number, secret: number): CancelEntry | undefined {
    const e = this.byPid.get(pid);
    if (!e) return undefined;
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    a.writeInt32BE(e.secret);
    b.writeInt32BE(secret);
    return timingSafeEqual(a, b) ? e : undefined;
  }
}
