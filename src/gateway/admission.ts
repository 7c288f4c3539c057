// Admission control for connections that have not authenticated yet, shared by
// every listener (Postgres, SSH, admin API): one global pool
// (limits.max_unauthenticated) and a cap per source address
// (limits.max_unauthenticated_per_source). When the pool is full, a newcomer
// from a source that holds fewer pending connections than the largest holder
// takes the slot of that holder's oldest pending connection, so no single
// source can starve the others by opening connections and never finishing
// the login.

import net from 'node:net';

/**
 * The address a pending connection is counted under: IPv4 as is (also when it
 * arrives IPv4-mapped, `::ffff:1.2.3.4`), IPv6 by its /64 prefix, since a
 * single host is routinely given a whole /64.
 */
export function sourceOf(address: string): string {
  let a = address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (net.isIPv4(a)) return a;
  if (!net.isIPv6(a)) return a;
  const groups = expandIPv6(a.toLowerCase());
  if (!groups) return a.toLowerCase();
  if (groups.every((g, i) => g === (i === 7 ? 1 : 0))) return '::1';
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (also with an embedded IPv4 tail). */
function expandIPv6(a: string): number[] | null {
  let tail: number[] = [];
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    tail = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
    s = s.slice(0, -v4[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const dbl = s.indexOf('::');
  let groups: number[];
  if (dbl >= 0) {
    const head = parse(s.slice(0, dbl));
    const rest = [...parse(s.slice(dbl + 2)), ...tail];
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    groups = [...parse(s), ...tail];
  }
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

export interface AdmissionLimits {
  max_unauthenticated: number;
  max_unauthenticated_per_source: number;
}

interface Pending {
  readonly source: string;
  /** `address:port`, for the log. */
  readonly client: string;
  readonly protocol: string;
  readonly evict: () => void;
  live: boolean;
}

export type AdmitResult =
  | { ok: true; release: () => void; evicted?: { source: string; client: string; protocol: string; held: number } }
  | { ok: false; reason: 'max_unauthenticated' | 'max_unauthenticated_per_source'; held: number };

export class Admission {
  private total = 0;
  /** Pending connections per source, oldest first (a Set keeps insertion order). */
  private readonly bySource = new Map<string, Set<Pending>>();

  get pending(): number {
    return this.total;
  }

  held(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  /**
   * Admits a connection from `source`, or says why not. `evict` is called (once)
   * if this connection later loses its slot to a newcomer; it must close the
   * connection with the protocol's "too many connections" error. The slot is
   * already free when `evict` runs.
   */
  admit(source: string, client: string, protocol: string, limits: AdmissionLimits, evict: () => void): AdmitResult {
    const mine = this.held(source);
    if (mine >= limits.max_unauthenticated_per_source) return { ok: false, reason: 'max_unauthenticated_per_source', held: mine };
    let evicted: { source: string; client: string; protocol: string; held: number } | undefined;
    if (this.total >= limits.max_unauthenticated) {
      // Above the limit (lowered by a reload): refuse until the excess has drained by itself.
      const victim = this.total === limits.max_unauthenticated ? this.victimFor(mine) : undefined;
      if (!victim) return { ok: false, reason: 'max_unauthenticated', held: mine };
      evicted = { source: victim.source, client: victim.client, protocol: victim.protocol, held: this.held(victim.source) };
      this.remove(victim);
      victim.evict();
    }
    const entry: Pending = { source, client, protocol, evict, live: true };
    let set = this.bySource.get(source);
    if (!set) this.bySource.set(source, (set = new Set()));
    set.add(entry);
    this.total++;
    return { ok: true, release: () => this.remove(entry), evicted };
  }

  /** The oldest pending connection of the source holding the most, if it holds more than `mine`. */
  private victimFor(mine: number): Pending | undefined {
    let best: Set<Pending> | undefined;
    for (const set of this.bySource.values()) {
      if (!best || set.size > best.size) best = set;
    }
    if (!best || best.size <= mine) return undefined;
    return best.values().next().value;
  }

  private remove(entry: Pending): void {
    if (!entry.live) return;
    entry.live = false;
    this.total--;
    const set = this.bySource.get(entry.source);
    if (!set) return;
    set.delete(entry);
    if (set.size === 0) this.bySource.delete(entry.source);
  }
}

/**
 * Rate limit for log lines an unauthenticated peer can cause (refusals,
 * evictions, timeouts, malformed startups): at most one line per key (event,
 * reason, source) per window, and at most `perWindow` such lines in all per
 * window. A line carries how many like it were left out since the last one
 * (`suppressed`); what the global budget left out is summed up once the next
 * window starts.
 */
export class LogLimiter {
  private windowStart = 0;
  private linesInWindow = 0;
  private droppedInWindow = 0;
  private readonly keys = new Map<string, { last: number; suppressed: number }>();

  constructor(
    private readonly windowMs = 10_000,
    private readonly perWindow = 50,
    private readonly maxKeys = 10_000,
  ) {}

  /**
   * Whether to write the line for `key` now. Returns null to leave it out, else
   * `suppressed` (lines for this key left out before) and `dropped` (lines of
   * any key the global budget left out in the previous window, to be reported once).
   */
  allow(key: string, now = Date.now()): { suppressed: number; dropped: number } | null {
    let dropped = 0;
    if (now - this.windowStart >= this.windowMs) {
      dropped = this.droppedInWindow;
      this.windowStart = now;
      this.linesInWindow = 0;
      this.droppedInWindow = 0;
      for (const [k, v] of this.keys) if (v.suppressed === 0 && now - v.last >= this.windowMs) this.keys.delete(k);
    }
    let k = this.keys.get(key);
    if (k && now - k.last < this.windowMs) {
      k.suppressed++;
      return null;
    }
    if (this.linesInWindow >= this.perWindow) {
      this.droppedInWindow++;
      if (k) k.suppressed++;
      return null;
    }
    if (!k) {
      if (this.keys.size >= this.maxKeys) this.keys.clear();
      this.keys.set(key, (k = { last: now, suppressed: 0 }));
    }
    const suppressed = k.suppressed;
    k.last = now;
    k.suppressed = 0;
    this.linesInWindow++;
    return { suppressed, dropped };
  }
}
