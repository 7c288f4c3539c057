// Streaming masking of server-sent events (text/event-stream). Framing is kept
// byte for byte: line breaks (CRLF, LF, CR), field names, blank lines between
// events. Each line is masked on its own and flushed at its end, so an event
// goes out as soon as it is complete (nothing waits for the next event):
//   `data:` lines whose value (after one optional space) starts with '{', '['
//     or '"' go through JsonStreamMasker (field rules and detectors; a value
//     that turns out not to be JSON falls back to text, e.g. "[DONE]");
//   every other line (other data, event:, id:, comments) is scanned as text.
// A JSON document split over several data: lines is masked line by line as
// text (detectors only).

import type { MaskingCounts } from '../../session/session.js';
import { JsonStreamMasker, type JsonStreamOptions } from './json-stream.js';
import type { MaskingSet } from './ruleset.js';
import type { MaskContext } from './strategies.js';
import { StreamMasker } from './stream.js';

const PREFIX = 0; // the line's first bytes, until "data:" matches or not
const SPACE = 1; // after "data:": an optional space
const VALUE = 2; // the data value's first byte decides JSON or text
const LINE = 3; // inside a line, fed to the line's masker

const DATA = Buffer.from('data:');

interface LineMasker {
  push(b: Buffer): void;
  end(): void;
}

export class SseStreamMasker {
  private readonly columns: Record<string, number> = {};
  private readonly detectors: Record<string, number> = {};
  /** Lines whose JSON turned out malformed (masked as text). */
  malformedLines = 0;
  private changedAny = false;
  private st = PREFIX;
  private pfx = 0; // bytes of "data:" matched
  private line: LineMasker | null = null;
  private lineDone: (() => void) | null = null;

  constructor(
    private readonly set: MaskingSet,
    private readonly ctx: MaskContext,
    private readonly emit: (b: Buffer) => void,
    private readonly opts: JsonStreamOptions = {},
  ) {}

  get changed(): boolean {
    return this.changedAny;
  }

  get counts(): MaskingCounts {
    return { columns: { ...this.columns }, detectors: { ...this.detectors } };
  }

  push(buf: Buffer): void {
    const n = buf.length;
    let i = 0;
    while (i < n) {
      const c = buf[i]!;
      if (this.st === LINE) {
        let e = i;
        while (e < n && buf[e] !== 0x0a && buf[e] !== 0x0d) e++;
        if (e > i) this.line!.push(buf.subarray(i, e));
        if (e === n) return;
        this.endLine();
        this.emit(buf.subarray(e, e + 1));
        i = e + 1;
      } else if (c === 0x0a || c === 0x0d) {
        // A line ends before its value: what matched of "data:" (and the space) goes out as it was.
        if (this.st === PREFIX && this.pfx > 0) this.emit(DATA.subarray(0, this.pfx));
        this.emit(buf.subarray(i, i + 1));
        this.st = PREFIX;
        this.pfx = 0;
        i++;
      } else if (this.st === PREFIX) {
        if (c === DATA[this.pfx]) {
          i++;
          if (++this.pfx === DATA.length) {
            this.emit(DATA);
            this.st = SPACE;
          }
        } else {
          this.startLine(false);
          if (this.pfx > 0) this.line!.push(DATA.subarray(0, this.pfx));
          this.st = LINE;
        }
      } else if (this.st === SPACE) {
        if (c === 0x20) {
          this.emit(buf.subarray(i, i + 1));
          i++;
        }
        this.st = VALUE;
      } else {
        this.startLine(c === 0x7b || c === 0x5b || c === 0x22);
        this.st = LINE;
      }
    }
  }

  end(): void {
    if (this.st === LINE) this.endLine();
    else if (this.st === PREFIX && this.pfx > 0) this.emit(DATA.subarray(0, this.pfx));
    this.st = PREFIX;
    this.pfx = 0;
  }

  private startLine(json: boolean): void {
    const emit = this.emit;
    if (json) {
      const m = new JsonStreamMasker(this.set, this.ctx, emit, this.opts);
      this.line = m;
      this.lineDone = () => {
        if (m.flags.malformed) this.malformedLines++;
        this.add(m.counts, m.changed);
      };
    } else if (this.set.scanner !== null) {
      const m = new StreamMasker(this.set.scanner, this.set.strategyFor, this.ctx, emit);
      this.line = m;
      this.lineDone = () => this.add({ columns: {}, detectors: m.counts }, Object.keys(m.counts).length > 0);
    } else {
      this.line = { push: emit, end: () => {} };
      this.lineDone = null;
    }
  }

  private endLine(): void {
    this.line!.end();
    this.lineDone?.();
    this.line = null;
    this.lineDone = null;
    this.st = PREFIX;
    this.pfx = 0;
  }

  private add(c: MaskingCounts, changed: boolean): void {
    for (const [k, v] of Object.entries(c.columns)) this.columns[k] = (this.columns[k] ?? 0) + v;
    for (const [k, v] of Object.entries(c.detectors)) this.detectors[k] = (this.detectors[k] ?? 0) + v;
    if (changed) this.changedAny = true;
  }
}
