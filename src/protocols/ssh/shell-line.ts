// Reconstructing the command lines of an interactive shell from keystrokes,
// for audit and deny rules. BEST EFFORT, and documented as such: Sluice sees
// keys, not what the shell does with them. Tab completion, history (arrows,
// Ctrl-R), cursor movement and editing in the middle of a line make the
// reconstruction approximate (flagged), and a user can always hide a command
// in a script, an alias or a here-document. Handled exactly: printable text,
// UTF-8, Backspace/DEL, Ctrl-U (kill line), Ctrl-W (kill word), Ctrl-C
// (abandon line), bracketed paste, Enter (CR or LF).
//
// Also watched on the output side: a full-screen program (alternate screen,
// e.g. vim, less, top) suspends line tracking until it exits, and a line typed
// right after a password/passphrase prompt is neither audited nor decided.

const MAX_LINE = 8192;

export interface EnterEvent {
  /** Offset of the Enter byte in the chunk given to feed(). */
  at: number;
  line: string;
  /** Editing Sluice could not follow (completion, history, cursor keys). */
  approximate: boolean;
  /** Typed after a password prompt: do not log, do not decide. */
  secret: boolean;
}

const enum Esc {
  None,
  Esc, // after ESC
  Csi, // ESC [ … until a final byte
  Ss3, // ESC O x
}

const PASTE_START = '200~';
const PASTE_END = '201~';
const ALT_ON = /\x1b\[\?(?:1049|1047|47)h/g;
const ALT_OFF = /\x1b\[\?(?:1049|1047|47)l/g;
const PASSWORD_PROMPT = /(pass(word|phrase)|PIN|token|secret)[^\n]{0,40}[:?]\s*$/i;

export class ShellLineTracker {
  private bytes: number[] = [];
  private approx = false;
  private esc = Esc.None;
  private csi = '';
  /** A full-screen program owns the terminal. */
  private fullScreen = false;
  /** The last bytes of output, to spot a password prompt. */
  private tail = '';
  private secretLine = false;

  /** Feed client keystrokes; returns every Enter in this chunk with the line it ends. */
  feed(chunk: Buffer): EnterEvent[] {
    const out: EnterEvent[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.esc !== Esc.None) {
        this.escape(c);
        continue;
      }
      if (c === 0x0d || c === 0x0a) {
        if (this.fullScreen) {
          this.reset();
          continue;
        }
        // CR LF from a non-pty client is one Enter.
        if (c === 0x0a && i > 0 && chunk[i - 1] === 0x0d) continue;
        const line = Buffer.from(this.bytes).toString('utf8');
        out.push({ at: i, line, approximate: this.approx, secret: this.secretLine });
        this.reset();
        continue;
      }
      if (this.bytes.length === 0 && !this.secretLine) this.secretLine = PASSWORD_PROMPT.test(this.tail);
      switch (c) {
        case 0x1b:
          this.esc = Esc.Esc;
          break;
        case 0x7f:
        case 0x08:
          this.backspace();
          break;
        case 0x15: // Ctrl-U
        case 0x03: // Ctrl-C
          this.reset();
          break;
        case 0x17: // Ctrl-W
          this.killWord();
          break;
        case 0x09: // Tab: completion we cannot see
        case 0x01: case 0x02: case 0x05: case 0x06: // Ctrl-A, B, E, F: cursor
        case 0x0b: case 0x0e: case 0x10: case 0x12: // Ctrl-K, N, P, R: kill/history/search
        case 0x14: case 0x19: // Ctrl-T, Ctrl-Y
          this.approx = true;
          break;
        default:
          if (c >= 0x20) {
            if (this.bytes.length < MAX_LINE) this.bytes.push(c);
            else this.approx = true;
          }
      }
    }
    return out;
  }

  /** Feed terminal output (after masking): full-screen programs and password prompts. */
  observeOutput(chunk: Buffer): void {
    const s = chunk.toString('latin1');
    if (s.includes('\x1b[?')) {
      const on = lastMatch(s, ALT_ON);
      const off = lastMatch(s, ALT_OFF);
      if (on > off) this.fullScreen = true;
      else if (off > on && this.fullScreen) {
        this.fullScreen = false;
        this.reset();
      }
    }
    this.tail = (this.tail + s).slice(-128);
  }

  get suspended(): boolean {
    return this.fullScreen;
  }

  private reset(): void {
    this.bytes.length = 0;
    this.approx = false;
    this.secretLine = false;
  }

  private backspace(): void {
    // Remove one UTF-8 character: continuation bytes, then the lead byte.
    while (this.bytes.length && (this.bytes[this.bytes.length - 1]! & 0xc0) === 0x80) this.bytes.pop();
    this.bytes.pop();
  }

  private killWord(): void {
    while (this.bytes.length && this.bytes[this.bytes.length - 1] === 0x20) this.bytes.pop();
    while (this.bytes.length && this.bytes[this.bytes.length - 1] !== 0x20) this.bytes.pop();
  }

  private escape(c: number): void {
    switch (this.esc) {
      case Esc.Esc:
        if (c === 0x5b) {
          this.esc = Esc.Csi;
          this.csi = '';
        } else if (c === 0x4f) this.esc = Esc.Ss3;
        else {
          // Alt+key: readline word motions and edits.
          this.esc = Esc.None;
          this.approx = true;
        }
        return;
      case Esc.Ss3:
        this.esc = Esc.None;
        this.approx = true; // SS3 arrows / Home / End
        return;
      case Esc.Csi:
        if (c >= 0x40 && c <= 0x7e) {
          this.esc = Esc.None;
          const seq = this.csi + String.fromCharCode(c);
          // Bracketed paste markers: the pasted text itself is typed text.
          if (seq !== PASTE_START && seq !== PASTE_END) this.approx = true;
        } else if (this.csi.length < 16) this.csi += String.fromCharCode(c);
        return;
      default:
        this.esc = Esc.None;
    }
  }
}

/** Index of the last match of a global regex in s, -1 if none. */
function lastMatch(s: string, re: RegExp): number {
  let last = -1;
  re.lastIndex = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) last = m.index;
  return last;
}
