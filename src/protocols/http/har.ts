// `sluice export <id> --format har`: a recorded HTTP session as HAR 1.2
// (http://www.softwareishard.com/blog/har-12-spec/), for a browser's network
// panel (Chrome devtools: Network → Import HAR) or any HAR viewer.
//
// What a HAR file holds here:
//   - URLs are the ones the caller used: scheme and host of the Sluice gateway
//     (from the recorded Host / :authority header), then the target (path
//     routing) and the routed path. They are not the upstream's URLs, which
//     the caller never saw (nor do they carry injected credentials).
//   - Bodies are as recorded: request bodies masked for the recording,
//     response bodies as sent (masked), decoded from their content-encoding.
//     Text stays text; anything else is base64 (`encoding: "base64"`).
//   - Timings: `wait` is request to response head, `receive` response head to
//     the end of the request (both gateway-side); `send` is 0 (the body is
//     relayed while the gateway waits), unknown phases are -1.
//   - Sluice's view of each request is in `_sluice` (decision, policy, rule,
//     outcome, approvals, masked values); websocket messages in Chrome's own
//     `_webSocketMessages`.

import { STATUS_CODES } from 'node:http';
import type { Frame } from '../../recording/types.js';
import type { ExportMeta } from '../kit/module.js';
import { asText, collect, decodeBody, header, type Headers, type RecordedRequest, type RecordedSession } from './replay-model.js';

/** Largest decoded body put in the file; larger ones are cut (with a comment saying so). */
const MAX_DECODED = 64 << 20;

export interface HarNameValue {
  name: string;
  value: string;
  comment?: string;
}

export interface HarCookie extends HarNameValue {
  path?: string;
  domain?: string;
  expires?: string;
  httpOnly?: boolean;
  secure?: boolean;
}

export interface HarContent {
  size: number;
  compression?: number;
  mimeType: string;
  text?: string;
  encoding?: 'base64';
  comment?: string;
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: {
    method: string;
    url: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: HarNameValue[];
    queryString: HarNameValue[];
    postData?: { mimeType: string; text: string; params?: HarNameValue[]; comment?: string };
    headersSize: number;
    bodySize: number;
  };
  response: {
    status: number;
    statusText: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: HarNameValue[];
    content: HarContent;
    redirectURL: string;
    headersSize: number;
    bodySize: number;
    _error?: string;
  };
  cache: Record<string, never>;
  timings: { blocked: number; dns: number; connect: number; ssl: number; send: number; wait: number; receive: number };
  _resourceType?: string;
  _webSocketMessages?: { type: 'send' | 'receive'; time: number; opcode: number; data: string }[];
  _sluice: {
    req: number;
    decision?: string;
    policy?: string;
    rule?: string;
    message?: string;
    outcome: string;
    error?: string;
    approvals?: string[];
    masked_values?: number;
  };
  comment?: string;
}

export interface Har {
  log: {
    version: '1.2';
    creator: { name: string; version: string };
    entries: HarEntry[];
    comment?: string;
    _sluice: { session: string; target: string; sub: string };
  };
}

const ms = (us: number) => Math.max(0, Math.round(us) / 1000);
const httpVersion = (v: string) => (v === '2' || v === '2.0' ? 'HTTP/2' : `HTTP/${v}`);
const nameValues = (h: Headers): HarNameValue[] => h.map(([name, value]) => ({ name, value }));

export function toHar(frames: Iterable<Frame>, meta: ExportMeta): Har {
  const s = collect(frames, { keepBytes: Infinity, keepMessages: Infinity });
  const t0 = Date.parse(meta.started_at);
  return {
    log: {
      version: '1.2',
      creator: { name: 'sluice', version: meta.version },
      entries: s.requests.map((r) => entry(r, s, meta, t0)),
      comment: `Sluice session ${meta.id} (${meta.sub} → ${meta.target}). URLs name the Sluice gateway the caller used, not the upstream; bodies are as recorded (masked).`,
      _sluice: { session: meta.id, target: meta.target, sub: meta.sub },
    },
  };
}

function entry(r: RecordedRequest, s: RecordedSession, meta: ExportMeta, t0: number): HarEntry {
  const url = requestUrl(r, s, meta.target);
  const end_us = r.end?.t_us ?? r.last_us;
  const head_us = r.response?.t_us;
  const wait = ms((head_us ?? end_us) - r.t_us);
  const receive = head_us !== undefined ? ms(end_us - head_us) : 0;
  const approvals = r.notes.filter((n) => n.approval).map((n) => n.text);
  const masked = r.notes.reduce((a, n) => a + (n.masked ?? 0), 0);
  const outcome = r.end?.outcome ?? 'unfinished';
  const e: HarEntry = {
    startedDateTime: new Date(t0 + r.t_us / 1000).toISOString(),
    time: Math.round((wait + receive) * 1000) / 1000,
    request: {
      method: r.method,
      url: url.href,
      httpVersion: httpVersion(r.version),
      cookies: requestCookies(r.headers),
      headers: nameValues(r.headers),
      queryString: [...url.searchParams].map(([name, value]) => ({ name, value })),
      headersSize: -1,
      bodySize: r.reqBodyBytes,
    },
    response: response(r),
    cache: {},
    timings: { blocked: -1, dns: -1, connect: -1, ssl: -1, send: 0, wait, receive },
    _sluice: {
      req: r.req,
      decision: r.decision?.action,
      policy: r.decision?.policy,
      rule: r.decision?.rule,
      message: r.decision?.message,
      outcome,
      error: r.end?.error,
      approvals: approvals.length ? approvals : undefined,
      masked_values: masked || undefined,
    },
  };
  if (r.reqBodyBytes > 0) e.request.postData = postData(r);
  if (r.ws) {
    e._resourceType = 'websocket';
    e._webSocketMessages = r.ws.messages.map((m) => ({
      type: m.fromClient ? 'send' : 'receive',
      time: (t0 + m.t_us / 1000) / 1000,
      opcode: m.binary ? 2 : 1,
      data: m.binary ? m.data.toString('base64') : m.data.toString('utf8'),
    }));
  }
  if (!r.end) e.comment = 'no end recorded (the session was live or interrupted when exported)';
  return e;
}

/**
 * The URL the caller used: the gateway's scheme and host (as the client sent
 * them), then `/<target>` unless the host itself names the target (Host routing,
 * `<target>.<domain>`), then the routed path and query.
 */
function requestUrl(r: RecordedRequest, s: RecordedSession, target: string): URL {
  const scheme = header(r.headers, ':scheme') ?? (s.tls === true ? 'https' : s.tls === false ? 'http' : r.version.startsWith('2') ? 'https' : 'http');
  const host = header(r.headers, ':authority') ?? header(r.headers, 'host') ?? 'sluice';
  const hostRouted = host.toLowerCase().startsWith(`${target.toLowerCase()}.`);
  const path = r.path.startsWith('/') ? r.path : `/${r.path}`;
  const prefix = hostRouted ? '' : `/${encodeURIComponent(target)}`;
  try {
    return new URL(`${scheme}://${host}${prefix}${path}`);
  } catch {
    // A Host header that is no valid authority: keep the path, name the gateway generically.
    return new URL(`${scheme}://sluice${prefix}${path.replace(/[^\x21-\x7e]/g, encodeURIComponent)}`);
  }
}

function requestCookies(h: Headers): HarCookie[] {
  const out: HarCookie[] = [];
  for (const [k, v] of h) {
    if (k.toLowerCase() !== 'cookie') continue;
    for (const part of v.split(';')) {
      const i = part.indexOf('=');
      if (i > 0) out.push({ name: part.slice(0, i).trim(), value: part.slice(i + 1).trim() });
    }
  }
  return out;
}

function responseCookies(h: Headers): HarCookie[] {
  const out: HarCookie[] = [];
  for (const [k, v] of h) {
    if (k.toLowerCase() !== 'set-cookie') continue;
    const [first, ...attrs] = v.split(';');
    const i = first!.indexOf('=');
    if (i <= 0) continue;
    const c: HarCookie = { name: first!.slice(0, i).trim(), value: first!.slice(i + 1).trim() };
    for (const a of attrs) {
      const [an, ...av] = a.split('=');
      const name = an!.trim().toLowerCase();
      const val = av.join('=').trim();
      if (name === 'path') c.path = val;
      else if (name === 'domain') c.domain = val;
      else if (name === 'expires' && !Number.isNaN(Date.parse(val))) c.expires = new Date(val).toISOString();
      else if (name === 'httponly') c.httpOnly = true;
      else if (name === 'secure') c.secure = true;
    }
    out.push(c);
  }
  return out;
}

function postData(r: RecordedRequest): NonNullable<HarEntry['request']['postData']> {
  const raw = Buffer.concat(r.reqBody);
  const mimeType = header(r.headers, 'content-type') ?? '';
  const dec = decodeBody(raw, r.headers, MAX_DECODED);
  const text = dec.error ? null : asText(dec.data, mimeType || undefined);
  if (text !== null) return { mimeType, text, ...(dec.partial ? { comment: `first ${dec.data.length} bytes of the decoded body` } : {}) };
  // HAR 1.2 has no encoding for postData: say so where a reader looks.
  return { mimeType, text: (dec.error ? raw : dec.data).toString('base64'), comment: `binary body, base64${dec.error ? ` (not decoded: ${dec.error})` : ''}` };
}

function response(r: RecordedRequest): HarEntry['response'] {
  if (!r.response) {
    // No head was sent (the caller went away, the upstream failed before one, the session ended).
    return {
      status: 0,
      statusText: '',
      httpVersion: '',
      cookies: [],
      headers: [],
      content: { size: 0, mimeType: 'x-unknown' },
      redirectURL: '',
      headersSize: -1,
      bodySize: -1,
      ...(r.end ? { _error: r.end.error ?? r.end.outcome } : {}),
    };
  }
  const h = r.response.headers;
  const status = r.response.status;
  const mimeType = header(h, 'content-type') ?? 'x-unknown';
  const content: HarContent = { size: 0, mimeType };
  if (r.resBodyBytes > 0) {
    const raw = Buffer.concat(r.resBody);
    const dec = decodeBody(raw, h, MAX_DECODED);
    if (dec.error) {
      Object.assign(content, { size: raw.length, text: raw.toString('base64'), encoding: 'base64', comment: `as sent, still encoded (${dec.error})` });
    } else {
      const text = asText(dec.data, header(h, 'content-type'));
      content.size = dec.data.length;
      if (text !== null) content.text = text;
      else Object.assign(content, { text: dec.data.toString('base64'), encoding: 'base64' });
      if (dec.data !== raw) content.compression = dec.data.length - raw.length;
      if (dec.partial) content.comment = `first ${dec.data.length} bytes of the decoded body only`;
    }
  }
  return {
    status,
    statusText: STATUS_CODES[status] ?? '',
    httpVersion: httpVersion(r.version),
    cookies: responseCookies(h),
    headers: nameValues(h),
    content,
    redirectURL: header(h, 'location') ?? '',
    headersSize: -1,
    bodySize: r.resBodyBytes,
    // A denied or held request got a real answer; only a broken exchange is an error.
    ...(r.end && FAILED.has(r.end.outcome) ? { _error: r.end.error ?? r.end.outcome } : {}),
  };
}

const FAILED = new Set(['upstream_error', 'client_abort', 'killed']);
