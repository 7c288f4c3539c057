// Reading a recorded HTTP session back into its requests (README.md, "Recording
// format"): shared by the replay renderer (replay.ts) and the HAR export
// (har.ts). Works from the recording alone; a live or interrupted session
// simply has requests without their end.

import { brotliDecompressSync, constants as zc, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { Dir, type Frame } from '../../recording/types.js';
import { approvalLine } from '../kit/replay-lines.js';

export const enum DataKind {
  Body = 0,
  WsText = 1,
  WsBinary = 2,
}

export type Headers = [string, string][];

export interface WsMessage {
  t_us: number;
  /** true: client → gateway. */
  fromClient: boolean;
  binary: boolean;
  data: Buffer;
}

export interface RecordedRequest {
  req: number;
  t_us: number;
  method: string;
  /** The routed path and query (relative to the target), as the caller sent it. */
  path: string;
  /** "1.1" or "2". */
  version: string;
  headers: Headers;
  decision?: { action: string; policy?: string; rule?: string; message?: string };
  /** Request body chunks as recorded (masked), at most the collector's keep budget. */
  reqBody: Buffer[];
  reqBodyBytes: number;
  response?: { t_us: number; status: number; headers: Headers };
  /** Response body chunks exactly as sent (still content-encoded), at most the keep budget. */
  resBody: Buffer[];
  resBodyBytes: number;
  end?: { t_us: number; status?: number; outcome: string; bytes_in?: number; bytes_out?: number; ms?: number; error?: string };
  ws?: {
    open_us: number;
    close?: { t_us: number; code?: number };
    /** Messages kept (up to the keep budget); the counts are exact. */
    messages: WsMessage[];
    sentText: number;
    sentBinary: number;
    receivedText: number;
    receivedBinary: number;
  };
  /** Approval and masking events of this request, as replay lines. */
  notes: { t_us: number; text: string; approval?: boolean; masked?: number }[];
  /** Time of the last frame of this request (for requests without an end). */
  last_us: number;
}

export interface RecordedSession {
  requests: RecordedRequest[];
  /** From session.open: whether the client spoke TLS to the gateway. */
  tls?: boolean;
  closeReason?: string;
  /** Session-level lines (recording gaps, frames naming no known request). */
  notes: { t_us: number; text: string }[];
}

export interface CollectOptions {
  /** Body bytes kept per request and direction (counts stay exact). */
  keepBytes: number;
  /** WebSocket messages kept per request (counts stay exact). */
  keepMessages: number;
}

export function parseEvent(f: Frame): Record<string, unknown> | null {
  try {
    const v = JSON.parse(f.payload.toString('utf8'));
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const headerList = (v: unknown): Headers =>
  Array.isArray(v) ? v.filter((h): h is [unknown, unknown] => Array.isArray(h) && h.length >= 2).map(([n, x]) => [String(n), String(x)]) : [];

/** First value of a header (case-insensitive), or undefined. */
export function header(h: Headers, name: string): string | undefined {
  const n = name.toLowerCase();
  for (const [k, v] of h) if (k.toLowerCase() === n) return v;
  return undefined;
}

export function collect(frames: Iterable<Frame>, opts: CollectOptions): RecordedSession {
  const s: RecordedSession = { requests: [], notes: [] };
  const byReq = new Map<number, RecordedRequest>();
  let latest: RecordedRequest | undefined;
  // Events that name no request (approvals, masking) belong to the latest request
  // still running: a held request waits for its approval, a response is masked
  // while it streams. With HTTP/2 several may run; the latest is the best guess.
  const running = (ev: Record<string, unknown>): RecordedRequest | undefined => {
    if (typeof ev.req === 'number') return byReq.get(ev.req);
    for (let i = s.requests.length - 1; i >= 0; i--) if (!s.requests[i]!.end) return s.requests[i];
    return latest;
  };
  for (const f of frames) {
    if (f.dir === Dir.Event) {
      const ev = parseEvent(f);
      if (!ev) continue;
      const r = typeof ev.req === 'number' ? byReq.get(ev.req) : undefined;
      if (r) r.last_us = f.t_us;
      switch (ev.event) {
        case 'session.open':
          if (typeof ev.tls === 'boolean') s.tls = ev.tls;
          break;
        case 'session.close':
          s.closeReason = String(ev.reason ?? '');
          break;
        case 'recording.gap':
          s.notes.push({ t_us: f.t_us, text: `(recording gap: ${String(ev.frames)} frame(s) lost)` });
          break;
        case 'http.request': {
          const n = typeof ev.req === 'number' ? ev.req : s.requests.length + 1;
          const nr: RecordedRequest = {
            req: n,
            t_us: f.t_us,
            method: String(ev.method ?? '?'),
            path: String(ev.path ?? '/'),
            version: String(ev.version ?? '1.1'),
            headers: headerList(ev.headers),
            reqBody: [],
            reqBodyBytes: 0,
            resBody: [],
            resBodyBytes: 0,
            notes: [],
            last_us: f.t_us,
          };
          s.requests.push(nr);
          byReq.set(n, nr);
          latest = nr;
          break;
        }
        // The pipeline's decision event comes right after its http.request.
        case 'policy.decision':
        case 'decision':
          if (latest && !latest.decision)
            latest.decision = {
              action: String(ev.decision ?? ev.action ?? '?'),
              policy: ev.policy === undefined ? undefined : String(ev.policy),
              rule: ev.rule === undefined ? undefined : String(ev.rule),
              message: ev.message === undefined ? undefined : String(ev.message),
            };
          break;
        case 'http.response':
          if (r) r.response = { t_us: f.t_us, status: Number(ev.status), headers: headerList(ev.headers) };
          break;
        case 'http.end':
          if (r)
            r.end = {
              t_us: f.t_us,
              status: typeof ev.status === 'number' ? ev.status : undefined,
              outcome: String(ev.outcome ?? 'ok'),
              bytes_in: typeof ev.bytes_in === 'number' ? ev.bytes_in : undefined,
              bytes_out: typeof ev.bytes_out === 'number' ? ev.bytes_out : undefined,
              ms: typeof ev.ms === 'number' ? ev.ms : undefined,
              error: ev.error === undefined ? undefined : String(ev.error),
            };
          break;
        case 'ws.open':
          if (r) r.ws ??= { open_us: f.t_us, messages: [], sentText: 0, sentBinary: 0, receivedText: 0, receivedBinary: 0 };
          break;
        case 'ws.close':
          if (r?.ws) r.ws.close = { t_us: f.t_us, code: typeof ev.code === 'number' ? ev.code : undefined };
          break;
        case 'masking.applied': {
          const to = running(ev);
          const n = Number(ev.values) || 0;
          const what = [...Object.keys((ev.columns as object) ?? {}), ...Object.keys((ev.detectors as object) ?? {})];
          const text = `masked ${n} value(s)${what.length ? ` (${what.join(', ')})` : ''}`;
          if (to) to.notes.push({ t_us: f.t_us, text, masked: n });
          else s.notes.push({ t_us: f.t_us, text });
          break;
        }
        default:
          if (typeof ev.event === 'string' && ev.event.startsWith('approval.')) {
            const to = running(ev);
            if (to) to.notes.push({ t_us: f.t_us, text: approvalLine(ev), approval: true });
            else s.notes.push({ t_us: f.t_us, text: approvalLine(ev) });
          }
      }
      continue;
    }
    // Data: u32 BE req ‖ u8 kind ‖ bytes.
    const p = f.payload;
    if (p.length < 5) continue;
    const r = byReq.get(p.readUInt32BE(0));
    if (!r) continue;
    r.last_us = f.t_us;
    const kind = p[4]!;
    const data = p.subarray(5);
    const fromClient = f.dir === Dir.ClientToGateway;
    if (kind === DataKind.Body) {
      if (fromClient) {
        if (r.reqBodyBytes < opts.keepBytes) r.reqBody.push(data.subarray(0, opts.keepBytes - r.reqBodyBytes));
        r.reqBodyBytes += data.length;
      } else {
        if (r.resBodyBytes < opts.keepBytes) r.resBody.push(data.subarray(0, opts.keepBytes - r.resBodyBytes));
        r.resBodyBytes += data.length;
      }
    } else if (kind === DataKind.WsText || kind === DataKind.WsBinary) {
      // One frame per message; a websocket whose ws.open was lost still counts.
      const ws = (r.ws ??= { open_us: f.t_us, messages: [], sentText: 0, sentBinary: 0, receivedText: 0, receivedBinary: 0 });
      const binary = kind === DataKind.WsBinary;
      if (fromClient) binary ? ws.sentBinary++ : ws.sentText++;
      else binary ? ws.receivedBinary++ : ws.receivedText++;
      if (ws.messages.length < opts.keepMessages) ws.messages.push({ t_us: f.t_us, fromClient, binary, data });
    }
  }
  return s;
}

export interface Decoded {
  data: Buffer;
  /** Why the body is shown as recorded (still encoded), if it is. */
  error?: string;
  /** Only a prefix could be decoded (the body was cut short or is larger than the limit). */
  partial?: boolean;
}

/**
 * A body decoded per its content-encoding (gzip, deflate, br; several are
 * undone last first). A body cut short (client abort, kept-bytes budget)
 * decodes as far as it goes; output above `maxBytes` gives a prefix of it.
 */
export function decodeBody(body: Buffer, headers: Headers, maxBytes: number): Decoded {
  const ce = header(headers, 'content-encoding');
  if (!ce || body.length === 0) return { data: body };
  const codings = ce
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== 'identity')
    .reverse();
  let data = body;
  let partial = false;
  for (const c of codings) {
    const step = decodeOne(data, c, maxBytes);
    if ('error' in step) return { data: body, error: step.error };
    data = step.data;
    partial ||= step.partial;
  }
  return { data, partial };
}

function decodeOne(input: Buffer, coding: string, maxBytes: number): { data: Buffer; partial: boolean } | { error: string } {
  const run = (buf: Buffer): Buffer => {
    switch (coding) {
      case 'gzip':
      case 'x-gzip':
        return gunzipSync(buf, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: maxBytes });
      case 'deflate':
        // "deflate" is meant to be zlib-wrapped; some servers send it raw.
        try {
          return inflateSync(buf, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: maxBytes });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
          return inflateRawSync(buf, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: maxBytes });
        }
      case 'br':
        return brotliDecompressSync(buf, { finishFlush: zc.BROTLI_OPERATION_FLUSH, maxOutputLength: maxBytes });
      default:
        throw Object.assign(new Error(`${coding} is not decoded`), { code: 'UNSUPPORTED' });
    }
  };
  // Decoded output larger than maxBytes: decode less input until it fits, for a prefix.
  for (let n = input.length, partial = false; ; n = Math.floor(n / 4), partial = true) {
    try {
      return { data: run(n === input.length ? input : input.subarray(0, n)), partial };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const tooLarge = e.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
      if (!tooLarge || n < 64) return { error: `${coding}: ${e.message}` };
    }
  }
}

const TEXT_TYPES = /^(text\/|multipart\/|application\/([\w.+-]*\+)?(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson|ndjson|graphql|yaml|x-yaml|csv|sql)\b)|\+(json|xml)\b/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text, or null when it is binary (by its content-type, else by its bytes). */
export function asText(data: Buffer, contentType: string | undefined): string | null {
  if (contentType && !TEXT_TYPES.test(contentType.trim())) {
    // A declared binary type stays binary, whatever its bytes look like.
    return null;
  }
  try {
    const s = utf8.decode(data);
    // An undeclared body with NUL bytes is binary even when it is valid UTF-8.
    if (!contentType && s.includes('\0')) return null;
    return s;
  } catch {
    // A cut-short multi-byte character at the end is still text.
    if (data.length > 3) {
      for (let k = 1; k <= 3; k++) {
        try {
          return utf8.decode(data.subarray(0, data.length - k));
        } catch {
          /* try one shorter */
        }
      }
    }
    return null;
  }
}

export const isJsonType = (ct: string | undefined): boolean => !!ct && /^application\/([\w.+-]*\+)?json\b|\+json\b/i.test(ct.trim());
