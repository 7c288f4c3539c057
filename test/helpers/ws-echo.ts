// A websocket echo upstream (the ws package) on a free loopback port: every
// message comes back as it arrived (text as text, binary as binary). It
// records the upgrade requests (headers: what credential arrived, that the
// caller's token did not) and every message and close it received.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface WsUpgrade {
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: [string, string][];
}

export interface WsMessage {
  /** Which connection (index into upgrades). */
  conn: number;
  data: Buffer;
  binary: boolean;
}

export interface WsEcho {
  host: string;
  port: number;
  url: string;
  upgrades: WsUpgrade[];
  messages: WsMessage[];
  /** Close codes received from clients, by connection. */
  closes: { conn: number; code: number; reason: string }[];
  /** Open server-side sockets (tests can push unsolicited messages or close from the server). */
  sockets: WebSocket[];
  /** True when `secret` appears in any upgrade request (URL, header) or message received. */
  sawSecret(secret: string): boolean;
  reset(): void;
  stop(): Promise<void>;
}

export interface WsEchoOptions {
  /** Refuse upgrades (401) unless this header has this value, like an API that wants a key. */
  requireHeader?: [name: string, value: string];
}

export async function startWsEcho(t: { teardown(fn: () => unknown): void }, opts: WsEchoOptions = {}): Promise<WsEcho> {
  const upgrades: WsUpgrade[] = [];
  const messages: WsMessage[] = [];
  const closes: WsEcho['closes'] = [];
  const sockets: WebSocket[] = [];
  // A plain HTTP server underneath: a non-upgrade request gets a small answer, so the port also speaks HTTP.
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('websocket only\n');
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const raw: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    upgrades.push({ url: req.url ?? '', headers: { ...req.headers }, rawHeaders: raw });
    const conn = upgrades.length - 1;
    const need = opts.requireHeader;
    if (need && req.headers[need[0].toLowerCase()] !== need[1]) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      ws.on('message', (data, isBinary) => {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        messages.push({ conn, data: buf, binary: isBinary });
        ws.send(buf, { binary: isBinary });
      });
      ws.on('close', (code, reason) => closes.push({ conn, code, reason: reason.toString() }));
      ws.on('error', () => {});
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(stop);
  return {
    host: '127.0.0.1',
    port,
    url: `ws://127.0.0.1:${port}`,
    upgrades,
    messages,
    closes,
    sockets,
    sawSecret: (secret) =>
      upgrades.some((u) => u.url.includes(secret) || u.rawHeaders.some(([k, v]) => k.includes(secret) || v.includes(secret))) ||
      messages.some((m) => m.data.includes(secret)),
    reset() {
      upgrades.splice(0);
      messages.splice(0);
      closes.splice(0);
    },
    stop,
  };
}
