// The data path after authentication: both directions framed, forwarded as raw
// slices, with backpressure and one write per input chunk.

import type { Duplex } from 'node:stream';
import type { Session } from '../../core/sessions.js';
import { F, VALID_FRONTEND } from './constants.js';
import { Framer, ProtocolViolation, type FrameHandler } from './framer.js';
import { errorResponse } from './messages.js';

type Sock = Duplex & { setNoDelay?: (v: boolean) => void };

export interface RelayOptions {
  maxMessage: number;
  onClose(reason: string): void;
}

/** Frontend (client → server) inspection. Issue-level features hook in here. */
class FrontendHandler implements FrameHandler {
  constructor(private readonly session: Session) {}

  wantsMessage(type: number): boolean {
    if (VALID_FRONTEND[type] !== 1) {
      throw new ProtocolViolation(`invalid frontend message type ${type} (0x${type.toString(16)})`);
    }
    if (type === F.Query || type === F.Execute) this.session.statements++;
    return false;
  }

  onMessage(): boolean {
    return true;
  }
}

/** Backend (server → client) inspection. */
class BackendHandler implements FrameHandler {
  wantsMessage(): boolean {
    return false;
  }
  onMessage(): boolean {
    return true;
  }
}

/** Writes a batch of slices as one writev; returns false when the destination is full. */
function writeBatch(dest: Sock, bufs: Buffer[]): boolean {
  if (bufs.length === 1) return dest.write(bufs[0]);
  dest.cork();
  let ok = true;
  for (const b of bufs) ok = dest.write(b);
  dest.uncork();
  return ok;
}

export class PgRelay {
  private readonly front: Framer;
  private readonly back: Framer;
  private closed = false;

  constructor(
    private readonly client: Sock,
    private readonly server: Sock,
    private readonly session: Session,
    private readonly opts: RelayOptions,
  ) {
    this.front = new Framer(new FrontendHandler(session), opts.maxMessage);
    // Backend messages are bounded by the server, not by our client limit (a row can be up to 1 GB).
    this.back = new Framer(new BackendHandler(), 0x7fffffff);
  }

  start(clientLeftover: Buffer, serverLeftover: Buffer): void {
    const { client, server } = this;
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    server.on('data', (chunk: Buffer) => this.fromServer(chunk));
    client.on('end', () => this.close('client disconnected'));
    client.on('close', () => this.close('client disconnected'));
    client.on('error', (e: Error) => this.close(`client error: ${e.message}`));
    server.on('end', () => this.close('server closed the connection'));
    server.on('close', () => this.close('server closed the connection'));
    server.on('error', (e: Error) => this.close(`server error: ${e.message}`));
    if (serverLeftover.length) this.fromServer(serverLeftover);
    if (clientLeftover.length) this.fromClient(clientLeftover);
  }

  private fromClient(chunk: Buffer): void {
    this.session.bytesFromClient += chunk.length;
    try {
      this.front.push(chunk);
    } catch (err) {
      this.violation(err as Error);
      return;
    }
    const out = this.front.take();
    if (out.length && !writeBatch(this.server, out)) this.throttle(this.client, this.server);
  }

  private fromServer(chunk: Buffer): void {
    try {
      this.back.push(chunk);
    } catch (err) {
      this.close(`server protocol error: ${(err as Error).message}`);
      return;
    }
    const bytes = this.back.outBytes;
    const out = this.back.take();
    this.session.bytesToClient += bytes;
    if (out.length && !writeBatch(this.client, out)) this.throttle(this.server, this.client);
  }

  /** Stops reading `src` until `dest` drains: a slow reader slows the sender, memory stays bounded. */
  private throttle(src: Sock, dest: Sock): void {
    if (src.isPaused()) return;
    src.pause();
    dest.once('drain', () => {
      if (!this.closed) src.resume();
    });
  }

  private violation(err: Error): void {
    if (this.closed) return;
    const msg = errorResponse({ severity: 'FATAL', code: '08P01', message: `protocol violation: ${err.message}` });
    this.client.end(msg);
    this.close(`protocol violation: ${err.message}`);
  }

  /**
   * Ends the session from outside (kill switch, shutdown). The client gets a FATAL
   * message when that can be sent at a message boundary.
   */
  terminate(reason: string, sqlstate = '57P01'): void {
    if (this.closed) return;
    if (this.back.idle) {
      this.client.end(errorResponse({ severity: 'FATAL', code: sqlstate, message: `terminating connection: ${reason}` }));
    } else {
      this.client.end();
    }
    this.close(reason);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.server.destroy();
    // Let an already-queued FATAL reach the client, then drop it.
    if (!this.client.destroyed) {
      this.client.end();
      setTimeout(() => this.client.destroy(), 2000).unref();
    }
    this.opts.onClose(reason);
  }
}
