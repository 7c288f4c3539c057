// One HTTP request through Sluice: framing checks, routing, identity,
// governance, forwarding with injected credentials, in-stream masking,
// recording, the audit line.

import { performance } from 'node:perf_hooks';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { Readable, type Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { AuthError } from '../../identity/types.js';
import type { HttpListenerConfig, HttpTargetConfig } from '../../config/types.js';
import type { ClientInfo, Core } from '../kit/module.js';
import type { Session } from '../../session/session.js';
import { CONTINUE, type Held, type Refusal, type Transport } from '../../governance/pipeline.js';
import type { Decision } from '../../policy/engine.js';
import { normalizePath } from '../../policy/http/path.js';
import { httpAction } from '../../policy/http/cache-key.js';
import { Dir } from '../../recording/types.js';
import { isLoopback } from '../../gateway/listen.js';
import { ambiguousHead, HOP_BY_HOP, overrideHeader } from './framing.js';
import { refusalProblem, sendProblem, type Problem } from './problem.js';
import { dataFrame } from './frames.js';
import type { Upstreams } from './upstream.js';
import { createBodyMasker, createBodySink, maskWhole, type BodyMasker, type Sink } from './body-masker.js';
import { forwardWebSocket } from './websocket.js';

export type Req = IncomingMessage | Http2ServerRequest;
export type Res = ServerResponse | Http2ServerResponse;

/** A request a held approval let through once (`Sluice-Approval: <id>` on a retry). */
interface Grant {
  sub: string;
  issuer: string;
  target: string;
  /** Method, normalised path, query and body digest of the request that was approved. */
  key: string;
  rule: string;
  approvers: string[];
  used: boolean;
  expires: number;
}

/** What every request of one listener shares. */
export interface ListenerState {
  core: Core;
  cfg: HttpListenerConfig;
  upstreams: Upstreams;
  grants: Map<string, Grant>;
  /** Live sessions by `target \0 sha256(token)`. */
  sessions: Map<string, HttpSession>;
  /** Sessions being authenticated (concurrent first requests share one). */
  opening: Map<string, Promise<HttpSession>>;
  /** Whether this listener speaks TLS. */
  tls: boolean;
  /** listeners.http.token_header, lower-cased as Node names headers. */
  tokenHeader: string | undefined;
}

/** One client connection (HTTP/1.1 socket or HTTP/2 session). */
export interface Conn {
  client: ClientInfo;
  /** The session of the connection's last request, and its token (keep-alive fast path). */
  last?: { token: string; hs: HttpSession };
  /** Frees the connection's pre-auth slot (first authenticated request). */
  release: (() => void) | null;
  h2: boolean;
  /** Ends the whole connection. */
  destroy(): void;
  closed: boolean;
}

export interface HttpSession {
  s: Session;
  /** `target \0 sha256(token)` */
  key: string;
  target: HttpTargetConfig;
  /** When the last request started (ms since the epoch). */
  lastUse: number;
  /** Called when the session closes (the listener forgets it). */
  closing?: (hs: HttpSession) => void;
  /** Token expiry, ms since the epoch (0: none). */
  expMs: number;
  reqNo: number;
  inflight: Set<Exchange>;
}

const METHOD_LABELS = new Set(['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'CONNECT']);
const REDACTED = '[redacted]';
/**
 * Request headers whose values are credentials: recorded as `[redacted]` (the caller's token, and
 * any other credential it sends along: cookies, a second Authorization). Responses: set-cookie.
 */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);


/** Where the caller's token came from, to strip it before forwarding. */
type TokenVia = 'bearer' | 'basic' | 'header';

function tokenOf(req: Req, tokenHeader: string | undefined): { token: string; via: TokenVia } | { error: string } | null {
  const a = req.headers.authorization;
  if (a !== undefined) {
    if (a.startsWith('Bearer ') && a.length > 7 && a.charCodeAt(7) !== 0x20) return { token: a.slice(7).trim(), via: 'bearer' };
    const sp = a.indexOf(' ');
    const scheme = sp > 0 ? a.slice(0, sp).toLowerCase() : a.toLowerCase();
    const rest = sp > 0 ? a.slice(sp + 1).trim() : '';
    if (scheme === 'bearer' && rest) return { token: rest, via: 'bearer' };
    if (scheme === 'basic' && rest) {
      const dec = Buffer.from(rest, 'base64').toString('utf8');
      const c = dec.indexOf(':');
      if (c >= 0 && dec.length > c + 1) return { token: dec.slice(c + 1), via: 'basic' };
      return { error: 'Basic credentials carry the Sluice token as the password (any user name), but the password is empty' };
    }
    if (!tokenHeader || req.headers[tokenHeader] === undefined) return { error: `Authorization scheme ${JSON.stringify(scheme)} is not accepted: send "Authorization: Bearer <token>" or Basic with the token as the password` };
  }
  if (tokenHeader) {
    const v = req.headers[tokenHeader];
    if (typeof v === 'string' && v) return { token: v.trim(), via: 'header' };
  }
  return null;
}

const AUTH_STATUS: Partial<Record<string, number>> = {
  unknown_target: 404,
  target_not_allowed: 403,
  token_revoked: 403,
  recording_unavailable: 503,
  issuer_unreachable: 503,
};

/** The target and the path within it: by Host (`<target>.<domain>`) or by the first path segment. */
function route(st: ListenerState, req: Req, path: string): { target: string; path: string } | null {
  const domain = st.cfg.domain;
  if (domain) {
    let host = (req as Http2ServerRequest).authority ?? req.headers.host ?? '';
    const colon = host.lastIndexOf(':');
    if (colon > 0 && !host.endsWith(']')) host = host.slice(0, colon);
    host = host.toLowerCase();
    if (host.length > domain.length + 1 && host.endsWith(domain) && host[host.length - domain.length - 1] === '.') {
      const label = host.slice(0, host.length - domain.length - 1);
      if (!label.includes('.')) return { target: label, path };
    }
  }
  const slash = path.indexOf('/', 1);
  const target = slash < 0 ? path.slice(1) : path.slice(1, slash);
  if (!target) return null;
  return { target, path: slash < 0 ? '/' : path.slice(slash) };
}

/** The headers forwarded upstream: the client's, minus hop-by-hop, the token and Sluice's own, plus the injected ones. */
function upstreamHeaders(req: Req, via: TokenVia | undefined, tokenHeader: string | undefined, injected: [string, string][], host: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const h = req.headers;
  const conn = h.connection;
  const named = typeof conn === 'string' && conn.includes(',') ? conn.toLowerCase().split(',').map((s) => s.trim()) : typeof conn === 'string' ? [conn.toLowerCase().trim()] : [];
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* : pseudo-header */ || HOP_BY_HOP.has(k) || k === 'host' || k === 'sluice-approval') continue;
    if (k === 'authorization' && (via === 'bearer' || via === 'basic')) continue;
    if (k === tokenHeader) continue;
    if (named.length && named.includes(k)) continue;
    const v = h[k];
    if (v !== undefined) out[k] = v;
  }
  if (h.te === 'trailers') out.te = 'trailers';
  for (const [k, v] of injected) out[k] = v;
  out.host = host;
  return out;
}

function unsecret(v: string, secrets: string[]): string {
  for (const s of secrets) if (s.length >= 4 && v.includes(s)) v = v.split(s).join(REDACTED);
  return v;
}

function headerPairs(h: Record<string, string | string[] | undefined>, redact: (k: string) => boolean): [string, string][] {
  const out: [string, string][] = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (redact(k)) out.push([k, REDACTED]);
    else if (Array.isArray(v)) for (const x of v) out.push([k, x]);
    else out.push([k, v]);
  }
  return out;
}

/** One request in flight. */
export class Exchange implements Transport {
  readonly t0 = performance.now();
  decision: Decision | null = null;
  outcome = 'ok';
  error?: string;
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Values masked in this request's response. */
  masked = 0;
  n = 0;
  hs?: HttpSession;
  /** The approval wait is over: a later outcome only records a grant. */
  private detached = false;
  private held: Held | null = null;
  private waitTimer: NodeJS.Timeout | null = null;
  /** Aborts the upstream request (set once it is dispatched). */
  abortUpstream: () => void = () => {};
  /** The normalised request line the policy decided on, and what a grant must match. */
  method = '';
  path = '';
  query = '';
  /** Method, normalised path, query and body digest: what an approval grant must match. */
  get grantKey(): string {
    return `${this.method} ${this.path}?${this.query}#${this.body ? createHash('sha256').update(this.body).digest('base64url') : ''}`;
  }
  body: Buffer | null = null;
  private done = false;
  forward: () => void = () => {};
  /** A websocket upgrade: the socket and the bytes after its head. */
  ws?: { sock: Socket; head: Buffer };
  /** How a relayed websocket ends on a kill. */
  onKill?: (reason: string) => void;

  constructor(
    readonly st: ListenerState,
    readonly conn: Conn,
    readonly req: Req,
    readonly res: Res,
  ) {}

  get ended(): boolean {
    return this.done;
  }

  // ---- Transport (the governance pipeline)

  decided(d: Decision | null): void {
    this.decision = d;
  }

  refuse(r: Refusal): void {
    if (this.detached) return;
    this.clearWait();
    this.outcome = r.kind === 'policy' || r.kind === 'unparsable' ? 'denied' : 'refused';
    this.reply(refusalProblem(r));
  }

  proceed(): void {
    if (this.detached) {
      this.grant();
      return;
    }
    this.clearWait();
    this.forward();
  }

  notify(): void {
    // The client is waiting for its response; the approval notice is in the log, audit and webhooks.
  }

  pause(held: Held): void {
    this.held = held;
    // The client gave up while waiting: the approval request is withdrawn, nothing runs later.
    this.res.once('close', () => {
      if (!this.done && !this.detached) {
        this.outcome = 'client_abort';
        held.withdraw('the client closed the connection while waiting');
        this.finish(499);
      }
    });
    const wait = this.st.cfg.approval_wait;
    this.waitTimer = setTimeout(() => this.detach(), wait);
    this.waitTimer.unref();
  }

  resume(): void {}

  private clearWait(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
  }

  /** The client waited long enough: 403 with the approval id; a later approval lets one retry through. */
  private detach(): void {
    const held = this.held!;
    this.detached = true;
    this.outcome = 'held';
    held.detach?.();
    this.finish(
      sendProblem(
        this.res,
        {
          status: 403,
          title: 'Approval pending',
          detail: `this request needs approval (${held.decision.message}); it is waiting as approval ${held.id}. Once approved, retry it unchanged with the header "Sluice-Approval: ${held.id}" (it then goes through once)`,
          approval: held.id,
          policy: held.decision.policy,
          rule: held.decision.rule,
        },
        { 'sluice-approval': held.id, 'retry-after': '30' },
      ),
    );
  }

  private grant(): void {
    const hs = this.hs!;
    const id = this.held!.id;
    const id_ = hs.s.identity;
    this.st.grants.set(id, { sub: id_.sub, issuer: id_.issuer, target: hs.target.name, key: this.grantKey, rule: this.held!.decision.rule, approvers: [], used: false, expires: Date.now() + 3600_000 });
  }

  /**
   * A request answered before its body was read through (refused, upstream failed mid-upload):
   * the rest of the body is never forwarded, and on HTTP/1.1 the connection cannot carry another
   * request until it is read, so it is closed once the answer is out. (HTTP/2: the stream is reset.)
   */
  private dropUnreadBody(): void {
    const req = this.req;
    if (req.complete || this.ws) return;
    if (this.conn.h2) {
      if (this.res.writableFinished) req.destroy();
      else this.res.once('finish', () => req.destroy());
      return;
    }
    const conn = this.conn;
    if (this.res.writableFinished || this.res.destroyed) conn.destroy();
    else {
      (this.res as ServerResponse).shouldKeepAlive = false;
      this.res.once('close', () => conn.destroy());
    }
  }

  /** Answers with a problem and ends the request; the answer is recorded and counted like any response. */
  reply(p: Problem, extraHeaders?: Record<string, string>, close = false): void {
    this.finish(
      sendProblem(this.res, p, extraHeaders, close, (head, body) => {
        this.bytesOut += body.length;
        const rec = this.hs?.s.recorder;
        if (rec) {
          rec.event({ event: 'http.response', req: this.n, status: p.status, headers: Object.entries(head).map(([k, v]) => [k, String(v)]) });
          rec.record(Dir.GatewayToClient, dataFrame(this.n, 0, body));
        }
        if (this.hs) this.hs.s.bytesToClient += body.length;
      }),
    );
  }

  /** Ends the request from outside (kill switch, session end). */
  kill(reason: string): void {
    if (this.done) return;
    this.outcome = 'killed';
    this.error = reason;
    if (this.onKill) return this.onKill(reason);
    this.abortUpstream();
    if (!this.res.headersSent) this.reply({ status: 403, title: 'Session ended', detail: reason }, undefined, true);
    else {
      this.res.destroy();
      this.finish(this.status);
    }
  }

  /** The request is over: recording, audit line, metrics. Idempotent. */
  finish(status: number): void {
    if (this.done) return;
    this.done = true;
    this.clearWait();
    if (!this.status) this.status = status;
    this.dropUnreadBody();
    const hs = this.hs;
    if (!hs) return;
    hs.inflight.delete(this);
    const s = hs.s;
    const ms = Math.round((performance.now() - this.t0) * 10) / 10;
    s.recorder?.event({ event: 'http.end', req: this.n, status: this.status, outcome: this.outcome, bytes_in: this.bytesIn, bytes_out: this.bytesOut, ms, error: this.error });
    s.registry.auditor.request(s, {
      method: this.method,
      path: this.path + (this.query ? `?${this.query}` : ''),
      status: this.status,
      outcome: this.outcome,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      ms,
      masked: this.masked,
      decision: this.decision?.action,
      policy: this.decision?.policy,
      rule: this.decision?.rule,
      error: this.error,
    });
    const tallies = s.registry.policies.tallies;
    // A client chooses the method: unknown ones share one label, so metrics cannot be flooded with series.
    const key = `${hs.target.name}\0${METHOD_LABELS.has(this.method) ? this.method : 'OTHER'}\0${this.status}`;
    tallies.httpRequests.set(key, (tallies.httpRequests.get(key) ?? 0) + 1);
  }
}

/** Handles one request end to end. Never throws: every failure becomes a problem response. */
export async function handleRequest(st: ListenerState, conn: Conn, req: Req, res: Res, ws?: Exchange['ws']): Promise<void> {
  const ex = new Exchange(st, conn, req, res);
  ex.ws = ws;
  try {
    await run(ex);
  } catch (err) {
    ex.error = (err as Error).message;
    ex.outcome = 'error';
    st.core.log.error({ event: 'http.error', err: (err as Error).message, stack: (err as Error).stack }, 'http request failed inside Sluice');
    ex.reply({ status: 500, title: 'Internal error', detail: 'Sluice failed on this request; the error is in its log' });
  }
}

async function run(ex: Exchange): Promise<void> {
  const { st, conn, req, res } = ex;
  const core = st.core;

  // 1. Framing: what another parser could read differently is refused before anything else.
  if (!conn.h2) {
    const bad = ambiguousHead(req.httpVersion, req.url ?? '', req.rawHeaders);
    if (bad) return void ex.reply({ status: 400, title: 'Bad request', detail: `ambiguous request refused: ${bad}` }, undefined, true);
  }
  const ov = overrideHeader(req.headers);
  if (ov) return void ex.reply({ status: 400, title: 'Bad request', detail: `the ${ov} header is refused: the policy decides the method and path of the request line, so method and path overrides are not relayed` });
  if (!st.tls && !conn.client.secure && !st.cfg.allow_insecure_auth && !isLoopback(conn.client.address)) {
    return void ex.reply({ status: 403, title: 'TLS required', detail: 'tokens are accepted over plain HTTP only from loopback clients: configure listeners.http.tls, or allow_insecure_auth: true on a trusted network' }, undefined, true);
  }

  // 2. The path, decoded and normalised once; the routing and the policy see this form, and so does the upstream.
  const raw = req.url ?? '/';
  const np = normalizePath(raw);
  const method = req.method ?? 'GET';
  ex.method = method;
  let pathError: string | undefined;
  let fullPath = '/';
  let query = '';
  if ('error' in np) pathError = np.error;
  else {
    fullPath = np.path;
    query = np.query;
  }
  const routed = route(st, req, pathError ? rawPathOnly(raw) : fullPath);
  if (!routed) {
    return void ex.reply({ status: 404, title: 'No target', detail: `name the target as the first path segment (${st.tls ? 'https' : 'http'}://<sluice>/<target>/…)${st.cfg.domain ? ` or as the host name (<target>.${st.cfg.domain})` : ''}` });
  }
  ex.path = routed.path;
  ex.query = query;

  // 3. Identity.
  const tok = tokenOf(req, st.tokenHeader);
  const challenge = { 'www-authenticate': 'Bearer realm="sluice", Basic realm="sluice"' };
  if (tok === null) return void ex.reply({ status: 401, title: 'Token required', detail: 'send a Sluice token: "Authorization: Bearer <token>", Basic auth with the token as the password' + (st.cfg.token_header ? `, or the ${st.cfg.token_header} header` : '') }, challenge);
  if ('error' in tok) return void ex.reply({ status: 401, title: 'Token required', detail: tok.error }, challenge);
  const hs = await sessionFor(ex, routed.target, tok.token);
  if (!hs) return;
  ex.hs = hs;
  const s = hs.s;
  ex.n = ++hs.reqNo;
  hs.lastUse = Date.now();
  hs.inflight.add(ex);
  const t = hs.target;

  // 4. Record the request head (the token never: it is stripped and shown redacted).
  const rec = s.recorder;
  if (rec) {
    const tokenHeader = st.tokenHeader;
    rec.event({
      event: 'http.request',
      req: ex.n,
      method,
      path: ex.path + (query ? `?${query}` : ''),
      version: conn.h2 ? '2' : req.httpVersion,
      headers: headerPairs(req.headers, (k) => CREDENTIAL_HEADERS.has(k) || k === tokenHeader),
    });
  }

  // 5. A body the policy or an approval needs whole is read first (bounded).
  const set = s.policy();
  const inputs = set?.httpInputs;
  const ctype = String(req.headers['content-type'] ?? '');
  const hasBody = !ex.ws && requestHasBody(req, conn.h2);
  const approvalId = typeof req.headers['sluice-approval'] === 'string' ? req.headers['sluice-approval'].trim() : undefined;
  // A rule reading JSON body fields reads any body (what does not parse as JSON is a body_error the rules see).
  const needsBody = hasBody && (approvalId !== undefined || (inputs !== undefined && inputs.bodyPaths.length > 0));
  let bodyJson: unknown;
  let bodyError: string | undefined;
  if (needsBody) {
    const b = await readBody(req, st.cfg.max_policy_body);
    if (b === null) {
      ex.outcome = 'denied';
      return void ex.reply({ status: 413, title: 'Request body too large', detail: `the policy reads JSON request bodies whole, up to listeners.http.max_policy_body (${st.cfg.max_policy_body} bytes); this one is larger` }, undefined, true);
    }
    ex.body = b;
    ex.bytesIn += b.length;
    s.bytesFromClient += b.length;
    if (inputs && inputs.bodyPaths.length > 0 && b.length) {
      try {
        bodyJson = JSON.parse(b.toString('utf8'));
      } catch (e) {
        bodyError = `the request body is not JSON: ${(e as Error).message}`;
      }
    }
    if (rec && b.length) rec.record(Dir.ClientToGateway, dataFrame(ex.n, 0, recordedRequestBody(s, b, ctype)));
  }

  // 6. Forwarding, once the pipeline lets it run.
  ex.forward = () => void forward(ex, hs, t, tok.via, hasBody).catch((err) => {
    ex.error = (err as Error).message;
    ex.outcome = 'error';
    core.log.error({ event: 'http.error', session: s.id, err: (err as Error).message, stack: (err as Error).stack }, 'http forwarding failed inside Sluice');
    ex.reply({ status: 500, title: 'Internal error', detail: 'Sluice failed on this request; the error is in its log' });
  });

  // A retry of an approved request goes through once.
  if (approvalId !== undefined) {
    const g = st.grants.get(approvalId);
    const id = s.identity;
    const key = ex.grantKey;
    if (!g || g.used || g.expires < Date.now() || g.sub !== id.sub || g.issuer !== id.issuer || g.target !== t.name || g.key !== key) {
      ex.outcome = 'denied';
      const why = !g ? 'is not approved (yet), or unknown' : g.used ? 'was already used' : g.key !== key ? 'was given for a different request (method, path, query and body must be unchanged)' : 'does not belong to this identity and target';
      return void ex.reply({ status: 403, title: 'Approval not usable', detail: `approval ${approvalId} ${why}`, approval: approvalId });
    }
    g.used = true;
    s.gov.pass();
    ex.decision = { action: 'allow', rule: g.rule, message: `approved (approval ${approvalId})` };
    rec?.event({ event: 'approval.used', approval: approvalId, req: ex.n });
    return ex.forward();
  }

  if (!set) {
    if (pathError) {
      // No policy decides, but an ambiguous path is never forwarded.
      ex.outcome = 'denied';
      s.gov.pass();
      return void ex.reply({ status: 400, title: 'Bad request', detail: `ambiguous path refused: ${pathError}` });
    }
    s.gov.pass();
    return ex.forward();
  }
  // The policy sees the path within the target, normalised as it will be forwarded (a refused path: policy.on_parse_error).
  const a = httpAction(set, {
    method,
    target: pathError ? rawTarget(raw, routed.path) : ex.path + (query ? `?${query}` : ''),
    headers: req.headers as Record<string, string | string[] | undefined>,
    body: bodyJson,
    body_error: bodyError,
  });
  const status = s.gov.govern(
    {
      text: a.text,
      analyze: a.analyze,
      cacheKey: a.cacheKey,
      noun: 'request',
      display: ex.body && ex.body.length ? `${a.text}\n${ex.body.subarray(0, 2048).toString('utf8')}` : a.text,
      ownAudit: true,
    },
    ex,
  );
  if (status === CONTINUE) {
    if (pathError) {
      // policy.on_parse_error: allow still never forwards an ambiguous path.
      ex.outcome = 'denied';
      return void ex.reply({ status: 400, title: 'Bad request', detail: `ambiguous path refused: ${pathError}` });
    }
    ex.forward();
  }
}

/** The routed path with the raw query, for a request whose path did not normalise. */
function rawTarget(raw: string, routedPath: string): string {
  const q = raw.indexOf('?');
  return q < 0 ? routedPath : routedPath + raw.slice(q);
}

function rawPathOnly(raw: string): string {
  const q = raw.indexOf('?');
  return q < 0 ? raw : raw.slice(0, q);
}

function requestHasBody(req: Req, h2: boolean): boolean {
  if (h2) return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const cl = req.headers['content-length'];
  if (cl !== undefined) return cl !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** The whole body, or null past `max` bytes. */
async function readBody(req: Req, max: number): Promise<Buffer | null> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) return null;
    parts.push(c);
  }
  return Buffer.concat(parts, n);
}

/** The request body as the recording keeps it: masked with the session's rules when masking applies. */
function recordedRequestBody(s: Session, b: Buffer, ctype: string): Buffer {
  const set = s.masking();
  if (!set) return b;
  const m = maskWhole({ contentType: ctype || 'text/plain', set, ctx: s.maskContext }, b);
  if (m === null) return b;
  if ('refuse' in m) return Buffer.from(`[${b.length} bytes not recorded: ${m.refuse}]`);
  return m.body;
}

/**
 * The session of (token, target): requests carrying the same token to the same target share one
 * session across connections (a CI job's curl calls, a driver's pool, HTTP/2 streams) while they
 * keep coming; it ends `idle_timeout` after its last request, when the token expires, or on a kill.
 * The token is verified once per session, not per request or connection.
 */
async function sessionFor(ex: Exchange, targetName: string, token: string): Promise<HttpSession | null> {
  const { st, conn, res } = ex;
  // The connection remembers its last session: a keep-alive client pays one string compare.
  const last = conn.last;
  let hs: HttpSession | undefined;
  let key: string;
  if (last && last.token === token && last.hs.target.name === targetName && !last.hs.s.endedAt) {
    hs = last.hs;
    key = hs.key;
  } else {
    key = `${targetName}\0${createHash('sha256').update(token).digest('base64url')}`;
    hs = st.sessions.get(key);
    if (hs?.s.endedAt) hs = undefined;
  }
  if (hs) {
    if (hs.expMs && Date.now() >= hs.expMs) {
      closeSession(hs, 'the token expired');
      ex.outcome = 'refused';
      ex.reply({ status: 401, title: 'Token refused', detail: 'the token expired; get a fresh one', code: 'token_expired' }, { 'www-authenticate': 'Bearer realm="sluice", error="invalid_token"' });
      return null;
    }
    conn.last = { token, hs };
    admitted(conn);
    return hs;
  }
  // Concurrent first requests of one token share one verification and one session.
  let p = st.opening.get(key);
  if (!p) {
    p = st.core.authenticate(token, targetName, 'http', conn.client).then((grant) => {
      const h: HttpSession = { s: null as unknown as Session, key, target: grant.target, expMs: grant.identity.exp ? grant.identity.exp * 1000 : 0, reqNo: 0, inflight: new Set(), lastUse: Date.now() };
      h.s = st.core.sessions.open({
        protocol: 'http',
        identity: grant.identity,
        target: targetName,
        client: conn.client,
        terminate: (reason) => terminateSession(st, h, reason),
      });
      h.closing = (x) => {
        if (st.sessions.get(x.key) === x) st.sessions.delete(x.key);
      };
      st.sessions.set(key, h);
      return h;
    });
    st.opening.set(key, p);
    void p.then(
      () => st.opening.delete(key),
      () => st.opening.delete(key),
    );
  }
  try {
    hs = await p;
  } catch (err) {
    if (err instanceof AuthError) {
      const status = AUTH_STATUS[err.code] ?? 401;
      ex.outcome = 'refused';
      ex.reply({ status, title: status === 401 ? 'Token refused' : status === 404 ? 'Unknown target' : status === 503 ? 'Unavailable' : 'Forbidden', detail: err.message, code: err.code }, status === 401 ? { 'www-authenticate': 'Bearer realm="sluice", error="invalid_token"' } : undefined);
      return null;
    }
    throw err;
  }
  if (conn.closed || res.destroyed) return null;
  conn.last = { token, hs };
  admitted(conn);
  return hs;
}

/** The connection authenticated: its pre-auth slot is free. */
function admitted(conn: Conn): void {
  if (conn.release) {
    conn.release();
    conn.release = null;
  }
}

/** Kill switch / admin kill: in-flight requests end now, the session closes. */
function terminateSession(st: ListenerState, hs: HttpSession, reason: string): void {
  for (const ex of [...hs.inflight]) ex.kill(reason);
  closeSession(hs, reason);
  void st;
}

export function closeSession(hs: HttpSession, reason: string): void {
  hs.closing?.(hs);
  hs.s.close(reason);
}

/** Closes sessions idle past `idleMs` (called every second by the listener). */
export function sweepSessions(st: ListenerState, idleMs: number): void {
  const now = Date.now();
  for (const hs of st.sessions.values()) {
    if (hs.s.endedAt) st.sessions.delete(hs.key);
    else if (hs.inflight.size === 0 && now - hs.lastUse > idleMs) closeSession(hs, 'idle');
    else if (hs.expMs && now >= hs.expMs && hs.inflight.size === 0) closeSession(hs, 'the token expired');
  }
}

/** Relays the request to the target and the response back (undici's dispatch API: no promise, no Readable per response). */
async function forward(ex: Exchange, hs: HttpSession, t: HttpTargetConfig, via: TokenVia, hasBody: boolean): Promise<void> {
  const { st, conn, req, res } = ex;
  const got = st.upstreams.get(t);
  const up = 'then' in got ? await got : got;
  if (ex.ended) return;
  const inj = up.injection;
  const q = ex.query + inj.query;
  const path = t.base_path + ex.path + (q ? `?${q[0] === '&' ? q.slice(1) : q}` : '');
  const headers = upstreamHeaders(req, via, st.tokenHeader, inj.headers, up.hostHeader);
  if (ex.ws) return forwardWebSocket(ex, hs, t, up, path, headers);
  const s = hs.s;
  let body: Dispatcher.DispatchOptions['body'] = null;
  if (ex.body) body = ex.body;
  else if (hasBody) body = Readable.from(streamBody(ex, s, s.recorder, String(req.headers['content-type'] ?? '')), { objectMode: false });
  else delete headers['content-length'];
  // One listener ends the exchange: 'close' follows 'finish' on a completed response, and comes alone when the client went away.
  res.once('close', () => {
    if (ex.ended) return;
    if (res.writableFinished) return ex.finish(ex.status);
    ex.outcome = 'client_abort';
    ex.finish(ex.status || 499);
    ex.abortUpstream();
  });
  up.pool.dispatch({ method: req.method as Dispatcher.HttpMethod, path, headers, body, headersTimeout: t.timeout, bodyTimeout: t.timeout }, new Relay(ex, hs, t, up.injection.secrets));
}

/** undici's response handler: the upstream response, masked and recorded, onto the client's response. */
class Relay implements Dispatcher.DispatchHandler {
  private masking: Extract<BodyMasker, { kind: 'mask' }> | null = null;
  /** The inline masker of an unencoded body. */
  private sink: Sink | null = null;
  /** Whether the client took the last write without buffering. */
  private writable = true;
  private resume: (() => void) | null = null;
  private readonly rec: Session['recorder'];

  constructor(
    private readonly ex: Exchange,
    private readonly hs: HttpSession,
    private readonly t: HttpTargetConfig,
    private readonly secrets: string[],
  ) {
    this.rec = hs.s.recorder;
  }

  private draining = false;
  private readonly onDrain = (): void => {
    this.draining = false;
    this.resume?.();
  };

  onConnect(abort: (err?: Error) => void): void {
    if (this.ex.ended) return abort();
    this.ex.abortUpstream = () => abort();
  }

  onError(err: Error): void {
    const ex = this.ex;
    if (ex.ended) return;
    const e = err as Error & { code?: string };
    ex.outcome = 'upstream_error';
    ex.error = `${e.code ?? e.name}: ${e.message}`;
    if (ex.res.headersSent) {
      // Mid-body: the client must see a truncated response, never a complete-looking one.
      ex.res.destroy();
      return ex.finish(ex.status);
    }
    const t = this.t;
    const timeout = e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT';
    ex.finish(
      sendProblem(ex.res, {
        status: timeout ? 504 : 502,
        title: timeout ? 'Target timed out' : 'Target unreachable',
        detail: `target "${t.name}" (${t.scheme}://${t.host}:${t.port}) ${timeout ? 'did not answer in time' : 'failed'}: ${e.message}${e.code ? ` (${e.code})` : ''}`,
      }),
    );
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    const ex = this.ex;
    if (status < 200) return true; // 1xx: informational, not relayed
    if (ex.ended) return false;
    this.resume = resume;
    ex.status = status;
    const s = this.hs.s;
    // One pass over undici's raw pairs: the headers for the client as a flat list (hop-by-hop
    // dropped, values echoing an injected secret masked), and the two the masker needs.
    const h2 = ex.conn.h2;
    const secrets = this.secrets;
    const flat: string[] = [];
    let ctype: string | undefined;
    let cenc: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toString('latin1').toLowerCase();
      if (HOP_BY_HOP.has(k) || (h2 && k === 'host')) continue;
      let v = raw[i + 1]!.toString('latin1');
      if (k === 'content-type') ctype = ctype === undefined ? v : `${ctype}, ${v}`;
      else if (k === 'content-encoding') cenc = cenc === undefined ? v : `${cenc}, ${v}`;
      if (secrets.length) v = unsecret(v, secrets);
      flat.push(k, v);
    }
    const req = ex.req;
    const noBody = req.method === 'HEAD' || status === 204 || status === 304;
    const maskSet = noBody ? null : s.masking();
    if (maskSet) {
      const o = { contentType: ctype, contentEncoding: cenc, set: maskSet, ctx: s.maskContext };
      // An unencoded body is masked inline (no stream); an encoded one through decoder → masker → encoder.
      const inline = createBodySink(o, (b) => void this.send(b, null));
      const m = inline === null ? createBodyMasker(o) : inline.kind === 'sink' ? ({ kind: 'none' } as const) : inline;
      if (inline?.kind === 'sink') this.sink = inline.sink;
      if (m.kind === 'refuse') {
        ex.outcome = 'refused';
        ex.error = m.reason;
        ex.reply({ status: 502, title: 'Response cannot be masked', detail: `the response of target "${this.t.name}" is not sent: ${m.reason}` });
        ex.abortUpstream();
        return false;
      }
      if (m.kind === 'mask') this.masking = m;
    }
    // A body masking may change has no Content-Length (HTTP/1.1 then chunks it).
    if (this.masking !== null || this.sink !== null) {
      for (let i = flat.length - 2; i >= 0; i -= 2) if (flat[i] === 'content-length') flat.splice(i, 2);
    }
    if (this.rec) {
      const pairs: [string, string][] = [];
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i] === 'set-cookie' ? REDACTED : flat[i + 1]!]);
      this.rec.event({ event: 'http.response', req: ex.n, status, headers: pairs });
    }
    const res = ex.res as ServerResponse;
    if (h2) {
      // The HTTP/2 compatibility API takes an object: repeated names become lists.
      const obj: Record<string, string | string[]> = {};
      for (let i = 0; i < flat.length; i += 2) {
        const k = flat[i]!;
        const had = obj[k];
        obj[k] = had === undefined ? flat[i + 1]! : Array.isArray(had) ? [...had, flat[i + 1]!] : [had, flat[i + 1]!];
      }
      res.writeHead(status, obj);
    } else res.writeHead(status, flat);
    const m = this.masking;
    if (m) {
      m.stream.on('data', (c: Buffer) => this.send(c, m.stream));
      m.stream.on('end', () => {
        ex.masked += s.maskingApplied(m.counts, { log: false, req: ex.n });
        res.end();
      });
      m.stream.on('error', (e: Error) => this.onError(e));
      m.stream.on('drain', () => this.resume?.());
    }
    return true;
  }

  /** One chunk of the response body to the client: counted, recorded; false when the client is slow. */
  private send(c: Buffer, from: Duplex | null): boolean {
    const ex = this.ex;
    ex.bytesOut += c.length;
    this.hs.s.bytesToClient += c.length;
    if (this.rec) this.rec.record(Dir.GatewayToClient, dataFrame(ex.n, 0, c));
    const ok = (ex.res as ServerResponse).write(c);
    this.writable = ok;
    if (!ok) {
      // The client is slow: the source waits for its drain (undici's resume, or the masking stream's).
      if (from) {
        from.pause();
        ex.res.once('drain', () => from.resume());
      } else if (!this.draining) {
        this.draining = true;
        ex.res.once('drain', this.onDrain);
      }
    }
    return ok;
  }

  onData(chunk: Buffer): boolean {
    if (this.ex.ended) return false;
    let ok: boolean;
    if (this.sink) {
      this.writable = true;
      this.sink.push(chunk);
      ok = this.writable;
    } else if (this.masking) ok = this.masking.stream.write(chunk);
    else ok = this.send(chunk, null);
    // The recording store is behind: read no further until it caught up (bounded memory, nothing dropped).
    const rec = this.rec;
    if (ok && rec !== undefined && rec.pressure) {
      rec.whenDrained(this.onDrain);
      return false;
    }
    return ok;
  }

  onComplete(): void {
    const ex = this.ex;
    if (ex.ended) return;
    if (this.sink) {
      this.sink.end();
      ex.masked += this.hs.s.maskingApplied(this.sink.counts, { log: false, req: ex.n });
      ex.res.end();
    } else if (this.masking) this.masking.stream.end();
    else ex.res.end();
  }
}

/** The client's request body as it streams up: counted and recorded (masked for the recording). */
async function* streamBody(ex: Exchange, s: Session, rec: Session['recorder'], ctype: string): AsyncGenerator<Buffer> {
  const set = rec ? s.masking() : null;
  const m = set ? createBodyMasker({ contentType: ctype || 'text/plain', contentEncoding: undefined, set, ctx: s.maskContext }) : null;
  const recMask = m && m.kind === 'mask' ? m : null;
  if (recMask) recMask.stream.on('data', (c: Buffer) => rec!.record(Dir.ClientToGateway, dataFrame(ex.n, 0, c)));
  for await (const c of ex.req as AsyncIterable<Buffer>) {
    if (ex.ended) break;
    ex.bytesIn += c.length;
    s.bytesFromClient += c.length;
    if (rec) {
      if (recMask) recMask.stream.write(c);
      else if (m && m.kind === 'refuse') rec.event({ event: 'http.body_not_recorded', req: ex.n, bytes: c.length, reason: m.reason });
      else rec.record(Dir.ClientToGateway, dataFrame(ex.n, 0, c));
      // The recording store is behind: take no more of the client's body until it caught up.
      if (rec.pressure) await new Promise<void>((r) => rec.whenDrained(r));
    }
    yield c;
  }
  recMask?.stream.end();
}


