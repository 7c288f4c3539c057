// Masking a byte stream (terminal or command output) with the content detectors,
// across chunk boundaries: a value split over two packets is still caught.
//
// How: output is scanned up to the last line end ('\n' or '\r') seen so far;
// the rest of the line is held back until its end arrives, more than
// `maxHold` bytes pile up, or `holdMs` pass without more data (an interactive
// prompt or a typed character must not wait for a newline). Detectors never
// match across a line end, except private keys: a "-----BEGIN …" without its
// "-----END" is held whole (up to `maxPem` bytes) so the key is masked in one
// piece.
//
// Best effort by design: a value whose halves arrive more than `holdMs` apart
// (a program that sleeps mid-value) is scanned as two values.

import type { MaskContext } from './strategies.js';
import { maskFindings } from './strategies.js';
import type { Scanner } from './scanner.js';
import type { Strategy } from './types.js';

export interface StreamMaskerOptions {
  /** Longest wait for the rest of a line, in ms (default 30). */
  holdMs?: number;
  /** Most bytes held without a line end (default 64 KiB). */
  maxHold?: number;
  /** Most bytes held for an unterminated private key block (default 64 KiB). */
  maxPem?: number;
}

/** A line without an end beyond maxHold is cut this far before its end, at a space if there is one. */
const TAIL = 512;
const NL = 0x0a;
const CR = 0x0d;
const BEGIN = Buffer.from('-----BEGIN ');
const END = Buffer.from('-----END ');
/** How long an unterminated private key block may be held. */
const PEM_WAIT_MS = 1000;

function openPem(b: Buffer): boolean {
  const i = b.lastIndexOf(BEGIN);
  return i >= 0 && b.indexOf(END, i) < 0;
}

export class StreamMasker {
  private carry: Buffer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly holdMs: number;
  private readonly maxHold: number;
  private readonly maxPem: number;
  /** Findings masked so far, per detector. */
  readonly counts: Record<string, number> = {};
  private closed = false;
  private heldSince = 0;

  constructor(
    private readonly scanner: Scanner,
    private readonly strategyFor: (detector: string) => Strategy,
    private readonly ctx: MaskContext,
    /** Receives masked output, in order. */
    private readonly emit: (b: Buffer) => void,
    opts: StreamMaskerOptions = {},
  ) {
    this.holdMs = opts.holdMs ?? 30;
    this.maxHold = opts.maxHold ?? 64 * 1024;
    this.maxPem = opts.maxPem ?? 64 * 1024;
  }

  /** Bytes held back right now. */
  get held(): number {
    return this.carry?.length ?? 0;
  }

  push(chunk: Buffer): void {
    if (this.closed) return;
    if (chunk.length === 0) return;
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    const cut = this.cutPoint(data);
    if (cut > 0) this.out(data, 0, cut);
    if (cut < data.length) {
      // Copy: the caller may reuse its chunk.
      this.carry = Buffer.from(data.subarray(cut));
      if (!this.timer) {
        this.heldSince = Date.now();
        this.arm();
      }
    } else if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      // An open private key block gets longer (PEM_WAIT_MS) to see its END line.
      const c = this.carry;
      if (c && openPem(c) && Date.now() - this.heldSince < PEM_WAIT_MS) this.arm();
      else this.flush();
    }, this.holdMs);
    this.timer.unref?.();
  }

  /** Emits everything held (end of stream, or the hold time passed). */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const c = this.carry;
    this.carry = null;
    if (c && c.length) this.out(c, 0, c.length);
  }

  /** Flushes and stops; later pushes are ignored. */
  end(): void {
    this.flush();
    this.closed = true;
  }

  /** Drops what is held (the stream was cut off) without emitting it. */
  discard(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.carry = null;
    this.closed = true;
  }

  /** How much of data can be scanned and emitted now. */
  private cutPoint(data: Buffer): number {
    let cut = lastLineEnd(data) + 1;
    if (cut === 0 && data.length > this.maxHold) {
      const soft = data.length - TAIL;
      const sp = data.lastIndexOf(0x20, soft);
      cut = sp > soft - 4 * TAIL ? sp + 1 : soft;
    }
    if (cut > 0) {
      // Hold an unterminated private key block whole (within maxPem).
      const b = data.lastIndexOf(BEGIN, cut - 1);
      if (b >= 0 && data.indexOf(END, b) < 0 && data.length - b <= this.maxPem) cut = Math.min(cut, b);
    }
    return cut;
  }

  private out(buf: Buffer, start: number, end: number): void {
    const f = this.scanner.scan(buf, start, end);
    if (f.length === 0) {
      this.emit(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
      return;
    }
    for (const x of f) this.counts[x.detector] = (this.counts[x.detector] ?? 0) + 1;
    this.emit(maskFindings(buf, start, end, f, this.strategyFor, this.ctx));
  }
}

function lastLineEnd(b: Buffer): number {
  return Math.max(b.lastIndexOf(NL), b.lastIndexOf(CR));
}
