// The plaintext of one batch (before sealing, crypto.ts):
//
//   u16be  cont       bytes at the start that continue the previous batch's last frame
//   u32be  firstSeq   seq of the first frame that starts in this batch, 0xFFFFFFFF if none
//   cont bytes of the previous frame's payload
//   frames, each:  u32be len ‖ u32be seq ‖ u32be t_us_hi ‖ u32be t_us_lo ‖ u8 dir ‖ payload[len]
//
// A frame header (17 bytes) never straddles two batches; a payload may, so large frames are cut
// into batch-sized pieces and every batch value keeps the size that fills LMDB pages exactly.

export const BATCH_HEADER = 6;
export const FRAME_HEADER = 17;
export const NO_SEQ = 0xffff_ffff;

export class FormatError extends Error {}

/** A frame as parsed: buf[start..end) = seq ‖ t_us ‖ dir ‖ payload (the chain input), payload from start + 13. */
export type FrameSink = (seq: number, tUs: number, dir: number, buf: Buffer, start: number, end: number) => void;

/**
 * Reassembles frames from a session's batches, fed in order. Complete frames are handed out as views
 * into the batch buffer (copy them to keep them past the buffer's life); frames that span batches are
 * copied into their own buffer.
 */
export class FrameAssembler {
  /** seq the next frame must have. */
  nextSeq = 0;
  private partial: Buffer | null = null; // seq ‖ t_us ‖ dir ‖ payload of a frame still missing bytes
  private partialFill = 0;
  private skipCont = false;

  /** seq of the frame waiting for its continuation, or -1. */
  get pendingSeq(): number {
    return this.partial === null ? -1 : this.nextSeq - 1;
  }

  /** Start reading in the middle of a session, at this batch (its continuation bytes are skipped). */
  resumeAt(plain: Buffer): void {
    const first = plain.readUInt32BE(2);
    this.nextSeq = first === NO_SEQ ? 0 : first;
    this.partial = null;
    this.skipCont = true;
  }

  push(plain: Buffer, sink: FrameSink): void {
    const len = plain.length;
    if (len < BATCH_HEADER) throw new FormatError(`batch of ${len} bytes is shorter than its header`);
    const cont = plain.readUInt16BE(0);
    const firstSeq = plain.readUInt32BE(2);
    let off = BATCH_HEADER;
    const p = this.partial;
    if (this.skipCont) {
      this.skipCont = false;
      off += cont;
    } else if (p !== null) {
      const want = p.length - this.partialFill;
      const expect = Math.min(want, len - BATCH_HEADER);
      if (cont !== expect) throw new FormatError(`batch continues ${cont} bytes of frame ${this.pendingSeq}, expected ${expect}`);
      plain.copy(p, this.partialFill, off, off + cont);
      this.partialFill += cont;
      off += cont;
      if (this.partialFill === p.length) {
        this.partial = null;
        sink(p.readUInt32BE(0), readTime(p, 4), p[12]!, p, 0, p.length);
      }
    } else if (cont !== 0) {
      throw new FormatError(`batch starts with ${cont} continuation bytes but no frame is open`);
    }
    if (off < len) {
      if (firstSeq !== this.nextSeq) throw new FormatError(`batch's first frame is seq ${firstSeq}, expected ${this.nextSeq}`);
    } else if (firstSeq !== NO_SEQ) {
      throw new FormatError(`batch names first seq ${firstSeq} but holds no frame start`);
    }
    while (off < len) {
      if (len - off < FRAME_HEADER) throw new FormatError(`frame header cut at batch end (${len - off} bytes)`);
      const flen = plain.readUInt32BE(off);
      const seq = plain.readUInt32BE(off + 4);
      if (seq !== this.nextSeq) throw new FormatError(`frame seq ${seq} where ${this.nextSeq} was expected`);
      this.nextSeq = seq + 1;
      const end = off + FRAME_HEADER + flen;
      if (end <= len) {
        sink(seq, readTime(plain, off + 8), plain[off + 16]!, plain, off + 4, end);
        off = end;
      } else {
        const whole = Buffer.allocUnsafe(13 + flen);
        plain.copy(whole, 0, off + 4, len);
        this.partial = whole;
        this.partialFill = len - off - 4;
        off = len;
      }
    }
  }
}

function readTime(b: Buffer, off: number): number {
  return b.readUInt32BE(off) * 0x1_0000_0000 + b.readUInt32BE(off + 4);
}
