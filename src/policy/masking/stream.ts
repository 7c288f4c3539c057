// Masking a byte stream (terminal or command output) with the content
// detectors, across chunk boundaries, whatever the timing: a value split over
// packets that arrive seconds apart is still caught.
//
// How: on each chunk the scanner says where a value may still be under way at
// the end (Scanner.pending: a local part that may still get its '@', a number
// that may still grow into a card, a "-----BEGIN …PRIVATE KEY-----" whose END
// has not come, …). Everything before that offset is scanned and sent at once;
// the rest is held until more bytes complete or rule out the value, or the
// stream ends (then it is scanned as final). Nothing is ever released by a
// timer, so the result does not depend on scheduling.
//
// Held bytes are bounded: values with a maximum length (cards, emails, …, at
// most 318 bytes) bound themselves; a private key block, a JWT or a custom
// pattern still open after `maxHold` bytes is sent masked whole as its detector
// (fail closed), and what follows it is scanned afresh.
//
// Terminal echo: with a pty, the shell echoes what the client types. Held bytes
// that are exactly bytes the client itself just typed are sent at once (they
// tell the client nothing it did not send), so a word being typed shows as it
// is typed even though it could be the start of an email address.

import type { MaskContext } from './strategies.js';
import { maskFindings } from './strategies.js';
import { resolveOverlaps, type Scanner } from './scanner.js';
import type { Finding, Strategy } from './types.js';
import { blankEscapes } from './pending.js';

const ESC = 0x1b;

export interface StreamMaskerOptions {
  /** Most bytes held for one value still under way (default 64 KiB). */
  maxHold?: number;
}

/** Typed bytes remembered for recognising their echo. */
const ECHO_WINDOW = 256;
/** Input bytes that end the typed line: CR, LF, Ctrl-C, Ctrl-U. */
const LINE_DONE = new Uint8Array(256);
for (const c of [0x0d, 0x0a, 0x03, 0x15]) LINE_DONE[c] = 1;

export class StreamMasker {
  private carry: Buffer | null = null;
  private readonly maxHold: number;
  /** Client input not yet seen echoed (pty only). */
  private typed: Buffer | null = null;
  /** Findings masked so far, per detector. */
  readonly counts: Record<string, number> = {};
  private closed = false;

  constructor(
    private readonly scanner: Scanner,
    private readonly strategyFor: (detector: string) => Strategy,
    private readonly ctx: MaskContext,
    /** Receives masked output, in order. */
    private readonly emit: (b: Buffer) => void,
    opts: StreamMaskerOptions = {},
  ) {
    this.maxHold = Math.max(opts.maxHold ?? 64 * 1024, 1024);
  }

  /** Bytes held back right now. */
  get held(): number {
    return this.carry?.length ?? 0;
  }

  /**
   * Bytes the client sent (a pty's keystrokes): their echo is not held. Only
   * the line being typed counts: Enter, Ctrl-C and Ctrl-U start afresh, so
   * output of a command that merely repeats what was typed is still masked.
   */
  noteInput(b: Buffer): void {
    if (this.closed || b.length === 0) return;
    let s = b.length;
    while (s > 0 && !LINE_DONE[b[s - 1]!]) s--;
    if (s > 0) this.typed = null;
    if (s === b.length) return;
    const t = this.typed;
    const add = b.length - s;
    if (add >= ECHO_WINDOW || !t) this.typed = Buffer.from(b.subarray(Math.max(s, b.length - ECHO_WINDOW)));
    else this.typed = Buffer.concat([t.subarray(Math.max(0, t.length + add - ECHO_WINDOW)), b.subarray(s)]);
  }

  push(chunk: Buffer): void {
    if (this.closed || chunk.length === 0) return;
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    this.release(data, false);
  }

  /** Scans and emits everything held, as if the stream ended here. */
  flush(): void {
    const c = this.carry;
    this.carry = null;
    if (c && c.length) this.release(c, true);
  }

  /** Flushes and stops; later pushes are ignored. */
  end(): void {
    this.flush();
    this.closed = true;
  }

  /** Drops what is held (the stream was cut off) without emitting it. */
  discard(): void {
    this.carry = null;
    this.typed = null;
    this.closed = true;
  }

  private release(data: Buffer, final: boolean): void {
    const n = data.length;
    // Detectors see terminal control sequences as boundaries (a copy, only when there are any).
    let view = data;
    let escOpen = n;
    const esc = data.indexOf(ESC);
    if (esc >= 0) {
      view = Buffer.from(data);
      escOpen = blankEscapes(view, esc, n);
    }
    let cut = n;
    let open: Finding | null = null;
    if (!final) {
      cut = Math.min(escOpen, this.scanner.pending(view, 0, n));
      if (cut < n && n - cut > this.maxHold) {
        // Too long to hold: out it goes, the unfinished value masked whole.
        const det = cut === escOpen ? '' : this.scanner.pendingDetector;
        if (det !== '' && det !== 'number' && det !== 'email') open = { start: cut, end: n, detector: det };
        cut = n;
      } else if (cut < n && this.isEcho(data, cut)) cut = n;
    }
    if (cut === 0) {
      this.carry = Buffer.from(data); // the caller may reuse its chunk
      return;
    }
    let f = this.scanner.scan(view, 0, n);
    if (open && !f.some((x) => x.start <= open!.start && x.end >= n)) f = resolveOverlaps([...f, open]);
    // Never split a value found in what is here: hold it whole.
    let k = 0;
    while (k < f.length && f[k]!.start < cut) {
      if (f[k]!.end > cut) {
        cut = f[k]!.start;
        break;
      }
      k++;
    }
    if (cut > 0) this.out(data, cut, k === f.length ? f : f.slice(0, k));
    if (cut < n) this.carry = Buffer.from(data.subarray(cut));
  }

  /** Whether data[cut, n) is exactly bytes the client typed (then consumed). */
  private isEcho(data: Buffer, cut: number): boolean {
    const t = this.typed;
    if (!t || data.length - cut > t.length) return false;
    const i = t.indexOf(data.subarray(cut));
    if (i < 0) return false;
    this.typed = t.subarray(i + data.length - cut);
    return true;
  }

  private out(buf: Buffer, end: number, f: readonly Finding[]): void {
    if (f.length === 0) {
      this.emit(end === buf.length ? buf : buf.subarray(0, end));
      return;
    }
    for (const x of f) this.counts[x.detector] = (this.counts[x.detector] ?? 0) + 1;
    this.emit(maskFindings(buf, 0, end, f, this.strategyFor, this.ctx));
  }
}
