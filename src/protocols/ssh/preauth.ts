// An SSH connection from TCP accept until it authenticates. ssh2's Server
// reports a connection only once the client has sent its identification line,
// so admission (global pool and per-source cap), the startup and auth
// deadlines and their log lines start here, on the raw socket, before the
// socket is handed to ssh2 (Server.injectSocket).

import type net from 'node:net';
import type ssh2 from 'ssh2';
import { TOO_MANY_PENDING, type Core } from '../kit/module.js';
import { DISCONNECT_BY_APPLICATION, DISCONNECT_TOO_MANY_CONNECTIONS, awaitingPeerNewKeys, plainDisconnect, refusalBytes, sendDisconnect } from './auth-banner.js';

/** A socket closed by Sluice is dropped after this even if the peer never closes its end. */
const LINGER_MS = 1000;

const bySocket = new WeakMap<object, SshPreAuth>();

export class SshPreAuth {
  private conn: ssh2.Connection | null = null;
  private handshakes = 0;
  private done = false;
  private readonly release: () => void;
  private readonly authTimer: NodeJS.Timeout;
  private startupTimer: NodeJS.Timeout | undefined;
  readonly client: string;

  /** Admits a freshly accepted socket, or refuses it (with a DISCONNECT the client shows) and returns null. */
  static accept(core: Core, sock: net.Socket, ident: string): SshPreAuth | null {
    const address = sock.remoteAddress ?? '?';
    const port = sock.remotePort ?? 0;
    let pre: SshPreAuth | undefined;
    const release = core.admitUnauthenticated({ address, port, protocol: 'ssh' }, () => pre?.evicted());
    if (!release) {
      sock.end(refusalBytes(ident, DISCONNECT_TOO_MANY_CONNECTIONS, `sluice: ${TOO_MANY_PENDING}`));
      setTimeout(() => sock.destroy(), LINGER_MS).unref();
      return null;
    }
    pre = new SshPreAuth(core, sock, `${address}:${port}`, release);
    return pre;
  }

  /** The pre-authentication state of the socket under an ssh2 connection. */
  static of(conn: ssh2.Connection): SshPreAuth | undefined {
    const sock = (conn as unknown as { _sock?: object })._sock;
    return sock ? bySocket.get(sock) : undefined;
  }

  private constructor(
    private readonly core: Core,
    private readonly sock: net.Socket,
    client: string,
    release: () => void,
  ) {
    this.client = client;
    this.release = release;
    bySocket.set(sock, this);
    const limits = core.config().limits;
    this.authTimer = setTimeout(
      () => this.refuse('auth_timeout', DISCONNECT_BY_APPLICATION, `authentication not completed within ${limits.auth_timeout} ms (limits.auth_timeout)`),
      limits.auth_timeout,
    );
    if (limits.startup_timeout < limits.auth_timeout) {
      this.startupTimer = setTimeout(
        () => this.refuse('startup_timeout', DISCONNECT_BY_APPLICATION, `key exchange not completed within ${limits.startup_timeout} ms (limits.startup_timeout)`),
        limits.startup_timeout,
      );
    }
    sock.once('close', () => this.finish());
  }

  /** ssh2 parsed the client's identification: the key exchange follows. */
  attach(conn: ssh2.Connection): void {
    this.conn = conn;
    conn.once('handshake', () => {
      this.handshakes++;
      clearTimeout(this.startupTimer);
      this.startupTimer = undefined;
    });
  }

  /** Logged in: no longer pending. */
  authenticated(): void {
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.authTimer);
    clearTimeout(this.startupTimer);
    this.release();
  }

  /** Gave its slot to a newcomer (the core logged it). */
  private evicted(): void {
    this.close(DISCONNECT_TOO_MANY_CONNECTIONS, `sluice: ${TOO_MANY_PENDING}`);
  }

  private refuse(reason: 'auth_timeout' | 'startup_timeout', code: number, message: string): void {
    if (this.done) return;
    this.core.logPreAuth('info', { event: 'connection.timeout', reason, protocol: 'ssh', client: this.client }, `connection refused: ${message}`);
    this.close(code, `sluice: ${message}`);
  }

  /** Tells the client why (OpenSSH prints a DISCONNECT's text) and closes. */
  private close(code: number, text: string): void {
    this.finish();
    // Between our NEWKEYS and the client's no DISCONNECT can be sent that the client could read
    // (auth-banner.ts: awaitingPeerNewKeys): then it is only closed.
    if (!(this.conn && awaitingPeerNewKeys(this.conn, this.handshakes))) {
      const sent = this.conn ? sendDisconnect(this.conn, code, text) : false;
      // Before ssh2 parsed the client's identification nothing is encrypted yet.
      if (!sent && !this.sock.destroyed) this.sock.write(plainDisconnect(code, text));
    }
    // Nothing more is read from it.
    this.sock.pause();
    this.sock.end();
    setTimeout(() => this.sock.destroy(), LINGER_MS).unref();
  }
}
