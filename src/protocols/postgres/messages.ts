// Builders for the few backend messages Sluice itself originates.
// Everything the server sends is relayed as raw bytes, not rebuilt.

import { B } from './constants.js';

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';
  code: string; // SQLSTATE
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsMessage(type: number, f: ErrorFields): Buffer {
  const parts: [string, string][] = [
    ['S', f.severity],
    ['V', f.severity],
    ['C', f.code],
    ['M', f.message],
  ];
  if (f.detail) parts.push(['D', f.detail]);
  if (f.hint) parts.push(['H', f.hint]);
  let len = 4 + 1;
  const encoded = parts.map(([k, v]) => {
    const b = Buffer.from(v, 'utf8');
    len += 1 + b.length + 1;
    return [k, b] as const;
  });
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = type;
  out.writeInt32BE(len, 1);
  let o = 5;
  for (const [k, b] of encoded) {
    out[o++] = k.charCodeAt(0);
    b.copy(out, o);
    o += b.length;
    out[o++] = 0;
  }
  out[o] = 0;
  return out;
}

export const errorResponse = (f: ErrorFields): Buffer => fieldsMessage(B.ErrorResponse, f);
export const noticeResponse = (f: ErrorFields): Buffer => fieldsMessage(B.NoticeResponse, f);

export function authRequest(code: number, extra?: Buffer): Buffer {
  const len = 8 + (extra ? extra.length : 0);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = B.Authentication;
  out.writeInt32BE(len, 1);
  out.writeInt32BE(code, 5);
  if (extra) extra.copy(out, 9);
  return out;
}
export const AUTH_OK = 0;
export const AUTH_CLEARTEXT = 3;

export function parameterStatus(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const v = Buffer.from(value, 'utf8');
  const len = 4 + n.length + 1 + v.length + 1;
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = B.ParameterStatus;
  out.writeInt32BE(len, 1);
  n.copy(out, 5);
  out[5 + n.length] = 0;
  v.copy(out, 6 + n.length);
  out[out.length - 1] = 0;
  return out;
}

/** BackendKeyData: the pid and a secret key of 4 bytes (protocol 3.0) or more (3.2: up to 256). */
export function backendKeyData(pid: number, secret: Buffer): Buffer {
  const out = Buffer.allocUnsafe(9 + secret.length);
  out[0] = B.BackendKeyData;
  out.writeInt32BE(8 + secret.length, 1);
  out.writeInt32BE(pid, 5);
  secret.copy(out, 9);
  return out;
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return Buffer.from([B.ReadyForQuery, 0, 0, 0, 5, status.charCodeAt(0)]);
}

/**
 * NegotiateProtocolVersion: the newest version Sluice speaks for the major version
 * the client asked for, as a full version number (major << 16 | minor, as in the
 * startup packet: 3.0 is 196608), and the `_pq_.` options it does not support.
 */
export function negotiateProtocolVersion(version: number, unsupported: string[]): Buffer {
  const names = unsupported.map((s) => Buffer.from(s + '\0', 'utf8'));
  const len = 4 + 4 + 4 + names.reduce((a, b) => a + b.length, 0);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = B.NegotiateProtocolVersion;
  out.writeInt32BE(len, 1);
  out.writeInt32BE(version, 5);
  out.writeInt32BE(names.length, 9);
  let o = 13;
  for (const b of names) {
    b.copy(out, o);
    o += b.length;
  }
  return out;
}

/** Reads the fields of an ErrorResponse/NoticeResponse body (after the 5-byte header). */
export function parseFields(buf: Buffer, start: number, end: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = start;
  while (i < end && buf[i] !== 0) {
    const k = String.fromCharCode(buf[i]);
    const z = buf.indexOf(0, i + 1);
    if (z < 0 || z >= end) break;
    out[k] = buf.toString('utf8', i + 1, z);
    i = z + 1;
  }
  return out;
}

/** A simple-protocol Query message (Sluice's own: catalog lookups, policy markers). */
export function queryMessage(text: string): Buffer {
  const b = Buffer.from(text + '\0', 'utf8');
  const out = Buffer.allocUnsafe(5 + b.length);
  out[0] = 0x51; // Q
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}
