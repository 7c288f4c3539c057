// How the CLI reaches a running gateway's admin API: its address, a token,
// and TLS trust, from flags, environment or the config file.

import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { SluiceConfig } from '../config/types.js';
import { mintToken } from '../identity/tokens.js';

export interface AdminTarget {
  url: string;
  token: string;
  /** PEM of the CA (or self-signed certificate) that the admin listener presents. */
  ca?: Buffer;
  /** Where the token came from, for error messages. */
  tokenSource: string;
}

export class AdminClientError extends Error {}

export interface AdminFlags {
  admin?: string;
  token?: string;
  ca?: string;
}

/**
 * Resolves the admin endpoint and a token. Without --token or $SLUICE_TOKEN,
 * an operator who can read the gateway's state_dir (its signing key) gets a
 * 5-minute token for `local:<os user>` in the admin and approver groups.
 */
export async function adminTarget(flags: AdminFlags, cfg: SluiceConfig | null): Promise<AdminTarget> {
  const lc = cfg?.listeners.admin;
  let url = flags.admin ?? process.env.SLUICE_ADMIN_URL;
  if (!url && lc) {
    const host = lc.host === '0.0.0.0' || lc.host === '::' || lc.host === '' ? '127.0.0.1' : lc.host;
    url = `${lc.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${lc.port}`;
  }
  if (!url) {
    throw new AdminClientError('no admin API address: configure listeners.admin in the config, or pass --admin URL (or set SLUICE_ADMIN_URL)');
  }
  const caPath = flags.ca ?? process.env.SLUICE_ADMIN_CA ?? (url.startsWith('https:') ? lc?.tls?.cert : undefined);
  const ca = caPath ? readFileSync(caPath) : undefined;
  let token = flags.token ?? process.env.SLUICE_TOKEN;
  let tokenSource = flags.token ? '--token' : '$SLUICE_TOKEN';
  if (!token) {
    if (!cfg) throw new AdminClientError('no token: pass --token or set SLUICE_TOKEN (or --config so a local operator token can be minted)');
    const groups = [...new Set([...cfg.admin.groups, ...cfg.approvals.approvers])];
    const sub = `local:${userInfo().username}`;
    try {
      token = await mintToken(cfg.identity, cfg.state_dir, { sub, groups, ttlSeconds: 300 });
    } catch (err) {
      throw new AdminClientError(`no token: pass --token or set SLUICE_TOKEN (a local operator token could not be minted: ${(err as Error).message})`);
    }
    tokenSource = `a local operator token (sub ${sub}, minted with the key in ${cfg.state_dir})`;
  }
  return { url: url.replace(/\/+$/, ''), token, ca, tokenSource };
}

export interface AdminResponse {
  status: number;
  body: any;
}

/** One JSON request to the admin API. Network failures become errors that say what to check. */
export function adminRequest(t: AdminTarget, method: string, path: string, body?: unknown): Promise<AdminResponse> {
  const u = new URL(t.url + path);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      {
        method,
        headers: { authorization: `Bearer ${t.token}`, accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
        ca: t.ca,
        timeout: 15_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON (metrics text)
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out after 15 s')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ECONNREFUSED' ? 'connection refused (is the gateway running, with listeners.admin?)' : err.message;
      reject(new AdminClientError(`cannot reach the admin API at ${t.url}: ${why}`));
    });
    req.end(payload);
  });
}
