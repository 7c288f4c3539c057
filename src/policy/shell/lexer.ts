// A small parser for POSIX sh / bash command lines, for policy analysis only.
//
// Why not a library: `shell-quote` (the usual npm choice) does not nest `$( )`
// or backticks, does not know `<( )`, here-documents, `$'…'`, `case`, `{ …; }`
// or keywords, and turns some operators into objects while leaving others in
// words; bash-parser is unmaintained. A policy parser must not be fooled by
// what a real shell accepts, so this one follows bash's rules for what it
// handles and refuses (ShellSyntaxError → parse_error) what it cannot follow.
//
// What it understands: blanks and line continuations; '…', "…", $'…' (ANSI-C
// escapes decoded), $"…"; backslash escapes; # comments; ; & && || | |& and
// newlines; ( subshells ), { groups; }, if/while/until/for/select/case
// compounds, function definitions, [[ … ]], (( … )); $VAR ${…} $( ) ` `
// $(( )) <( ) >( ) (nested to any depth, commands inside are parsed);
// redirections [n]< [n]> >| >> <> &> &>> >& <& with numeric or {var} fds,
// here-documents (<< and <<-, bodies read after the line, expansions in
// unquoted ones parsed) and here-strings (<<<); NAME=value prefixes and
// NAME=(array) assignments.
//
// What it produces: every simple command in the text, including those nested
// in substitutions and compound commands, in the order the parser meets them
// (a substitution's commands come before the command whose word holds it).
// Words keep quote-removed text; expansions stay as written ("$HOME/x") and
// mark the word non-static.

export class ShellSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'ShellSyntaxError';
  }
}

export interface ShellWord {
  /** Quote-removed text; parameter, command and arithmetic expansions are kept as written. */
  value: string;
  /** No expansion at all: `value` is exactly what the program receives. */
  static: boolean;
  /** Holds a command substitution ($( ) or backticks) or is a process substitution. */
  substituted: boolean;
  /** `<( )` or `>( )`: the word is a /dev/fd path fed by (or feeding) a command. */
  procsub?: '<' | '>';
  /** Unquoted glob characters or brace expansion ({a,b}, {1..3}): may become other or several words. */
  pattern: boolean;
  /** Some part of it was quoted or escaped (so it is never a keyword). */
  quoted: boolean;
  start: number;
  end: number;
}

export interface ShellRedirect {
  /** '<' '>' '>|' '>>' '<>' '&>' '&>>' '>&' '<&' '<<' '<<-' '<<<' */
  op: string;
  /** Explicit fd number, when written (2>). */
  fd?: number;
  target: ShellWord;
  /** Here-documents: the body as written, and whether the delimiter was quoted (no expansion in the body). */
  body?: string;
  literal?: boolean;
}

export interface SimpleCommand {
  assigns: ShellWord[];
  words: ShellWord[];
  redirects: ShellRedirect[];
  /** Its stdin is a pipe (it follows `|` in a pipeline, or sits in a piped compound or a `>( )`). */
  pipedIn: boolean;
  /** Its source text. */
  text: string;
  /** Where it was found: '' at top level, else '$( )', '` `', '<( )', '>( )', '<<', 'function'. */
  context: string;
}

const MAX_DEPTH = 64;
const META = new Set([' ', '\t', '\n', ';', '&', '|', '(', ')', '<', '>']);
const RESERVED = new Set(['!', 'case', 'coproc', 'do', 'done', 'elif', 'else', 'esac', 'fi', 'for', 'function', 'if', 'select', 'then', 'time', 'until', 'while', '{', '}', '[[']);
const KEYWORD_RE = /(?:[a-z]+|!|\{|\}|\[\[)(?=[\s;&|()<>]|$)/y;
const ASSIGN_RE = /^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=/;

interface PendingHeredoc {
  redirect: ShellRedirect;
  strip: boolean;
  delimiter: string;
}

/** Parses a whole command line. Throws ShellSyntaxError. */
export function parseShell(src: string, depth = 0): SimpleCommand[] {
  const p = new Parser(src, depth, '');
  p.parseProgram();
  return p.commands;
}

/** Decodes the body of $'…' (ANSI-C quoting). */
export function decodeAnsiC(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\' || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const n = s[++i]!;
    const simple: Record<string, string> = { a: '\x07', b: '\b', e: '\x1b', E: '\x1b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', "'": "'", '"': '"', '?': '?' };
    if (n in simple) out += simple[n];
    else if (n >= '0' && n <= '7') {
      let j = i;
      while (j < s.length && j < i + 3 && s[j]! >= '0' && s[j]! <= '7') j++;
      out += String.fromCharCode(parseInt(s.slice(i, j), 8) & 0xff);
      i = j - 1;
    } else if (n === 'x' || n === 'u' || n === 'U') {
      const max = n === 'x' ? 2 : n === 'u' ? 4 : 8;
      let j = i + 1;
      while (j < s.length && j < i + 1 + max && /[0-9a-fA-F]/.test(s[j]!)) j++;
      if (j === i + 1) out += '\\' + n;
      else {
        const cp = parseInt(s.slice(i + 1, j), 16);
        out += cp <= 0x10ffff ? String.fromCodePoint(cp) : '';
      }
      i = j - 1;
    } else if (n === 'c' && i + 1 < s.length) {
      out += String.fromCharCode(s.charCodeAt(++i) & 0x1f);
    } else out += '\\' + n;
  }
  return out;
}

class Parser {
  readonly commands: SimpleCommand[] = [];
  private pos = 0;
  private nesting = 0;
  private heredocs: PendingHeredoc[] = [];
  /** Set while parsing a compound whose stdin is a pipe: its commands inherit it. */
  private pipedDepth = 0;

  constructor(
    private readonly s: string,
    private readonly depth: number,
    private context: string,
  ) {
    if (depth > MAX_DEPTH) throw new ShellSyntaxError('command nesting is too deep', 0);
  }

  private fail(msg: string, at = this.pos): never {
    throw new ShellSyntaxError(msg, at);
  }

  private enter(): void {
    if (++this.nesting + this.depth > MAX_DEPTH) this.fail('command nesting is too deep');
  }

  parseProgram(): void {
    this.parseList(new Set(), false, false);
    if (this.pos < this.s.length) this.fail(`unexpected ${JSON.stringify(this.s[this.pos])}`);
  }

  // ------------------------------------------------------------ blanks, newlines

  private skipBlanks(): void {
    const s = this.s;
    for (;;) {
      const c = s[this.pos];
      if (c === ' ' || c === '\t' || c === '\r') this.pos++;
      else if (c === '\\' && s[this.pos + 1] === '\n') this.pos += 2;
      else return;
    }
  }

  private skipComment(): void {
    if (this.s[this.pos] !== '#') return;
    const nl = this.s.indexOf('\n', this.pos);
    this.pos = nl < 0 ? this.s.length : nl;
  }

  /** Blanks, comments and newlines (reading pending here-document bodies at each newline). */
  private skipLinebreaks(): void {
    for (;;) {
      this.skipBlanks();
      this.skipComment();
      if (this.s[this.pos] !== '\n') return;
      this.pos++;
      this.readHeredocBodies();
    }
  }

  private readHeredocBodies(): void {
    const pending = this.heredocs;
    this.heredocs = [];
    for (const h of pending) {
      const s = this.s;
      let body = '';
      while (this.pos < s.length) {
        const nl = s.indexOf('\n', this.pos);
        const end = nl < 0 ? s.length : nl;
        let line = s.slice(this.pos, end);
        this.pos = nl < 0 ? s.length : nl + 1;
        if (h.strip) line = line.replace(/^\t+/, '');
        if (line === h.delimiter || line === h.delimiter + '\r') break;
        body += line + '\n';
      }
      // (bash accepts a here-document ended by end of input, with a warning: so do we)
      h.redirect.body = body;
      if (!h.redirect.literal) {
        const sub = new Parser(body, this.depth + this.nesting + 1, '<<');
        sub.scanExpansions();
        this.commands.push(...sub.commands);
      }
    }
  }

  /** The reserved word at the cursor, if any (only meaningful where a command starts). */
  private peekKeyword(): string | undefined {
    KEYWORD_RE.lastIndex = this.pos;
    const m = KEYWORD_RE.exec(this.s);
    return m && RESERVED.has(m[0]) ? m[0] : undefined;
  }

  private expectKeyword(kw: string): void {
    this.skipLinebreaks();
    if (this.peekKeyword() !== kw) this.fail(`expected "${kw}"`);
    this.pos += kw.length;
  }

  // ------------------------------------------------------------ lists

  /**
   * A list of and-or lists up to end of input, a `)` (when `paren`), a stop
   * keyword in command position (not consumed), or a case terminator (consumed).
   */
  private parseList(stop: Set<string>, paren: boolean, caseItem: boolean): void {
    this.enter();
    const s = this.s;
    for (;;) {
      this.skipLinebreaks();
      const c = s[this.pos];
      if (c === undefined) {
        if (paren) this.fail('missing ")"');
        if (stop.size) this.fail(`missing "${[...stop].join('" or "')}"`);
        break;
      }
      if (c === ')') {
        if (paren) break;
        this.fail('unexpected ")"');
      }
      if (caseItem && c === ';' && (s[this.pos + 1] === ';' || s[this.pos + 1] === '&')) {
        this.pos += s.startsWith(';;&', this.pos) ? 3 : 2;
        break;
      }
      const kw = this.peekKeyword();
      if (kw && stop.has(kw)) break;
      this.parseAndOr();
      this.skipBlanks();
      const t = s[this.pos];
      if (t === ';') {
        if (caseItem && (s[this.pos + 1] === ';' || s[this.pos + 1] === '&')) continue;
        if (s[this.pos + 1] === ';') this.fail('unexpected ";;"');
        this.pos++;
      } else if (t === '&') this.pos++;
      else if (t !== undefined && t !== '\n' && t !== ')' && t !== '#') this.fail(`unexpected ${JSON.stringify(t)}`);
    }
    this.nesting--;
  }

  private parseAndOr(): void {
    this.parsePipeline();
    for (;;) {
      this.skipBlanks();
      const two = this.s.slice(this.pos, this.pos + 2);
      if (two !== '&&' && two !== '||') return;
      this.pos += 2;
      this.skipLinebreaks();
      this.parsePipeline();
    }
  }

  private parsePipeline(): void {
    let piped = false;
    for (;;) {
      this.skipBlanks();
      this.parseCommand(piped);
      this.skipBlanks();
      const s = this.s;
      if (s[this.pos] === '|' && s[this.pos + 1] !== '|') {
        this.pos += s[this.pos + 1] === '&' ? 2 : 1;
        this.skipLinebreaks();
        piped = true;
        continue;
      }
      return;
    }
  }

  // ------------------------------------------------------------ commands

  private parseCommand(piped: boolean): void {
    const s = this.s;
    const c = s[this.pos];
    if (c === undefined || c === ';' || c === '&' || c === '|' || c === ')' || c === '\n') {
      this.fail(c === undefined ? 'expected a command' : `unexpected ${JSON.stringify(c)}`);
    }
    const first = this.commands.length;
    if (piped) this.pipedDepth++;
    try {
      if (c === '(') {
        if (s[this.pos + 1] === '(' && this.tryArithmetic(this.pos + 2)) {
          // (( expression )): the arithmetic command; substitutions inside were parsed.
        } else {
          this.pos++;
          this.parseList(new Set(), true, false);
          this.pos++; // ')'
        }
        this.compoundTail(first);
        return;
      }
      const kw = this.peekKeyword();
      if (kw) {
        this.parseKeyword(kw, first);
        return;
      }
      this.parseSimple();
    } finally {
      if (piped) this.pipedDepth--;
    }
  }

  /** Redirections after a compound command apply to every command inside it. */
  private compoundTail(first: number): void {
    const redirects: ShellRedirect[] = [];
    for (;;) {
      this.skipBlanks();
      const r = this.tryRedirect();
      if (!r) break;
      redirects.push(r);
    }
    const c = this.s[this.pos];
    if (c !== undefined && !META.has(c) && c !== '#') this.fail(`unexpected word after a compound command`);
    if (c === '(') this.fail('unexpected "("');
    if (redirects.length) {
      let applied = false;
      for (let i = first; i < this.commands.length; i++) {
        this.commands[i]!.redirects.push(...redirects);
        applied = true;
      }
      if (!applied) this.push([], [], redirects, this.pos, this.pos);
    }
  }

  private parseKeyword(kw: string, first: number): void {
    const s = this.s;
    this.pos += kw.length;
    switch (kw) {
      case '{':
        this.parseList(new Set(['}']), false, false);
        this.expectKeyword('}');
        break;
      case 'if': {
        this.parseList(new Set(['then']), false, false);
        this.expectKeyword('then');
        for (;;) {
          this.parseList(new Set(['elif', 'else', 'fi']), false, false);
          const k = this.peekKeyword()!;
          this.pos += k.length;
          if (k === 'fi') break;
          if (k === 'elif') {
            this.parseList(new Set(['then']), false, false);
            this.expectKeyword('then');
          } else {
            this.parseList(new Set(['fi']), false, false);
            this.expectKeyword('fi');
            break;
          }
        }
        break;
      }
      case 'while':
      case 'until':
        this.parseList(new Set(['do']), false, false);
        this.expectKeyword('do');
        this.parseList(new Set(['done']), false, false);
        this.expectKeyword('done');
        break;
      case 'for':
      case 'select': {
        this.skipBlanks();
        if (s.startsWith('((', this.pos)) {
          if (!this.tryArithmetic(this.pos + 2, true)) this.fail('bad arithmetic for loop');
        } else {
          const name = this.readWord();
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name.value)) this.fail(`bad for-loop variable ${JSON.stringify(name.value)}`, name.start);
          this.skipLinebreaks();
          if (this.peekKeyword() === undefined && s.startsWith('in', this.pos) && (META.has(s[this.pos + 2] ?? ' ') || s[this.pos + 2] === undefined)) {
            this.pos += 2;
            for (;;) {
              this.skipBlanks();
              const c = s[this.pos];
              if (c === undefined || c === ';' || c === '\n') break;
              if (c === '#') {
                this.skipComment();
                break;
              }
              if (META.has(c)) this.fail(`unexpected ${JSON.stringify(c)} in a for list`);
              this.readWord();
            }
          }
        }
        this.skipBlanks();
        if (s[this.pos] === ';') this.pos++;
        this.skipLinebreaks();
        if (this.peekKeyword() === '{') {
          this.pos++;
          this.parseList(new Set(['}']), false, false);
          this.expectKeyword('}');
        } else {
          this.expectKeyword('do');
          this.parseList(new Set(['done']), false, false);
          this.expectKeyword('done');
        }
        break;
      }
      case 'case': {
        this.skipBlanks();
        if (this.atWordEnd()) this.fail('expected a word after "case"');
        this.readWord();
        this.skipLinebreaks();
        if (!(s.startsWith('in', this.pos) && (s[this.pos + 2] === undefined || META.has(s[this.pos + 2]!)))) this.fail('expected "in"');
        this.pos += 2;
        for (;;) {
          this.skipLinebreaks();
          if (this.peekKeyword() === 'esac') {
            this.pos += 4;
            break;
          }
          if (this.pos >= s.length) this.fail('missing "esac"');
          if (s[this.pos] === '(') this.pos++;
          for (;;) {
            this.skipBlanks();
            if (this.atWordEnd()) this.fail('expected a case pattern');
            this.readWord();
            this.skipBlanks();
            if (s[this.pos] === '|') {
              this.pos++;
              continue;
            }
            if (s[this.pos] === ')') {
              this.pos++;
              break;
            }
            this.fail('expected ")" after a case pattern');
          }
          this.parseList(new Set(['esac']), false, true);
        }
        break;
      }
      case 'function': {
        this.skipBlanks();
        if (this.atWordEnd()) this.fail('expected a function name');
        this.readWord();
        this.skipBlanks();
        if (s[this.pos] === '(') {
          this.pos++;
          this.skipBlanks();
          if (s[this.pos] !== ')') this.fail('expected ")"');
          this.pos++;
        }
        this.functionBody();
        return;
      }
      case '!':
      case 'time':
      case 'coproc':
        this.skipBlanks();
        if (kw === 'time' && /^-p(?=[\s;&|]|$)/.test(s.slice(this.pos, this.pos + 3))) this.pos += 2;
        this.skipBlanks();
        this.parseCommand(false);
        return;
      case '[[':
        this.parseConditional();
        break;
      default:
        // then, else, elif, fi, do, done, esac, } where no compound is open
        this.fail(`unexpected "${kw}"`);
    }
    this.compoundTail(first);
  }

  private functionBody(): void {
    this.skipLinebreaks();
    const saved = this.context;
    this.context = 'function';
    try {
      this.parseCommand(false);
    } finally {
      this.context = saved;
    }
  }

  /** [[ … ]]: operators are not redirections there; only substitutions matter. */
  private parseConditional(): void {
    const s = this.s;
    for (;;) {
      this.skipBlanks();
      const c = s[this.pos];
      if (c === undefined) this.fail('missing "]]"');
      if (c === '\n') {
        this.pos++;
        continue;
      }
      if (s.startsWith(']]', this.pos) && (s[this.pos + 2] === undefined || META.has(s[this.pos + 2]!))) {
        this.pos += 2;
        return;
      }
      if ('&|()<>!;'.includes(c)) {
        this.pos++;
        continue;
      }
      this.readWord();
    }
  }

  private atWordEnd(): boolean {
    const c = this.s[this.pos];
    return c === undefined || META.has(c);
  }

  private push(assigns: ShellWord[], words: ShellWord[], redirects: ShellRedirect[], start: number, end: number): void {
    this.commands.push({ assigns, words, redirects, pipedIn: this.pipedDepth > 0, text: this.s.slice(start, end).trim(), context: this.context });
  }

  private parseSimple(): void {
    const s = this.s;
    const start = this.pos;
    const assigns: ShellWord[] = [];
    const words: ShellWord[] = [];
    const redirects: ShellRedirect[] = [];
    let end = this.pos;
    for (;;) {
      this.skipBlanks();
      const c = s[this.pos];
      if (c === undefined || c === ';' || c === '|' || c === ')' || c === '\n') break;
      if (c === '&' && s[this.pos + 1] !== '>') break;
      if (c === '#') {
        this.skipComment();
        break;
      }
      if (c === '(') {
        if (words.length === 1 && assigns.length === 0 && redirects.length === 0 && !words[0]!.quoted) {
          // name() body: a function definition. Its body is analysed like any command.
          this.pos++;
          this.skipBlanks();
          if (s[this.pos] !== ')') this.fail('expected ")" in a function definition');
          this.pos++;
          this.functionBody();
          return;
        }
        this.fail('unexpected "("');
      }
      if ((c === '<' || c === '>') && s[this.pos + 1] === '(') {
        words.push(this.readProcSub());
        end = this.pos;
        continue;
      }
      const r = this.tryRedirect();
      if (r) {
        redirects.push(r);
        end = this.pos;
        continue;
      }
      const w = this.readWord();
      const assignment = ASSIGN_RE.test(s.slice(w.start, w.end));
      if (assignment && s[this.pos] === '(' && s[this.pos - 1] === '=') this.readArray(w); // a=(1 2), declare -a a=(…)
      if (words.length === 0 && assignment) assigns.push(w);
      else words.push(w);
      end = this.pos;
    }
    if (!words.length && !assigns.length && !redirects.length) this.fail('expected a command');
    this.push(assigns, words, redirects, start, end);
  }

  private readArray(w: ShellWord): void {
    const s = this.s;
    this.pos++;
    for (;;) {
      this.skipLinebreaks();
      const c = s[this.pos];
      if (c === undefined) this.fail('missing ")" in an array assignment');
      if (c === ')') {
        this.pos++;
        break;
      }
      if (META.has(c)) this.fail(`unexpected ${JSON.stringify(c)} in an array assignment`);
      const e = this.readWord();
      if (!e.static) w.static = false;
      if (e.substituted) w.substituted = true;
    }
    w.value = s.slice(w.start, this.pos);
    w.end = this.pos;
  }

  /** A redirection at the cursor (with its fd prefix), or undefined (cursor unchanged). */
  private tryRedirect(): ShellRedirect | undefined {
    const s = this.s;
    const start = this.pos;
    let i = this.pos;
    let fd: number | undefined;
    const m = /^(?:[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\})(?=[<>])/.exec(s.slice(i, i + 32));
    if (m) {
      if (m[0][0] !== '{') fd = Number(m[0]);
      i += m[0].length;
    }
    let op: string | undefined;
    for (const o of ['&>>', '&>', '<<<', '<<-', '<<', '<>', '<&', '<', '>>', '>|', '>&', '>']) {
      if (s.startsWith(o, i)) {
        if (o[0] === '&' && m) continue;
        op = o;
        break;
      }
    }
    if (!op) return undefined;
    if ((op === '<' || op === '>') && s[i + 1] === '(' && !m) return undefined; // process substitution
    this.pos = i + op.length;
    this.skipBlanks();
    const c = s[this.pos];
    if (c === undefined || (META.has(c) && !((c === '<' || c === '>') && s[this.pos + 1] === '('))) {
      this.fail(`expected a word after ${op}`, start);
    }
    const target = c === '<' || c === '>' ? this.readProcSub() : this.readWord();
    const r: ShellRedirect = { op, target, ...(fd !== undefined && { fd }) };
    if (op === '<<' || op === '<<-') {
      r.literal = target.quoted; // <<'EOF', <<"EOF", <<\EOF: no expansion in the body
      this.heredocs.push({ redirect: r, strip: op === '<<-', delimiter: target.value });
    }
    return r;
  }

  // ------------------------------------------------------------ words

  private readProcSub(): ShellWord {
    const start = this.pos;
    const kind = this.s[this.pos] as '<' | '>';
    this.pos += 2;
    const saved = this.context;
    this.context = kind === '<' ? '<( )' : '>( )';
    if (kind === '>') this.pipedDepth++;
    try {
      this.parseList(new Set(), true, false);
    } finally {
      this.context = saved;
      if (kind === '>') this.pipedDepth--;
    }
    this.pos++; // ')'
    return { value: this.s.slice(start, this.pos), static: false, substituted: true, procsub: kind, pattern: false, quoted: false, start, end: this.pos };
  }

  /** One word at the cursor (which is not a blank or an operator). */
  private readWord(): ShellWord {
    const s = this.s;
    const w: ShellWord = { value: '', static: true, substituted: false, pattern: false, quoted: false, start: this.pos, end: this.pos };
    let braces = 0;
    let braceList = false;
    let bracket = false;
    for (;;) {
      const c = s[this.pos];
      if (c === undefined || META.has(c)) break;
      switch (c) {
        case '\\': {
          const n = s[this.pos + 1];
          if (n === '\n') this.pos += 2;
          else if (n === undefined) {
            w.value += '\\';
            this.pos++;
          } else {
            w.value += n;
            w.quoted = true;
            this.pos += 2;
          }
          break;
        }
        case "'": {
          const close = s.indexOf("'", this.pos + 1);
          if (close < 0) this.fail('unterminated single quote', this.pos);
          w.value += s.slice(this.pos + 1, close);
          w.quoted = true;
          this.pos = close + 1;
          break;
        }
        case '"':
          w.quoted = true;
          w.value += this.readDoubleQuoted(w);
          break;
        case '$':
          w.value += this.readDollar(w, false);
          break;
        case '`':
          w.value += this.readBackticks(w, false);
          break;
        case '*':
        case '?':
          w.pattern = true;
          w.value += c;
          this.pos++;
          break;
        case '[':
          bracket = true;
          w.value += c;
          this.pos++;
          break;
        case ']':
          if (bracket) w.pattern = true;
          w.value += c;
          this.pos++;
          break;
        case '{':
          braces++;
          w.value += c;
          this.pos++;
          break;
        case '}':
          if (braces > 0) {
            braces--;
            if (braceList) w.pattern = true;
          }
          w.value += c;
          this.pos++;
          break;
        case ',':
          if (braces > 0) braceList = true;
          w.value += c;
          this.pos++;
          break;
        case '.':
          if (braces > 0 && s[this.pos + 1] === '.') braceList = true;
          w.value += c;
          this.pos++;
          break;
        default:
          w.value += c;
          this.pos++;
      }
    }
    w.end = this.pos;
    return w;
  }

  private readDoubleQuoted(w: ShellWord): string {
    const s = this.s;
    const open = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      const c = s[this.pos];
      if (c === undefined) this.fail('unterminated double quote', open);
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c === '\\') {
        const n = s[this.pos + 1];
        if (n === '\n') this.pos += 2;
        else if (n === '$' || n === '`' || n === '"' || n === '\\') {
          out += n;
          this.pos += 2;
        } else {
          out += '\\';
          this.pos++;
        }
      } else if (c === '$') out += this.readDollar(w, true);
      else if (c === '`') out += this.readBackticks(w, true);
      else {
        out += c;
        this.pos++;
      }
    }
  }

  /** `$…` at the cursor: returns the text it contributes to the word (as written when it expands). */
  private readDollar(w: ShellWord, inDq: boolean): string {
    const s = this.s;
    const start = this.pos;
    const n = s[this.pos + 1];
    if (n === "'" && !inDq) {
      let i = this.pos + 2;
      for (; i < s.length && s[i] !== "'"; i++) if (s[i] === '\\') i++;
      if (i >= s.length) this.fail("unterminated $' quote", start);
      this.pos = i + 1;
      w.quoted = true;
      return decodeAnsiC(s.slice(start + 2, i));
    }
    if (n === '"' && !inDq) {
      this.pos++;
      w.quoted = true;
      return this.readDoubleQuoted(w);
    }
    w.static = false;
    if (n === '(') {
      if (s[this.pos + 2] === '(' && this.tryArithmetic(this.pos + 3)) return s.slice(start, this.pos);
      this.commandSubstitution(this.pos + 2, '$( )');
      w.substituted = true;
      return s.slice(start, this.pos);
    }
    if (n === '{') {
      this.pos += 2;
      this.skipParamBraces(start, w);
      return s.slice(start, this.pos);
    }
    if (n === '[') {
      // $[ expr ]: obsolete arithmetic
      const close = s.indexOf(']', this.pos + 2);
      if (close < 0) this.fail('unterminated $[', start);
      this.pos = close + 1;
      return s.slice(start, this.pos);
    }
    const m = /^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])/.exec(s.slice(this.pos + 1, this.pos + 256));
    if (m) {
      this.pos += 1 + m[0].length;
      return s.slice(start, this.pos);
    }
    w.static = true; // a lone '$' is literal
    this.pos++;
    return '$';
  }

  private commandSubstitution(from: number, context: string): void {
    const saved = this.context;
    this.pos = from;
    this.context = context;
    try {
      this.parseList(new Set(), true, false);
    } finally {
      this.context = saved;
    }
    this.pos++; // ')'
  }

  /** ${ … } from after the brace: nested quotes and substitutions are parsed. */
  private skipParamBraces(start: number, w: ShellWord): void {
    const s = this.s;
    let depth = 1;
    for (;;) {
      const c = s[this.pos];
      if (c === undefined) this.fail('unterminated ${', start);
      if (c === '\\') this.pos += 2;
      else if (c === "'") {
        const close = s.indexOf("'", this.pos + 1);
        if (close < 0) this.fail('unterminated single quote', this.pos);
        this.pos = close + 1;
      } else if (c === '"') this.readDoubleQuoted(w);
      else if (c === '$') this.readDollar(w, true);
      else if (c === '`') this.readBackticks(w, true);
      else if (c === '{') {
        depth++;
        this.pos++;
      } else if (c === '}') {
        this.pos++;
        if (--depth === 0) return;
      } else this.pos++;
    }
  }

  private readBackticks(w: ShellWord, inDq: boolean): string {
    const s = this.s;
    const start = this.pos;
    let body = '';
    let i = this.pos + 1;
    for (;;) {
      const c = s[i];
      if (c === undefined) this.fail('unterminated backquote', start);
      if (c === '`') break;
      if (c === '\\') {
        const n = s[i + 1];
        if (n === '$' || n === '`' || n === '\\' || (inDq && n === '"')) {
          body += n;
          i += 2;
          continue;
        }
        if (n === '\n') {
          i += 2;
          continue;
        }
      }
      body += c;
      i++;
    }
    this.pos = i + 1;
    w.static = false;
    w.substituted = true;
    this.enter();
    const sub = new Parser(body, this.depth + this.nesting, '` `');
    sub.parseProgram();
    this.nesting--;
    this.commands.push(...sub.commands);
    return s.slice(start, this.pos);
  }

  /**
   * `(( … ))` from after the two parentheses: when the text up to a matching
   * `))` is an arithmetic expression, consumes it (parsing substitutions in it)
   * and returns true; otherwise leaves the cursor and the commands unchanged.
   */
  private tryArithmetic(from: number, forLoop = false): boolean {
    const s = this.s;
    const savedPos = this.pos;
    const savedCount = this.commands.length;
    const savedHeredocs = this.heredocs.length;
    const scratch: ShellWord = { value: '', static: true, substituted: false, pattern: false, quoted: false, start: from, end: from };
    this.pos = from;
    let depth = 0;
    try {
      for (;;) {
        const c = s[this.pos];
        if (c === undefined) break;
        if (c === '(') {
          depth++;
          this.pos++;
        } else if (c === ')') {
          if (depth === 0) {
            if (s[this.pos + 1] === ')') {
              this.pos += 2;
              return true;
            }
            break;
          }
          depth--;
          this.pos++;
        } else if (c === '$') this.readDollar(scratch, true);
        else if (c === '`') this.readBackticks(scratch, true);
        else if (c === '"') this.readDoubleQuoted(scratch);
        else if (c === "'") {
          const close = s.indexOf("'", this.pos + 1);
          if (close < 0) break;
          this.pos = close + 1;
        } else if (c === '\\') this.pos += 2;
        else if (c === ';' || c === '&' || c === '|') {
          // `((a; b))`-like text is two nested subshells, not arithmetic ('&&' and '||' are fine,
          // and `for ((i = 0; i < n; i++))` has semicolons)
          if ((c === '&' || c === '|') && s[this.pos + 1] === c) this.pos += 2;
          else if (c === ';' && forLoop) this.pos++;
          else break;
        } else this.pos++;
      }
    } catch (e) {
      if (!(e instanceof ShellSyntaxError)) throw e;
    }
    this.pos = savedPos;
    this.commands.length = savedCount;
    this.heredocs.length = savedHeredocs;
    return false;
  }

  /** Here-document bodies (and other text) where only $… and `…` expand. */
  scanExpansions(): void {
    const s = this.s;
    const scratch: ShellWord = { value: '', static: true, substituted: false, pattern: false, quoted: false, start: 0, end: 0 };
    while (this.pos < s.length) {
      const c = s[this.pos];
      if (c === '\\') this.pos += 2;
      else if (c === '$') this.readDollar(scratch, true);
      else if (c === '`') this.readBackticks(scratch, true);
      else this.pos++;
    }
  }
}
