// The admin API (listeners.admin): live sessions, the kill switch, approvals,
// revocations, health and Prometheus metrics, as JSON over HTTP(S).
//
// Every /api route needs `Authorization: Bearer <JWT>` from a configured
// issuer. Roles are per issuer (access.ts): for Sluice's own issuer, members of
// `admin.groups` may do everything and members of `approvals.approvers` may read
// sessions and approvals and decide approvals; an external issuer grants them
// only through its own `admin_groups` / `approver_groups`.
// /healthz is open; /metrics is open only with `admin.public_metrics`.
//
// Every piece of request input (path segments, query parameters, body) is decoded
// by a function that answers 4xx when it is malformed: a 500 means a bug.

import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { ListenerConfig } from '../config/types.js';
import { AuthError, SLUICE_ISSUER_NAME, principal, type Identity } from '../identity/types.js';
import { rolesOf, roleSetting, type Role } from '../identity/access.js';
import type { Revocation } from '../identity/revocations.js';
import { ApprovalError, type ApprovalScope } from '../governance/approvals.js';
import type { Gateway } from '../gateway/gateway.js';
import { TOO_MANY_PENDING } from '../protocols/kit/module.js';
import { parseDuration, parseUntil } from '../config/units.js';
import { isLoopback, listenOn } from '../gateway/listen.js';

export interface AdminApi {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  reload(cfg: ListenerConfig | undefined): void;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = 'error',
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024;

function send(res: http.ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = type === 'application/json' ? JSON.stringify(body, null, 1) + '\n' : String(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body larger than ${MAX_BODY} bytes`);
    parts.push(chunk);
  }
  if (size === 0) return {};
  try {
    const v = JSON.parse(Buffer.concat(parts).toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new HttpError(400, 'the request body must be a JSON object');
}

function optString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `"${key}" must be a string`);
  if (v.length > 2000) throw new HttpError(400, `"${key}" is longer than 2000 characters`);
  return v;
}

/** A percent-decoded path segment; malformed escapes (`%E0%A4%A`) are the client's error. */
function decodeSegment(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    throw new HttpError(400, `malformed percent-encoding in the URL path: ${JSON.stringify(seg.slice(0, 100))}`, 'bad_request');
  }
}

/** Ids are at most 200 bytes of UTF-8 without NUL (the recording store's rule; longer keys would not fit LMDB). */
function checkId(id: string, what: string): string {
  if (id.includes('\0') || Buffer.byteLength(id) > 200) throw new HttpError(400, `invalid ${what} id: at most 200 bytes, without NUL`, 'bad_request');
  return id;
}

/** A subject or token id in a revocation (tokens are at most 16 KB; keep what is stored small). */
function checkRevocationValue(v: string, what: string): string {
  if (v.includes('\0') || Buffer.byteLength(v) > 1024) throw new HttpError(400, `"${what}" must be at most 1024 bytes, without NUL`, 'bad_request');
  return v;
}

/** A boolean query parameter: 1/true/0/false (absent: false); anything else is a 400. */
function flag(url: URL, name: string): boolean {
  const v = url.searchParams.get(name);
  if (v === null || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true' || v === '') return true;
  throw new HttpError(400, `"${name}" must be 1, true, 0 or false, got ${JSON.stringify(v.slice(0, 100))}`, 'bad_request');
}

export async function startAdminApi(gw: Gateway, cfg: ListenerConfig): Promise<AdminApi> {
  let current = cfg;
  const roles = (who: Identity): Set<Role> => rolesOf(gw.config(), who);

  async function authenticate(req: http.IncomingMessage): Promise<{ who: Identity; roles: Set<Role> }> {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw new HttpError(401, 'missing token: send "Authorization: Bearer <JWT>" (the CLI reads --token or $SLUICE_TOKEN)', 'token_missing');
    if (!current.tls && !current.allow_insecure_auth && !isLoopback(req.socket.remoteAddress)) {
      throw new HttpError(403, 'tokens are refused over plain HTTP from a non-loopback address: configure listeners.admin.tls', 'insecure_transport');
    }
    let who: Identity;
    try {
      who = await gw.verifyIdentity(m[1]!);
    } catch (err) {
      if (err instanceof AuthError) throw new HttpError(401, err.message, err.code);
      throw err;
    }
    const r = roles(who);
    if (r.size === 0) {
      const c = gw.config();
      if (who.issuerName === SLUICE_ISSUER_NAME) {
        throw new HttpError(403, `sub "${who.sub}" may not use the admin API: it needs a group in admin.groups (${c.admin.groups.join(', ')}) or approvals.approvers (${c.approvals.approvers.join(', ')})`, 'forbidden');
      }
      const ext = c.identity.issuers.find((i) => i.name === who.issuerName);
      const groups = (l: string[] | undefined) => (l?.length ? l.join(', ') : 'none configured');
      throw new HttpError(
        403,
        `${principal(who)} may not use the admin API: tokens of issuer ${who.issuerName} get admin or approver rights only from ${roleSetting('admin', who.issuerName)} (${groups(ext?.admin_groups)}) or ${roleSetting('approver', who.issuerName)} (${groups(ext?.approver_groups)}); admin.groups and approvals.approvers apply to Sluice's own issuer only`,
        'forbidden',
      );
    }
    return { who, roles: r };
  }

  const need = (r: Set<Role>, who: Identity, role: Role, what: string) => {
    if (!r.has(role)) throw new HttpError(403, `${what} needs the ${role} role (${roleSetting(role, who.issuerName)})`, 'forbidden');
  };

  /** Issuer names as the config has them now: name -> iss. */
  const issuerIss = (): Map<string, string> => {
    const c = gw.config().identity;
    const m = new Map<string, string>();
    if (c.sluice_issuer.enabled) m.set(SLUICE_ISSUER_NAME, c.sluice_issuer.issuer);
    for (const i of c.issuers) m.set(i.name, i.issuer);
    return m;
  };

  /**
   * Which issuer a `sub` revocation applies to: the one named, every one ("any"), or the only
   * configured one. With several issuers and none named, the request is ambiguous and refused.
   */
  const revocationIssuer = (sub: string, named: string | undefined): { issuer?: string; issuer_name: string } => {
    const all = issuerIss();
    const names = [...all.keys()];
    if (named === 'any' || named === '*') return { issuer_name: 'any' };
    if (named !== undefined) {
      const iss = all.get(named);
      if (iss === undefined) throw new HttpError(400, `no issuer is named "${named}": the issuers are ${names.join(', ') || 'none'} (or "any" for every issuer)`, 'bad_request');
      return { issuer: iss, issuer_name: named };
    }
    if (names.length === 1) return { issuer: all.get(names[0]!)!, issuer_name: names[0]! };
    throw new HttpError(
      400,
      `sub "${sub}" is ambiguous: tokens of several issuers (${names.join(', ')}) can carry it; name one with "issuer" (sluice revoke --issuer NAME), or "any" for every issuer`,
      'ambiguous_issuer',
    );
  };

  /** A revocation as the API shows it: with the issuer's current name ("any" for every issuer). */
  const showRevocation = (r: Revocation) => {
    if (r.kind !== 'sub') return r;
    if (r.issuer === undefined) return { ...r, issuer_name: 'any' };
    const name = [...issuerIss()].find(([, iss]) => iss === r.issuer)?.[0];
    return { ...r, issuer_name: name ?? r.issuer_name ?? r.issuer };
  };

  function sessionsList(url: URL): unknown[] {
    const q = url.searchParams;
    const sub = q.get('sub') ?? q.get('identity') ?? undefined;
    const target = q.get('target') ?? undefined;
    const protocol = q.get('protocol') ?? undefined;
    const sinceText = q.get('since');
    let since: Date | undefined;
    if (sinceText) {
      // A duration ("2h") means that long ago; anything else must be a date.
      let d: Date | undefined;
      if (/^\d+(\.\d+)?\s*[a-z]+/i.test(sinceText)) {
        try {
          d = new Date(Date.now() - parseDuration(sinceText));
        } catch {
          d = undefined;
        }
      } else d = new Date(sinceText);
      if (d && !Number.isNaN(d.getTime())) since = d;
      else throw new HttpError(400, `"since" must be an ISO date or a duration such as 2h, got ${JSON.stringify(sinceText.slice(0, 100))}`, 'bad_request');
    }
    const limitText = q.get('limit');
    const limit = limitText === null ? 100 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new HttpError(400, `"limit" must be an integer from 1 to 10000, got ${JSON.stringify(limitText!.slice(0, 100))}`, 'bad_request');
    const fits = (s: { sub: string; target: string; protocol: string; started_at: string }) =>
      (!sub || s.sub === sub) && (!target || s.target === target) && (!protocol || s.protocol === protocol) && (!since || Date.parse(s.started_at) >= since.getTime());
    const live = gw.sessions
      .list()
      .map((s) => ({ ...s.summary(), status: 'live' }))
      .filter(fits);
    if (flag(url, 'live')) return live.slice(0, limit);
    const seen = new Set(live.map((s) => s.id));
    const store = gw.recordingStore();
    const recent = store
      ? store
          .list({ sub, target, since, limit: limit + seen.size })
          .filter((e) => !seen.has(e.id) && (!protocol || e.protocol === protocol))
          .map(({ wrapped_key: _k, head: _h, ...rest }) => rest)
      : [];
    return [...live, ...recent].slice(0, limit);
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://sluice');
    } catch {
      throw new HttpError(400, 'malformed request URL', 'bad_request');
    }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';

    if (path === '/healthz') {
      const store = gw.config().recording.enabled ? (gw.recordingStore() ? 'ok' : 'failing') : 'off';
      send(res, store === 'failing' ? 503 : 200, { status: store === 'failing' ? 'degraded' : 'ok', sessions: gw.sessions.size, recording: store });
      return;
    }
    if (path === '/metrics') {
      if (!gw.config().admin.public_metrics) {
        const a = await authenticate(req);
        void a;
      }
      send(res, 200, await gw.metrics.text(), gw.metrics.contentType);
      return;
    }
    if (path !== '/api' && !path.startsWith('/api/')) throw new HttpError(404, `no such endpoint ${path}: see GET /api`);

    const { who, roles: r } = await authenticate(req);
    const parts = path.split('/').slice(2).map(decodeSegment); // ['sessions', id?] …
    const [res0, id, action] = parts;

    if (res0 === 'sessions') {
      if (!id && method === 'GET') return send(res, 200, { sessions: sessionsList(url) });
      if (id && !action && method === 'GET') {
        checkId(id, 'session');
        const live = gw.sessions.get(id);
        if (live) return send(res, 200, { ...live.summary(), status: 'live' });
        const stored = gw.recordingStore()?.get(id);
        if (!stored) throw new HttpError(404, `no session ${id}`, 'not_found');
        const { wrapped_key: _k, head: _h, ...rest } = stored;
        return send(res, 200, rest);
      }
      if (id && !action && method === 'DELETE') {
        need(r, who, 'admin', 'killing a session');
        checkId(id, 'session');
        const body = await readJson(req);
        const reason = optString(body, 'reason') ?? url.searchParams.get('reason') ?? undefined;
        if (!gw.kill(id, principal(who), reason)) throw new HttpError(404, `no live session ${id}: run \`sluice sessions list --live\``, 'not_found');
        return send(res, 200, { killed: id, reason });
      }
    }

    if (res0 === 'approvals') {
      if (!id && method === 'GET') {
        const all = flag(url, 'all');
        return send(res, 200, { approvals: gw.approvals.list(all) });
      }
      if (id && !action && method === 'GET') {
        const v = gw.approvals.get(id);
        if (!v) throw new HttpError(404, `no approval request ${id}`, 'not_found');
        return send(res, 200, v);
      }
      if (id && (action === 'approve' || action === 'deny') && method === 'POST') {
        const body = await readJson(req);
        const reason = optString(body, 'reason');
        try {
          if (action === 'approve') {
            const scope = optString(body, 'scope') ?? 'once';
            if (scope !== 'once' && scope !== 'fingerprint') throw new HttpError(400, `"scope" must be "once" or "fingerprint", got "${scope}"`);
            return send(res, 200, gw.approvals.approve(id, who, { reason, scope: scope as ApprovalScope }));
          }
          return send(res, 200, gw.approvals.deny(id, who, reason));
        } catch (err) {
          if (err instanceof ApprovalError) {
            const status = { not_found: 404, not_pending: 409, forbidden: 403, self_approval: 403, already_voted: 409 }[err.code];
            throw new HttpError(status, err.message, err.code);
          }
          throw err;
        }
      }
    }

    if (res0 === 'revocations') {
      need(r, who, 'admin', 'revocations');
      if (!id && method === 'GET') return send(res, 200, { revocations: (gw.revocations?.list() ?? []).map(showRevocation) });
      if (!id && method === 'POST') {
        const body = await readJson(req);
        const sub = optString(body, 'sub');
        const jti = optString(body, 'jti');
        if (!sub === !jti) throw new HttpError(400, 'give exactly one of "sub" or "jti"');
        checkRevocationValue((sub ?? jti)!, sub ? 'sub' : 'jti');
        const issuerName = optString(body, 'issuer');
        if (jti && issuerName !== undefined) throw new HttpError(400, '"issuer" applies to a "sub" revocation only (a jti revocation covers that token id from any issuer)');
        const scope = sub ? revocationIssuer(sub, issuerName) : undefined;
        const untilText = optString(body, 'until');
        let until: string | undefined;
        if (untilText) {
          const t = parseUntil(untilText);
          if (!t) throw new HttpError(400, `"until" must be a duration such as 2h or an ISO date, got "${untilText}"`);
          until = t.toISOString();
        }
        const rev: Revocation = { kind: sub ? 'sub' : 'jti', value: (sub ?? jti)!, until, reason: optString(body, 'reason'), by: principal(who), at: new Date().toISOString() };
        if (scope) {
          if (scope.issuer !== undefined) rev.issuer = scope.issuer;
          rev.issuer_name = scope.issuer_name;
        }
        const n = await gw.revoke(rev);
        return send(res, 201, { revoked: sub ? { sub, issuer: scope!.issuer_name } : { jti }, until, sessions_closed: n });
      }
      if ((id === 'sub' || id === 'jti') && action && parts.length === 3 && method === 'DELETE') {
        checkRevocationValue(action, id);
        const named = url.searchParams.get('issuer') ?? undefined;
        if (id === 'jti' && named !== undefined) throw new HttpError(400, '"issuer" applies to a "sub" revocation only');
        const scope = id === 'sub' ? revocationIssuer(action, named) : undefined;
        const lifted = await gw.unrevoke({ kind: id, value: action, issuer: scope?.issuer }, principal(who));
        if (!lifted) {
          const others = id === 'sub' ? (gw.revocations?.list() ?? []).filter((x) => x.kind === 'sub' && x.value === action).map((x) => showRevocation(x).issuer_name) : [];
          throw new HttpError(404, `${id} ${action}${scope ? ` of issuer ${scope.issuer_name}` : ''} is not revoked${others.length ? ` (it is revoked for issuer ${others.join(', ')}: name that one)` : ''}`, 'not_found');
        }
        return send(res, 200, { unrevoked: id === 'sub' ? { sub: action, issuer: scope!.issuer_name } : { jti: action } });
      }
    }

    if (res0 === '' || path === '/api') {
      return send(res, 200, {
        endpoints: [
          'GET /healthz',
          'GET /metrics',
          'GET /api/sessions?live=1&sub=&target=&protocol=&since=&limit=',
          'GET /api/sessions/:id',
          'DELETE /api/sessions/:id {reason}',
          'GET /api/approvals?all=1',
          'GET /api/approvals/:id',
          'POST /api/approvals/:id/approve {reason, scope: once|fingerprint}',
          'POST /api/approvals/:id/deny {reason}',
          'GET /api/revocations',
          'POST /api/revocations {sub, issuer: NAME|any | jti, until, reason}',
          'DELETE /api/revocations/sub/:sub?issuer=NAME|any',
          'DELETE /api/revocations/jti/:jti',
        ],
      });
    }
    throw new HttpError(404, `no endpoint ${method} ${path}: GET /api lists them`, 'not_found');
  }

  /** `address:port` of connections refused admission, answered 503 if they send a request before they are dropped. */
  const refused = new Set<string>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (refused.size && refused.has(`${req.socket.remoteAddress}:${req.socket.remotePort}`)) {
      res.setHeader('connection', 'close');
      res.setHeader('retry-after', '1');
      return send(res, 503, { error: 'too_many_pending', message: TOO_MANY_PENDING });
    }
    route(req, res).catch((err: Error) => {
      if (res.headersSent) return res.destroy();
      if (err instanceof HttpError) return send(res, err.status, { error: err.code, message: err.message });
      // Request input that a decoder rejected without saying so is still the client's error.
      if (err instanceof URIError) return send(res, 400, { error: 'bad_request', message: `malformed request: ${err.message}` });
      gw.log.error({ event: 'admin.error', err: err.message, path: req.url?.split('?')[0] }, 'admin API request failed');
      send(res, 500, { error: 'internal', message: 'internal error; see the gateway log' });
    });
  };

  const tlsOptions = (c: ListenerConfig) => (c.tls ? { cert: readFileSync(c.tls.cert), key: readFileSync(c.tls.key) } : null);
  const opts = tlsOptions(cfg);
  // Deadlines are checked every second (Node's default is every 30 s, which let a
  // silent connection stay ~40 s); they are applied from the limits below.
  const httpOpts = { connectionsCheckingInterval: 1000 };
  const startLimits = gw.config().limits;
  const server: http.Server = opts
    ? https.createServer({ ...opts, ...httpOpts, handshakeTimeout: Math.min(startLimits.startup_timeout, startLimits.auth_timeout) }, handler)
    : http.createServer(httpOpts, handler);
  const applyLimits = () => {
    const l = gw.config().limits;
    // Request headers within the startup deadline, the whole request within auth_timeout.
    const headers = Math.min(l.startup_timeout, l.auth_timeout, 10_000);
    server.requestTimeout = Math.max(headers, Math.min(l.auth_timeout, 30_000));
    server.headersTimeout = headers;
    server.keepAliveTimeout = 5_000;
  };
  applyLimits();
  // Every connection counts as waiting to authenticate (each request carries its
  // own token) in the pool all listeners share, from accept until it closes;
  // the deadlines above end idle and slow ones. A refused connection is told so
  // (503) if it sends a request within a second, then dropped.
  server.on('connection', (sock: Socket) => {
    const release = gw.admitUnauthenticated({ address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0, protocol: 'admin' }, () => sock.destroy());
    if (!release) {
      // By address and port: under TLS the request arrives on the TLS socket, not this one.
      const key = `${sock.remoteAddress}:${sock.remotePort}`;
      refused.add(key);
      setTimeout(() => {
        refused.delete(key);
        sock.destroy();
      }, 1000).unref();
      return;
    }
    sock.once('close', release);
  });
  const addr = await listenOn(server, cfg.port, cfg.host);
  const scheme = cfg.tls ? 'https' : 'http';
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    host: addr.address,
    port: addr.port,
    url: `${scheme}://${hostPart}:${addr.port}`,
    reload(next) {
      applyLimits();
      if (!next) return;
      current = next;
      const o = tlsOptions(next);
      if (o && server instanceof https.Server) server.setSecureContext(o);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
