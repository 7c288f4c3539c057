// Connections toward HTTP targets: one undici Pool per target (keep-alive,
// TLS verified as configured), and the credentials Sluice injects.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Pool } from 'undici';
import type { Core } from '../kit/module.js';
import type { HttpTargetConfig } from '../../config/types.js';

/** What Sluice adds to every request toward one target, resolved from its secret references. */
export interface Injection {
  /** Lower-case header name → value. */
  headers: [string, string][];
  /** `&k=v…` appended to the query (already encoded), or ''. */
  query: string;
  /** Every secret value, to mask in response headers that echo one. */
  secrets: string[];
}

export interface Entry {
  key: string;
  /** The target config this entry was last checked against. */
  target: HttpTargetConfig;
  pool: Pool;
  /** The Host header toward the target. */
  hostHeader: string;
  /** TLS options toward an https target (CA, servername, client certificate); undefined for http. */
  tls?: { ca?: Buffer; servername?: string; rejectUnauthorized: boolean; cert?: Buffer; key?: string };
  injection: Injection;
  at: number;
}

/** Secrets are re-read this often (rotation), like a target's password. */
const INJECTION_TTL_MS = 60_000;

export class Upstreams {
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<Entry>>();

  constructor(private readonly core: Core) {}

  /** The pool and injection for a target; built once per target config, refreshed as secrets may rotate. */
  get(t: HttpTargetConfig): Entry | Promise<Entry> {
    const e = this.entries.get(t.name);
    // The same config object (no reload since) is the common case: no key to build.
    if (e && (e.target === t || e.key === configKey(t)) && Date.now() - e.at < INJECTION_TTL_MS) {
      e.target = t;
      return e;
    }
    let p = this.pending.get(t.name);
    if (!p) {
      p = this.build(t, e).finally(() => this.pending.delete(t.name));
      this.pending.set(t.name, p);
    }
    return p;
  }

  private async build(t: HttpTargetConfig, old: Entry | undefined): Promise<Entry> {
    const key = configKey(t);
    const injection = await this.resolveInjection(t);
    const clientKey = t.inject.client_cert ? await this.core.targetSecret(t, 'inject.client_cert.key') : undefined;
    // TLS toward the target, read once per build: the pool and websocket connections both use it.
    const tls =
      t.scheme === 'https'
        ? {
            ca: t.tls.ca ? readFileSync(t.tls.ca) : undefined,
            servername: t.tls.servername ?? (isIP(t.host) ? undefined : t.host),
            rejectUnauthorized: !t.tls.insecure_skip_verify,
            ...(t.inject.client_cert && { cert: readFileSync(t.inject.client_cert.cert), key: clientKey }),
          }
        : undefined;
    let pool: Pool;
    if (old && old.key === key) pool = old.pool;
    else {
      if (old) void old.pool.close().catch(() => {});
      pool = new Pool(`${t.scheme}://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: t.timeout,
        bodyTimeout: t.timeout,
        connect: { timeout: t.connect_timeout, ...tls },
      });
    }
    const hostHeader = t.port === (t.scheme === 'https' ? 443 : 80) ? t.host : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
    const e: Entry = { key, target: t, pool, tls, hostHeader, injection, at: Date.now() };
    this.entries.set(t.name, e);
    return e;
  }

  private async resolveInjection(t: HttpTargetConfig): Promise<Injection> {
    const headers: [string, string][] = [];
    const secrets: string[] = [];
    const read = async (field: string): Promise<string> => {
      const v = await this.core.targetSecret(t, field);
      if (v === undefined || v === '') throw new Error(`targets.${t.name}.${field} is empty`);
      secrets.push(v);
      return v;
    };
    for (const [name, v] of Object.entries(t.inject.headers)) headers.push([name.toLowerCase(), (v.prefix ?? '') + (await read(`inject.headers.${name}.secret`))]);
    if (t.inject.basic) {
      const pw = await read('inject.basic.password');
      const b = Buffer.from(`${t.inject.basic.user}:${pw}`).toString('base64');
      secrets.push(b);
      headers.push(['authorization', `Basic ${b}`]);
    }
    let query = '';
    for (const [name, v] of Object.entries(t.inject.query)) {
      const value = (v.prefix ?? '') + (await read(`inject.query.${name}.secret`));
      query += `&${encodeURIComponent(name)}=${encodeURIComponent(value)}`;
      if (encodeURIComponent(value) !== value) secrets.push(encodeURIComponent(value));
    }
    return { headers, query, secrets };
  }

  async close(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => e.pool.close().catch(() => {})));
    this.entries.clear();
  }
}

function configKey(t: HttpTargetConfig): string {
  return JSON.stringify([t.url, t.tls, t.timeout, t.connect_timeout, t.inject.client_cert]);
}
