// Output slab for rewritten messages: a handler that rewrites many messages (the masker, one DataRow
// after another) writes them back to back into one buffer, and the relay sends each run of them as
// one slice. No Buffer per row, no per-row socket write: with every row of a large result rebuilt,
// per-row allocation and one writev entry per row cost more than the masking itself.
//
// A slab is never reused: its slices may sit in the socket's queue. A new one is allocated when a
// message does not fit (the message written so far moves with it), and the slab is let go at the
// end of each input chunk, so an idle session holds none.

const EMPTY = Buffer.alloc(0);
const MAX_SLAB = 1024 * 1024;
/** Below this a slab comes from Node's shared 8 KB pool (Buffer.allocUnsafe): a one-row result costs no allocation of its own. */
const POOLED = 4096;

export class OutSlab {
  /** The slab being written (it changes when `ensure` needs room). */
  buf: Buffer = EMPTY;
  /** Next byte to write. */
  pos = 0;
  /** A run of finished messages is waiting to be taken. */
  open = false;
  /** Size of the next slab (set from the input chunk: the output is about as large). */
  hint = POOLED;

  private runStart = 0;
  private msgStart = 0;
  private readonly done: Buffer[] = [];

  /** @param opening called before the first message of a run, so earlier output goes out first. */
  constructor(private readonly opening: () => void) {}

  /** Starts a message with at least n bytes free. */
  begin(n: number): void {
    if (!this.open) {
      this.opening();
      this.open = true;
      this.runStart = this.pos;
    }
    this.msgStart = this.pos;
    this.ensure(n);
  }

  /** At least n bytes free after pos; moves the message in progress to a new slab if needed. */
  ensure(n: number): void {
    if (this.buf.length - this.pos >= n) return;
    const partial = this.pos - this.msgStart;
    const size = Math.max(partial + n, Math.min(MAX_SLAB, this.hint));
    const slab = size < POOLED ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size);
    if (this.msgStart > this.runStart) this.done.push(this.buf.subarray(this.runStart, this.msgStart));
    this.buf.copy(slab, 0, this.msgStart, this.pos);
    this.buf = slab;
    this.runStart = 0;
    this.msgStart = 0;
    this.pos = partial;
  }

  /** Offset in buf where the message in progress starts. */
  get messageStart(): number {
    return this.msgStart;
  }

  /** Takes the finished runs, in order, into out; returns their total length. */
  drainTo(out: Buffer[]): number {
    let n = 0;
    for (const b of this.done) {
      out.push(b);
      n += b.length;
    }
    this.done.length = 0;
    if (this.pos > this.runStart) {
      const run = this.buf.subarray(this.runStart, this.pos);
      out.push(run);
      n += run.length;
    }
    this.runStart = this.pos;
    this.open = false;
    return n;
  }

  /** Lets the slab go (end of an input chunk). */
  release(): void {
    this.buf = EMPTY;
    this.pos = 0;
    this.runStart = 0;
    this.msgStart = 0;
  }
}
