// The HTTP protocol module: HTTP/1.1 and HTTP/2 (ALPN, over TLS) in front of
// internal APIs. See README.md in this folder.

import './config.js';
import http from 'node:http';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { AnyListenerConfig, Core, ProtocolModule, RunningListener } from '../kit/module.js';
import { TOO_MANY_PENDING } from '../kit/module.js';
import type { HttpListenerConfig } from '../../config/types.js';
import { listenOn } from '../../gateway/listen.js';
import { handleRequest, sweepSessions, type Conn, type ListenerState, type Req, type Res } from './exchange.js';
import { problemBody, sendProblem } from './problem.js';
import { Upstreams } from './upstream.js';
import { renderHttp } from './replay.js';
import { toHar } from './har.js';


/** The Conn of a socket (set on the TLS or TCP socket; HTTP/2's socket proxy reads through to it). */
const CONN = Symbol('sluice.http.conn');

/** An `upgrade` event of the listener. */
export function handleUpgrade(st: ListenerState, conn: Conn | undefined, req: http.IncomingMessage, sock: Socket, head: Buffer): void {
  if (!conn) return void sock.destroy();
  // A real ServerResponse on the socket, so every refusal is the same problem response as for any request.
  const res = new http.ServerResponse(req);
  res.assignSocket(sock);
  res.shouldKeepAlive = false;
  res.on('finish', () => sock.end());
  if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    sendProblem(res, { status: 400, title: 'Bad request', detail: `only websocket upgrades are relayed, not ${JSON.stringify(req.headers.upgrade)}` }, undefined, true);
    return;
  }
  void handleRequest(st, conn, req, res, { sock, head });
}

export const httpModule: ProtocolModule = {
  protocol: 'http',
  render: (frames, opts) => renderHttp(frames, opts),
  export: { har: (frames, meta) => toHar(frames, meta) },
  async listen(core: Core, anyCfg: AnyListenerConfig): Promise<RunningListener> {
    let cfg = anyCfg as HttpListenerConfig;
    const st: ListenerState = { core, cfg, upstreams: new Upstreams(core), grants: new Map(), sessions: new Map(), opening: new Map(), tls: !!cfg.tls, tokenHeader: cfg.token_header?.toLowerCase() };
    const sweep = setInterval(() => {
      sweepSessions(st, cfg.idle_timeout);
      const now = Date.now();
      for (const [id, g] of st.grants) if (g.expires < now || g.used) st.grants.delete(id);
    }, 1000);
    sweep.unref();
    const limits = () => core.config().limits;

    /**
     * Pre-auth slots by `address:port`: taken at TCP accept (before TLS), handed to the
     * connection's Conn at its first request, freed when it authenticates or closes.
     */
    const slots = new Map<string, () => void>();
    const onTcp = (sock: Socket): void => {
      sock.on('error', () => {}); // errors end the connection; never crash the gateway
      const key = `${sock.remoteAddress}:${sock.remotePort}`;
      const release = core.admitUnauthenticated({ address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0, protocol: 'http' }, () => sock.destroy());
      if (!release) {
        if (!cfg.tls) {
          const body = problemBody({ status: 503, title: 'Too many connections', detail: TOO_MANY_PENDING });
          sock.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
        } else sock.destroy();
        return;
      }
      slots.set(key, release);
      sock.once('close', () => {
        if (slots.get(key) === release) slots.delete(key);
        release();
      });
    };

    /** The Conn of a request's connection, made at its first request (the socket, or HTTP/2's session, carries it). */
    const connOf = (req: Req): Conn => {
      const h2 = 'stream' in req && !!(req as { stream?: unknown }).stream;
      const holder = (h2 ? (req as import('node:http2').Http2ServerRequest).stream.session : req.socket) as unknown as Record<symbol, Conn | undefined>;
      let conn = holder[CONN];
      if (conn) return conn;
      const sock = req.socket;
      const key = `${sock.remoteAddress}:${sock.remotePort}`;
      const release = slots.get(key) ?? null;
      slots.delete(key);
      const c: Conn = {
        client: { address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0, secure: !!cfg.tls },
        release,
        h2,
        closed: false,
        destroy: () => (h2 ? (req as import('node:http2').Http2ServerRequest).stream.session?.destroy() : sock?.destroy()),
      };
      const done = () => {
        c.closed = true;
        c.release?.();
        c.release = null;
        c.last = undefined;
      };
      if (h2) (req as import('node:http2').Http2ServerRequest).stream.session?.once('close', done);
      else sock.once('close', done);
      holder[CONN] = conn = c;
      return conn;
    };

    const onRequest = (req: Req, res: Res): void => {
      void handleRequest(st, connOf(req), req, res);
    };

    const h2Sessions = new Set<http2.ServerHttp2Session>();
    let server: http.Server | http2.Http2SecureServer;
    if (cfg.tls) {
      const s2 = http2.createSecureServer(
        {
          cert: readFileSync(cfg.tls.cert),
          key: readFileSync(cfg.tls.key),
          allowHTTP1: true,
          maxSessionMemory: 64,
          settings: { maxHeaderListSize: cfg.max_header_bytes, enablePush: false },
          maxHeaderListPairs: 256,
        },
        onRequest,
      );
      s2.on('connection', onTcp);
      s2.on('session', (sess) => {
        h2Sessions.add(sess);
        sess.once('close', () => h2Sessions.delete(sess));
        sess.setTimeout(cfg.idle_timeout, () => sess.close());
      });
      s2.on('upgrade', (req, sock, head) => handleUpgrade(st, connOf(req), req, sock as Socket, head));
      server = s2;
    } else {
      const s1 = http.createServer({ maxHeaderSize: cfg.max_header_bytes, noDelay: true, requireHostHeader: false, keepAliveTimeout: cfg.idle_timeout, headersTimeout: limits().startup_timeout, requestTimeout: 0 }, onRequest);
      s1.on('connection', onTcp);
      s1.on('upgrade', (req, sock, head) => handleUpgrade(st, connOf(req), req, sock as Socket, head));
      server = s1;
    }
    // A request head the parser cannot read (ambiguous framing, bad chunk, obs-fold, bare LF, …): 400, nothing forwarded.
    server.on('clientError', (err: Error & { code?: string }, sock: Socket) => {
      core.logPreAuth('info', { event: 'http.bad_request', reason: err.code ?? 'parse_error', protocol: 'http', client: `${sock.remoteAddress}:${sock.remotePort}` }, `malformed HTTP request refused: ${err.code ?? err.message}`);
      if (err.code === 'ECONNRESET' || !sock.writable) return void sock.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = problemBody({ status, title: status === 431 ? 'Request header fields too large' : status === 408 ? 'Request timeout' : 'Bad request', detail: `malformed or ambiguous request refused, nothing was forwarded (${err.code ?? err.message})` });
      sock.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/problem+json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
    if (server instanceof http.Server) {
      server.keepAliveTimeout = cfg.idle_timeout;
    }
    const addr = await listenOn(server as unknown as import('node:net').Server, cfg.port, cfg.host);
    return {
      protocol: 'http',
      host: addr.address,
      port: addr.port,
      reload(next) {
        cfg = next as HttpListenerConfig;
        st.cfg = cfg;
        st.tokenHeader = cfg.token_header?.toLowerCase();
        if (server instanceof http.Server) server.keepAliveTimeout = cfg.idle_timeout;
        if (cfg.tls && 'setSecureContext' in server) server.setSecureContext({ cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) });
      },
      close: async () => {
        clearInterval(sweep);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Idle keep-alive connections would hold close() up to idle_timeout: they go now (GOAWAY for HTTP/2).
        if (server instanceof http.Server) server.closeIdleConnections();
        for (const sess of h2Sessions) sess.close();
        await closed;
        await st.upstreams.close();
      },
    };
  },
};

