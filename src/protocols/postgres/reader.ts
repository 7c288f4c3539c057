// A small buffered reader for the startup and authentication phase, where
// messages are few and the code reads better as a sequence of awaits.
// After authentication the Framer takes over; `detach` hands it any bytes
// already read.

import type { Duplex } from 'node:stream';
import { ProtocolViolation } from './framer.js';

export class ConnectionClosed extends Error {
  constructor(message = 'connection closed') {
    super(message);
    this.name = 'ConnectionClosed';
  }
}

export interface RawMessage {
  type: number;
  /** The body, after the type byte and length. */
  body: Buffer;
}

export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended: Error | null = null;
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.wake();
  };
  private readonly onEnd = () => {
    this.ended ??= new ConnectionClosed();
    this.wake();
  };
  private readonly onError = (err: Error) => {
    this.ended ??= err;
    this.wake();
  };

  constructor(
    private socket: Duplex,
    private readonly maxMessage: number,
  ) {
    this.attach(socket);
  }

  private attach(socket: Duplex): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.ended) throw this.ended;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  /** True once the socket ended, closed or failed, even if nobody was reading. */
  get closed(): boolean {
    return this.ended !== null;
  }

  get buffered(): number {
    return this.buf.length;
  }

  /** Reads an untyped startup-phase packet: int32 length (including itself), then the payload. */
  async readStartupPacket(): Promise<Buffer> {
    await this.need(4);
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > 10_000) throw new ProtocolViolation(`invalid startup packet length ${len}`);
    await this.need(len);
    const pkt = this.buf.subarray(4, len);
    this.buf = this.buf.subarray(len);
    return pkt;
  }

  /** Reads one typed message. */
  async readMessage(): Promise<RawMessage> {
    await this.need(5);
    const type = this.buf[0];
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > this.maxMessage) throw new ProtocolViolation(`invalid message length ${len} for message type 0x${type.toString(16)}`);
    await this.need(1 + len);
    const body = this.buf.subarray(5, 1 + len);
    this.buf = this.buf.subarray(1 + len);
    return { type, body };
  }

  /** Reads exactly one byte (the answer to SSLRequest). */
  async readByte(): Promise<number> {
    await this.need(1);
    const b = this.buf[0];
    this.buf = this.buf.subarray(1);
    return b;
  }

  /** The next byte, left unread (0x16 first: a TLS ClientHello, sslnegotiation=direct). */
  async peekByte(): Promise<number> {
    await this.need(1);
    return this.buf[0];
  }

  /** Stops listening and returns the bytes read but not consumed. */
  detach(): Buffer {
    const s = this.socket;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onEnd);
    s.off('error', this.onError);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  /** Moves to a new socket (after a TLS upgrade). Refuses if unread plaintext is pending. */
  reattach(socket: Duplex): void {
    const rest = this.detach();
    if (rest.length) throw new ProtocolViolation('unexpected data after the TLS request (possible injection attempt)');
    this.ended = null;
    this.attach(socket);
  }
}
