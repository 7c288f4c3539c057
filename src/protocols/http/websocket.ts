// WebSocket upgrades: the upgrade request goes through the same framing checks,
// routing, identity and policy as any request (exchange.ts); once the policy
// allows its path, messages are relayed with ws, recorded, and text messages
// masked with the session's rule sets.

import http from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { HttpTargetConfig } from '../../config/types.js';
import { Dir } from '../../recording/types.js';
import { maskWhole } from './body-masker.js';
import type { Session } from '../../session/session.js';
import { dataFrame } from './frames.js';
import { sendProblem } from './problem.js';
import type { Entry } from './upstream.js';

/** Largest message relayed either way. */
const MAX_MESSAGE = 16 << 20;
/** Sends not yet written before the sending side is paused (backpressure). */
const HIGH_WATER = 64;
const LOW_WATER = 16;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE, handleProtocols: (_p, req) => (req as unknown as { sluiceProtocol?: string }).sluiceProtocol ?? false });

/** What a websocket relay needs of the request it upgrades (exchange.ts's Exchange). */
export interface WsExchange {
  readonly req: http.IncomingMessage | import('node:http2').Http2ServerRequest;
  readonly res: http.ServerResponse | import('node:http2').Http2ServerResponse;
  ws?: { sock: Socket; head: Buffer };
  readonly ended: boolean;
  outcome: string;
  error?: string;
  status: number;
  n: number;
  bytesIn: number;
  bytesOut: number;
  masked: number;
  onKill?: (reason: string) => void;
  finish(status: number): void;
}

/** Relays one allowed websocket: opens the upstream one first, then completes the client's upgrade. */
export function forwardWebSocket(ex: WsExchange, hs: { s: Session }, t: HttpTargetConfig, up: Entry, path: string, headers: Record<string, string | string[]>): void {
  const { sock, head } = ex.ws!;
  const s = hs.s;
  const rec = s.recorder;
  const res = ex.res as http.ServerResponse;
  for (const k of Object.keys(headers)) if (k.startsWith('sec-websocket-') && k !== 'sec-websocket-protocol') delete headers[k];
  const protoHeader = headers['sec-websocket-protocol'];
  delete headers['sec-websocket-protocol'];
  const protocols = typeof protoHeader === 'string' ? protoHeader.split(',').map((p) => p.trim()).filter(Boolean) : [];
  const url = `${t.scheme === 'https' ? 'wss' : 'ws'}://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}${path}`;
  const upstream = new WebSocket(url, protocols, {
    headers: headers as Record<string, string>,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE,
    handshakeTimeout: t.timeout,
    ...up.tls,
  });
  let opened = false;
  upstream.on('unexpected-response', (_r, upRes) => {
    upRes.resume();
    ex.outcome = 'upstream_error';
    ex.error = `upgrade answered ${upRes.statusCode}`;
    upstream.terminate();
    ex.finish(sendProblem(res, { status: 502, title: 'WebSocket refused by target', detail: `target "${t.name}" answered the websocket upgrade with status ${upRes.statusCode}` }, undefined, true));
  });
  upstream.on('error', (e) => {
    if (opened || ex.ended) return;
    ex.outcome = 'upstream_error';
    ex.error = e.message;
    ex.finish(sendProblem(res, { status: 502, title: 'Target unreachable', detail: `target "${t.name}" failed the websocket upgrade: ${e.message}` }, undefined, true));
  });
  upstream.on('open', () => {
    if (ex.ended) return void upstream.terminate();
    opened = true;
    (ex.req as unknown as { sluiceProtocol?: string }).sluiceProtocol = upstream.protocol || undefined;
    res.detachSocket(sock);
    wss.handleUpgrade(ex.req as http.IncomingMessage, sock, head, (client) => {
      ex.status = 101;
      rec?.event({ event: 'http.response', req: ex.n, status: 101, headers: upstream.protocol ? [['sec-websocket-protocol', upstream.protocol]] : [] });
      rec?.event({ event: 'ws.open', req: ex.n });
      const counts = { up: 0, down: 0 };
      const set = s.masking();
      const relay = (from: WebSocket, to: WebSocket, dir: Dir, mask: boolean) => {
        let pending = 0;
        from.on('message', (data: RawData, isBinary: boolean) => {
          let b = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
          if (dir === Dir.ClientToGateway) {
            ex.bytesIn += b.length;
            s.bytesFromClient += b.length;
            counts.up++;
          }
          if (mask && !isBinary && set) {
            const m = maskWhole({ contentType: b[0] === 0x7b || b[0] === 0x5b ? 'application/json' : 'text/plain', set, ctx: s.maskContext }, b);
            if (m && 'body' in m) {
              b = m.body;
              ex.masked += s.maskingApplied(m.counts, { log: false, req: ex.n });
            }
          }
          if (dir === Dir.GatewayToClient) {
            ex.bytesOut += b.length;
            s.bytesToClient += b.length;
            counts.down++;
          }
          rec?.record(dir, dataFrame(ex.n, isBinary ? 2 : 1, b));
          pending++;
          if (pending > HIGH_WATER) from.pause();
          to.send(b, { binary: isBinary }, () => {
            if (--pending < LOW_WATER && from.isPaused) from.resume();
          });
        });
      };
      relay(client, upstream, Dir.ClientToGateway, false);
      relay(upstream, client, Dir.GatewayToClient, true);
      let closed = false;
      const close = (code: number, why: string) => {
        if (closed) return;
        closed = true;
        rec?.event({ event: 'ws.close', req: ex.n, code, reason: why || undefined, messages_up: counts.up, messages_down: counts.down });
        for (const w of [client, upstream]) if (w.readyState === WebSocket.OPEN) w.close(code === 1005 || code === 1006 ? 1000 : code, why);
        setTimeout(() => {
          client.terminate();
          upstream.terminate();
        }, 1000).unref();
        ex.finish(101);
      };
      client.on('close', (code, why) => close(code, why.toString()));
      upstream.on('close', (code, why) => close(code, why.toString()));
      client.on('error', () => close(1011, 'client error'));
      upstream.on('error', () => close(1011, 'target error'));
      ex.onKill = (reason) => {
        for (const w of [client, upstream]) if (w.readyState === WebSocket.OPEN) w.close(1008, reason.slice(0, 120));
        setTimeout(() => {
          client.terminate();
          upstream.terminate();
        }, 200).unref();
        close(1008, reason.slice(0, 120));
      };
    });
  });
}
