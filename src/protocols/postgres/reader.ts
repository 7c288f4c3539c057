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

/** A message whose declared length is above the reader's limit, refused at its 5-byte header. */
export class MessageTooLarge extends ProtocolViolation {
  constructor(
    readonly type: number,
    readonly length: number,
    readonly limit: number,
  ) {
    super(`message of ${length} bytes (type 0x${type.toString(16)}) exceeds the limit of ${limit} bytes before authentication`);
  }
}

/** Bytes read past what the current read needs, before the socket is paused (backpressure). */
const HIGH_WATER = 64 * 1024;

/**
 * Reads whole messages from a socket. Chunks are kept as they arrive and joined
 * once a read has all it needs, so a message costs one copy whatever the chunk
 * sizes; a length above the limit is refused as soon as its header is in, and
 * the socket is paused while more than HIGH_WATER bytes wait unread, so a peer
 * cannot make the reader hold more than about one message and one chunk.
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private total = 0;
  /** Bytes the pending read waits for; 0 when nobody reads. */
  private want = 0;
  private paused = false;
  private attached = false;
  private waiter: (() => void) | null = null;
  private ended: Error | null = null;
  private readonly onData = (chunk: Buffer) => {
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (this.total >= this.want) {
      if (this.total > HIGH_WATER && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
      this.wake();
    }
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
    this.attached = true;
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
    if (this.total >= n) return;
    this.want = n;
    try {
      while (this.total < n) {
        if (this.ended) throw this.ended;
        if (this.paused) {
          this.paused = false;
          this.socket.resume();
        }
        await new Promise<void>((resolve) => (this.waiter = resolve));
      }
    } finally {
      this.want = 0;
    }
  }

  /** The first `n` buffered bytes as one buffer (joined once when they span chunks); not consumed. */
  private head(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    let k = 1;
    let len = first.length;
    while (len < n) len += this.chunks[k++]!.length;
    const joined = Buffer.concat(this.chunks.slice(0, k), len);
    this.chunks.splice(0, k, joined);
    return joined;
  }

  /** Consumes `n` buffered bytes and returns them (a view when they lie in one chunk). */
  private take(n: number): Buffer {
    const buf = this.head(n);
    const out = buf.subarray(0, n);
    if (buf.length === n) this.chunks.shift();
    else this.chunks[0] = buf.subarray(n);
    this.total -= n;
    return out;
  }

  /** True once the socket ended, closed or failed, even if nobody was reading. */
  get closed(): boolean {
    return this.ended !== null;
  }

  get buffered(): number {
    return this.total;
  }

  /** Reads an untyped startup-phase packet: int32 length (including itself), then the payload. */
  async readStartupPacket(): Promise<Buffer> {
    await this.need(4);
    const len = this.head(4).readInt32BE(0);
    if (len < 8 || len > 10_000) throw new ProtocolViolation(`invalid startup packet length ${len}`);
    await this.need(len);
    return this.take(len).subarray(4);
  }

  /** Reads one typed message. */
  async readMessage(): Promise<RawMessage> {
    await this.need(5);
    const h = this.head(5);
    const type = h[0]!;
    const len = h.readInt32BE(1);
    if (len < 4) throw new ProtocolViolation(`invalid message length ${len} for message type 0x${type.toString(16)}`);
    if (len > this.maxMessage) throw new MessageTooLarge(type, len, this.maxMessage);
    await this.need(1 + len);
    return { type, body: this.take(1 + len).subarray(5) };
  }

  /** Reads exactly one byte (the answer to SSLRequest). */
  async readByte(): Promise<number> {
    await this.need(1);
    return this.take(1)[0]!;
  }

  /** The next byte, left unread (0x16 first: a TLS ClientHello, sslnegotiation=direct). */
  async peekByte(): Promise<number> {
    await this.need(1);
    return this.head(1)[0]!;
  }

  /** Stops listening and returns the bytes read but not consumed; a socket it paused flows again. */
  detach(): Buffer {
    const s = this.socket;
    this.attached = false;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onEnd);
    s.off('error', this.onError);
    const rest = this.chunks.length === 0 ? Buffer.alloc(0) : this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    this.chunks = [];
    this.total = 0;
    if (this.paused) {
      this.paused = false;
      s.resume();
    }
    return rest;
  }

  /**
   * Stops listening for good (the connection is being refused): nothing more is
   * read or kept. A no-op once the socket was handed on (detached).
   */
  stop(): void {
    if (!this.attached) return;
    this.detach();
    this.socket.pause();
  }

  /** Moves to a new socket (after a TLS upgrade). Refuses if unread plaintext is pending. */
  reattach(socket: Duplex): void {
    const rest = this.detach();
    if (rest.length) throw new ProtocolViolation('unexpected data after the TLS request (possible injection attempt)');
    this.ended = null;
    this.attach(socket);
  }
}
