// The input side of an interactive shell: every command is audited and
// decided before the shell runs it.
//
// With a pty, keystrokes are forwarded as typed (the shell echoes them) and the
// decision is taken at Enter: a denied line never gets its Enter; Sluice sends
// Ctrl-U and an empty Enter instead (the shell clears the line and shows a
// fresh prompt) and tells the user why. A `review` line waits for an approver
// with its Enter held back (Ctrl-C withdraws it).
// Without a pty (`ssh -T host < script`, `ssh host bash`), input is held per
// command and forwarded only once allowed, so a denied command never reaches
// the shell at all.
//
// A command may span lines: an open quote, `if … fi`, `for … done`, a trailing
// backslash, a here-document. Such lines are collected (with a pty their Enter
// goes through, so the shell shows its continuation prompt) and the whole
// command is decided at the line that completes it; a denied multi-line command
// with a pty is abandoned with Ctrl-C.

import type { Session } from '../../session/session.js';
import type { Decision } from '../../policy/engine.js';
import { analyzeShell } from '../../policy/shell/facts.js';
import { CONTINUE, type Action, type Held, type Refusal, type Transport } from '../../governance/pipeline.js';
import { ShellLineTracker, type EnterEvent } from './shell-line.js';

// Ctrl-U kills the typed line (readline and the tty's canonical mode alike); the CR then
// runs the empty line, so the shell prints a fresh prompt under Sluice's notice.
const KILL_LINE = Buffer.from([0x15, 0x0d]);
// A multi-line command has earlier lines in the shell's buffer: Ctrl-C drops them all.
const INTERRUPT = Buffer.from([0x03]);
const NL = 0x0a;
/** Input queued while a command waits for approval before the channel is paused. */
const MAX_QUEUED = 64 * 1024;
/** A command is decided as it stands once it grows beyond these. */
const MAX_BLOCK_LINES = 1000;
const MAX_BLOCK_BYTES = 1024 * 1024;
/** `<<WORD`, `<<-'WORD'`, `<< "WORD"` (not `<<<`). */
const HEREDOC = /(?<!<)<<(?!<)-?\s*(['"]?)([^\s'"<>;&|()]+)\1/g;

export interface ShellGateHooks {
  /** Bytes for the shell. */
  forward(b: Buffer): void;
  /** A notice for the user (stderr without a pty, the terminal with one). */
  tell(text: string): void;
  /** Pause / resume reading client input. */
  pause(): void;
  resume(): void;
  /** Record a typed command (after its decision). */
  line(ev: { line: string; approximate?: boolean; decision?: string; rule?: string }): void;
}

/** Whether shell text stops in the middle of a command (an open quote or compound command, a trailing backslash). */
export function incomplete(text: string): boolean {
  if (/(^|[^\\])(\\\\)*\\$/.test(text)) return true;
  const err = analyzeShell(text).parse_error;
  if (!err) return false;
  if (/^(unterminated|missing)\b/.test(err)) return true;
  const at = /at offset (\d+)/.exec(err);
  return !!at && Number(at[1]) >= text.trimEnd().length;
}

/** Collects the lines of one command until it is complete. */
class Block {
  lines: string[] = [];
  bytes = 0;
  approximate = false;
  private heredocs: string[] = [];

  /** Adds a line; returns the whole command once complete, null while it goes on. */
  add(line: string, approximate = false): string | null {
    this.lines.push(line);
    this.bytes += line.length + 1;
    this.approximate ||= approximate;
    if (this.heredocs.length) {
      const d = this.heredocs[0]!;
      if (line === d || line.replace(/^\t+/, '') === d) this.heredocs.shift();
    } else {
      for (const m of line.matchAll(HEREDOC)) this.heredocs.push(m[2]!);
    }
    const text = this.lines.join('\n');
    const full = this.lines.length >= MAX_BLOCK_LINES || this.bytes >= MAX_BLOCK_BYTES;
    if (!full && (this.heredocs.length > 0 || incomplete(text))) return null;
    this.lines = [];
    this.bytes = 0;
    this.heredocs = [];
    return text;
  }

  get open(): boolean {
    return this.lines.length > 0;
  }

  takeApproximate(): boolean {
    const a = this.approximate;
    this.approximate = false;
    return a;
  }
}

export class ShellGate implements Transport {
  private readonly tracker = new ShellLineTracker();
  private readonly block = new Block();
  /** Without a pty: input of the current command not yet forwarded. */
  private held: Buffer[] = [];
  private heldLen = 0;
  /** Without a pty: where the current (unterminated) line starts in `held`. */
  private lineStart = 0;
  /** Input that arrived while a command waited for approval. */
  private queue: Buffer[] = [];
  private queued = 0;
  private waiting: Held | null = null;
  /** EOF that arrived while a command waited: ends the input once the queue before it is through. */
  private endAfter: (() => void) | null = null;
  private closed = false;
  /** The command being governed (one object per shell; the pipeline copies what it keeps). */
  private readonly action: Action = { text: '', analyze: analyzeShell, noun: 'command' };
  private approximate = false;
  /** What to do with the command being governed once it is decided. */
  private done: (ok: boolean) => void = () => {};

  constructor(
    private readonly session: Session,
    private readonly pty: boolean,
    private readonly hooks: ShellGateHooks,
  ) {}

  /** Terminal output (after masking), for full-screen programs and password prompts. */
  output(chunk: Buffer): void {
    if (this.pty) this.tracker.observeOutput(chunk);
  }

  input(chunk: Buffer): void {
    if (this.closed) return;
    if (this.waiting) {
      if (chunk.includes(0x03)) this.waiting.withdraw('cancelled by the user (Ctrl-C)');
      this.queue.push(Buffer.from(chunk));
      this.queued += chunk.length;
      if (this.queued > MAX_QUEUED) this.hooks.pause();
      return;
    }
    if (this.pty) this.ptyInput(chunk, 0, this.tracker.feed(chunk), 0);
    else this.lineInput(chunk, 0);
  }

  /** End of client input (EOF): what is held is decided like the rest. */
  end(then: () => void): void {
    // A held command (and what was typed after it) goes first: EOF now would reach
    // the shell before the approved command does, and it would never run.
    if (this.waiting) {
      this.endAfter = then;
      return;
    }
    if (this.pty || this.heldLen === 0) return then();
    const all = Buffer.concat(this.held, this.heldLen);
    this.held = [];
    this.heldLen = 0;
    const last = all.toString('utf8', this.lineStart);
    this.lineStart = 0;
    const text = this.block.add(last) ?? this.flushBlock();
    this.decide(text, false, (ok) => {
      if (ok) this.hooks.forward(all);
      then();
    });
  }

  close(reason: string): void {
    this.closed = true;
    this.waiting?.withdraw(reason);
  }

  /** The block as it stands (input ended inside a command). */
  private flushBlock(): string {
    const text = this.block.lines.join('\n');
    this.block.lines = [];
    return text;
  }

  // ---- with a pty: forward keystrokes, decide at Enter ----

  private ptyInput(chunk: Buffer, from: number, events: EnterEvent[], k: number): void {
    let pos = from;
    for (; k < events.length; k++) {
      const ev = events[k]!;
      if (ev.at > pos) this.hooks.forward(chunk.subarray(pos, ev.at));
      pos = ev.at + 1;
      const enter = chunk.subarray(ev.at, ev.at + 1);
      if (ev.secret || (ev.line.trim() === '' && !this.block.open)) {
        this.hooks.forward(enter);
        continue;
      }
      const multi = this.block.open;
      const text = this.block.add(ev.line, ev.approximate);
      if (text === null) {
        // The command goes on: the shell shows its continuation prompt.
        this.hooks.forward(enter);
        continue;
      }
      let sync = true;
      let decidedNow = false;
      const next = k + 1;
      this.decide(text, this.block.takeApproximate(), (ok) => {
        this.hooks.forward(ok ? enter : multi ? INTERRUPT : KILL_LINE);
        if (sync) decidedNow = true;
        else {
          // Decided after a wait: carry on with the rest of this chunk, then the queue.
          this.ptyInput(chunk, pos, events, next);
          this.drainQueue();
        }
      });
      sync = false;
      if (!decidedNow) return; // waiting for approval
    }
    if (pos < chunk.length) this.hooks.forward(chunk.subarray(pos));
  }

  // ---- without a pty: hold each command until it is allowed ----

  private lineInput(chunk: Buffer, from: number): void {
    let pos = from;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        this.hold(chunk.subarray(pos));
        if (this.heldLen - this.lineStart > MAX_BLOCK_BYTES) {
          // A "line" this long is not typed shell input: decide it as it stands.
          if (!this.completeLine()) return;
        }
        return;
      }
      this.hold(chunk.subarray(pos, nl + 1));
      pos = nl + 1;
      if (!this.completeLine(() => this.lineInput(chunk, pos))) return;
    }
  }

  private hold(b: Buffer): void {
    this.held.push(Buffer.from(b));
    this.heldLen += b.length;
  }

  /**
   * The held input ends a line: adds it to the block and, when the command is
   * complete, decides it. Returns false while waiting for an approval (then
   * `resume` continues the caller's loop).
   */
  private completeLine(resume?: () => void): boolean {
    const all = Buffer.concat(this.held, this.heldLen);
    const line = all.toString('utf8', this.lineStart).replace(/\r?\n$/, '');
    const text = this.block.add(line);
    if (text === null) {
      this.held = [all];
      this.lineStart = all.length;
      return true;
    }
    this.held = [];
    this.heldLen = 0;
    this.lineStart = 0;
    const blank = text.trim() === '' || /^\s*#[^\n]*$/.test(text);
    let sync = true;
    let decided = false;
    const done = (ok: boolean) => {
      if (ok) this.hooks.forward(all);
      decided = true;
      if (!sync) {
        resume?.();
        this.drainQueue();
      }
    };
    if (blank) done(true);
    else this.decide(text, false, done);
    sync = false;
    return decided;
  }

  private drainQueue(): void {
    if (this.waiting) return;
    const q = this.queue;
    this.queue = [];
    this.queued = 0;
    this.hooks.resume();
    for (let i = 0; i < q.length; i++) {
      this.input(q[i]!);
      if (this.waiting) {
        this.queue.push(...q.slice(i + 1));
        return;
      }
    }
    const end = this.endAfter;
    if (end) {
      this.endAfter = null;
      this.end(end);
    }
  }

  // ---- the governance pipeline ----

  /** Decides a command; calls done(allowed) now, or after an approval. */
  private decide(text: string, approximate: boolean, done: (ok: boolean) => void): void {
    const a = this.action;
    a.text = text;
    this.approximate = approximate;
    this.done = done;
    if (this.session.gov.govern(a, this) === CONTINUE) done(true);
  }

  /** After the decision is recorded, before any refusal: the typed command joins the recording. */
  decided(d: Decision | null): void {
    this.hooks.line({ line: this.action.text, approximate: this.approximate || undefined, decision: d?.action, rule: d?.rule });
  }

  refuse(r: Refusal): void {
    this.waiting = null;
    if (this.closed) return;
    this.hooks.tell(`sluice: ${r.message}`);
    this.done(false);
  }

  proceed(): void {
    this.waiting = null;
    if (this.closed) return;
    this.done(true);
  }

  notify(text: string): void {
    if (!this.closed) this.hooks.tell(`sluice: ${text}`);
  }

  pause(held: Held): void {
    this.waiting = held;
  }

  resume(): void {}
}
