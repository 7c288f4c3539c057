// Moving bytes from one SSH channel stream to another with backpressure.
//
// A source is paused while any "hold" is set: the destination's buffer is full
// (until 'drain'), the recording store is behind, the channel waits for the
// upstream or for an approval. ssh2 stops granting window to a paused channel
// once ~2 MiB are buffered, so a fast sender is slowed by SSH flow control
// rather than ballooning the gateway's memory.

import type { Readable, Writable } from 'node:stream';
import type { SessionRecorder } from '../../recording/store.js';

import { HOLD_DRAIN, HOLD_RECORDER } from '../kit/holds.js';

export class Pump {
  private holds = 0;
  private attached = false;

  constructor(
    readonly src: Readable,
    private readonly onData: (chunk: Buffer) => void,
  ) {}

  /** Starts reading (unless something holds it). */
  start(): void {
    if (this.attached) return;
    this.attached = true;
    this.src.on('data', this.onData);
    if (this.holds) this.src.pause();
  }

  /** Stops reading for good. */
  stop(): void {
    if (this.attached) this.src.off('data', this.onData);
    this.attached = false;
    this.src.pause();
  }

  hold(why: number): void {
    if (this.holds & why) return;
    this.holds |= why;
    this.src.pause();
  }

  release(why: number): void {
    if (!(this.holds & why)) return;
    this.holds &= ~why;
    if (this.holds === 0 && this.attached) this.src.resume();
  }

  held(why: number): boolean {
    return (this.holds & why) !== 0;
  }

  /** Writes to dst; when dst's buffer is full, holds this pump until it drains. */
  write(dst: Writable, b: Buffer): void {
    if (b.length === 0) return;
    if (!dst.writable) return;
    if (!dst.write(b) && !(this.holds & HOLD_DRAIN)) {
      this.hold(HOLD_DRAIN);
      dst.once('drain', () => this.release(HOLD_DRAIN));
    }
  }

  /** After recording: holds this pump while the recording store catches up. */
  checkRecorder(rec: SessionRecorder | undefined): void {
    if (!rec || !rec.pressure || this.holds & HOLD_RECORDER) return;
    this.hold(HOLD_RECORDER);
    rec.whenDrained(() => this.release(HOLD_RECORDER));
  }
}
