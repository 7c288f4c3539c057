// What Sluice refuses in a request head before anything is routed or forwarded.
//
// node:http's parser (llhttp, strict mode) already answers 400 to the classic
// desync shapes: Content-Length together with Transfer-Encoding, duplicate or
// malformed Content-Length, bad chunk sizes, obs-fold, bare LF, whitespace
// before the colon, control bytes in values (measured in test/http-attacks).
// It lets through a few forms another parser could read differently; those
// are refused here. Sluice then re-frames every request it forwards (undici
// writes a fresh head and body), so what the upstream reads is exactly what
// the policy decided on.

import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 7.6.1) and proxy-only ones: never forwarded either way. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers that ask a server or framework to act on another method or path than
 * the request line's. The policy decides the request line, so a request carrying
 * one is refused rather than forwarded with a meaning the policy never saw.
 */
export const OVERRIDE_HEADERS = new Set([
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
  'x-original-url',
  'x-rewrite-url',
  'x-override-url',
  'x-original-uri',
  'x-forwarded-path',
  'x-forwarded-prefix',
  'x-envoy-original-path',
]);

/**
 * Why an HTTP/1.x request head is ambiguous, or undefined when it is not.
 * `raw` is req.rawHeaders (name, value, name, value, …).
 */
export function ambiguousHead(version: string, url: string, raw: string[]): string | undefined {
  if (url[0] !== '/') {
    return url === '*' ? 'the asterisk form (OPTIONS *) is not relayed' : 'an absolute-form request target is not accepted: Sluice is not a forward proxy; send the path only';
  }
  let hosts = 0;
  let te = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    // Only names of the right length are compared, so most headers cost one length check.
    if (n.length === 4 && n.toLowerCase() === 'host') hosts++;
    else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') {
      te++;
      if (raw[i + 1]!.trim().toLowerCase() !== 'chunked') return `Transfer-Encoding ${JSON.stringify(raw[i + 1])} is not accepted: only "chunked" is`;
    }
  }
  if (hosts > 1) return 'more than one Host header';
  if (hosts === 0 && version === '1.1') return 'an HTTP/1.1 request needs a Host header';
  if (te > 1) return 'more than one Transfer-Encoding header';
  if (te > 0 && version === '1.0') return 'Transfer-Encoding is not defined for HTTP/1.0';
  return undefined;
}

/** The first method- or path-override header present, if any. */
export function overrideHeader(h: IncomingHttpHeaders): string | undefined {
  for (const k in h) if (k.charCodeAt(0) === 120 /* x */ && OVERRIDE_HEADERS.has(k)) return k;
  return undefined;
}
