// Rendering a recorded HTTP session for an operator (`sluice replay <id>`):
// one block per request: its time, method, path, status, duration, bytes,
// decision and rule, the outcome when it did not complete normally, approval
// and masking events, a websocket's open/close and message counts; then the
// request body on one line and the first --rows lines of the response body,
// decoded from its content-encoding. Works from the recording alone.

import { STATUS_CODES } from 'node:http';
import type { Frame } from '../../recording/types.js';
import type { ReplayOptions } from '../kit/module.js';
import { asText, collect, decodeBody, header, isJsonType, type RecordedRequest } from './replay-model.js';

/** Bytes of each body kept for the preview (counts stay exact). */
const PREVIEW_KEEP = 1 << 20;
/** Largest decoded body looked at for the preview. */
const PREVIEW_DECODED = 4 << 20;
/** Longest line shown; the rest is cut with "…". */
const WIDTH = 200;

const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} kB` : `${(n / (1 << 20)).toFixed(1)} MB`);
const clip = (s: string) => {
  const one = s.replace(/\r?\n/g, '\\n').replace(/\t/g, ' ');
  return one.length > WIDTH ? one.slice(0, WIDTH - 1) + '…' : one;
};

/** JSON on one line with a space after each `:` and `,`, easier to read than JSON.stringify's. */
export function oneLine(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(oneLine).join(', ')}]`;
  if (v && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${oneLine(x)}`).join(', ')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** Renders frames of an HTTP session as text lines. */
export function renderHttp(frames: Iterable<Frame>, opts: ReplayOptions): string[] {
  const rows = Math.max(0, opts.rows);
  const s = collect(frames, { keepBytes: PREVIEW_KEEP, keepMessages: rows });
  const at = (us: number) =>
    opts.startedAt ? new Date(opts.startedAt.getTime() + us / 1000).toISOString().slice(11, 23) : `+${(us / 1e6).toFixed(3)}s`;
  const out: string[] = [];
  // Session-level notes (recording gaps) go between the requests at their time.
  const notes = [...s.notes];
  for (const r of s.requests) {
    while (notes.length && notes[0]!.t_us <= r.t_us) out.push(`${at(notes[0]!.t_us)}  ${notes.shift()!.text}`, '');
    out.push(summary(r, at));
    for (const n of r.notes) out.push(`  ${n.text}`);
    out.push(...requestBody(r));
    if (r.ws) out.push(...websocket(r, at, rows));
    else out.push(...responseBody(r, rows));
    out.push('');
  }
  for (const n of notes) out.push(`${at(n.t_us)}  ${n.text}`, '');
  if (s.closeReason) out.push(`session closed: ${s.closeReason}`);
  return out;
}

function summary(r: RecordedRequest, at: (us: number) => string): string {
  const status = r.response?.status ?? r.end?.status;
  const statusText = status ? `${status}${STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : ''}` : '(no response)';
  const ms = r.end ? (r.end.ms ?? (r.end.t_us - r.t_us) / 1000) : undefined;
  const dur = ms !== undefined ? `${ms.toFixed(1)} ms` : '(no end recorded)';
  const bytesIn = r.end?.bytes_in ?? r.reqBodyBytes;
  const bytesOut = r.end?.bytes_out ?? r.resBodyBytes;
  const d = r.decision;
  const decision = d ? `  [${d.action}${d.rule ? ` by ${d.policy ? `${d.policy} ` : ''}${d.rule}` : ''}${d.action !== 'allow' && d.message ? `: ${d.message}` : ''}]` : '';
  const outcome = r.end && r.end.outcome !== 'ok' ? `  ${r.end.outcome.toUpperCase()}${r.end.error ? `: ${r.end.error}` : ''}` : '';
  const version = r.version === '1.1' ? '' : `  HTTP/${r.version}`;
  return `${at(r.t_us)}  #${r.req} ${r.method} ${clip(r.path)}  ${statusText}  ${dur}  in ${fmtBytes(bytesIn)}  out ${fmtBytes(bytesOut)}${version}${decision}${outcome}`;
}

function requestBody(r: RecordedRequest): string[] {
  if (r.reqBodyBytes === 0) return [];
  const raw = Buffer.concat(r.reqBody);
  const dec = decodeBody(raw, r.headers, PREVIEW_DECODED);
  const ct = header(r.headers, 'content-type');
  const text = dec.error ? null : asText(dec.data, ct);
  if (text === null) return [`  > (${dec.error ? `${dec.error}; ` : ''}binary body, ${r.reqBodyBytes} bytes${ct ? `, ${ct}` : ''})`];
  return [`  > ${clip(jsonOneLine(text, ct) ?? text)}`];
}

/** A JSON text on one line, or null if it does not parse. */
function jsonOneLine(text: string, ct: string | undefined): string | null {
  const t = text.trim();
  if (!isJsonType(ct) && !/^[[{]/.test(t)) return null;
  try {
    return oneLine(JSON.parse(t));
  } catch {
    return null;
  }
}

function responseBody(r: RecordedRequest, rows: number): string[] {
  if (!r.response || r.resBodyBytes === 0 || rows === 0) return [];
  const raw = Buffer.concat(r.resBody);
  const dec = decodeBody(raw, r.response.headers, PREVIEW_DECODED);
  const ct = header(r.response.headers, 'content-type');
  const enc = header(r.response.headers, 'content-encoding');
  if (dec.error) return [`  < (${dec.error}; ${r.resBodyBytes} bytes as sent)`];
  const text = asText(dec.data, ct);
  if (text === null) return [`  < (binary, ${dec.data.length}${dec.partial ? '+' : ''} bytes${ct ? `, ${ct}` : ''}${enc ? `, ${enc} ${r.resBodyBytes} bytes as sent` : ''})`];
  const cut = dec.partial || r.resBodyBytes > raw.length;
  const lines: string[] = [];
  let count: string | null = null;
  const t = text.trim();
  let json: unknown;
  let parsed = false;
  if (!cut && (isJsonType(ct) || /^[[{]/.test(t))) {
    try {
      json = JSON.parse(t);
      parsed = true;
    } catch {
      /* shown as text */
    }
  }
  if (parsed && Array.isArray(json)) {
    // A JSON array: one element per line, like rows of a result.
    for (const x of json.slice(0, rows)) lines.push(oneLine(x));
    count = `(${json.length} item${json.length === 1 ? '' : 's'}${json.length > rows ? `, first ${rows} shown` : ''})`;
  } else if (parsed) {
    lines.push(oneLine(json));
  } else {
    const all = text.split(/\r?\n/);
    if (all.length && all[all.length - 1] === '') all.pop();
    lines.push(...all.slice(0, rows));
    if (all.length > rows) count = `(${all.length}${cut ? '+' : ''} lines, first ${rows} shown)`;
  }
  const res = lines.map((l) => `  < ${clip(l)}`);
  if (count) res.push(`  ${count}`);
  if (cut) res.push(`  (preview of the first ${fmtBytes(raw.length)} of ${fmtBytes(r.resBodyBytes)} as sent${enc ? `, ${enc}` : ''})`);
  else if (!r.end) res.push(`  (body so far: ${fmtBytes(r.resBodyBytes)} as sent; no end recorded)`);
  return res;
}

function websocket(r: RecordedRequest, at: (us: number) => string, rows: number): string[] {
  const ws = r.ws!;
  const close = ws.close ? `closed${ws.close.code !== undefined ? ` (${ws.close.code})` : ''} at ${at(ws.close.t_us)}` : 'no close recorded';
  const lines = [
    `  websocket opened at ${at(ws.open_us)}, ${close}: sent ${ws.sentText} text + ${ws.sentBinary} binary, received ${ws.receivedText} text + ${ws.receivedBinary} binary`,
  ];
  for (const m of ws.messages.slice(0, rows)) {
    const body = m.binary ? `(binary, ${m.data.length} bytes)` : clip(jsonOneLine(m.data.toString('utf8'), undefined) ?? m.data.toString('utf8'));
    lines.push(`  ${m.fromClient ? '>' : '<'} ${at(m.t_us)} ${body}`);
  }
  const total = ws.sentText + ws.sentBinary + ws.receivedText + ws.receivedBinary;
  if (total > Math.min(rows, ws.messages.length)) lines.push(`  (${total} messages, first ${Math.min(rows, ws.messages.length)} shown)`);
  return lines;
}
