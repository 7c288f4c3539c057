/**
 * Shell command line → facts for the policy engine (the SSH exec and shell
 * side). Pure: no I/O; only what the text says. The result has the same shape
 * as analyzeSql's, so `session.decide(line, analyzeShell)` and PolicySet work
 * unchanged: every simple command becomes one statement of kind 'command'.
 *
 * Parsing is shell-lexer.ts (a careful bash-compatible subset; anything it
 * cannot follow is a parse_error, decided by policy.on_parse_error).
 *
 * Statements (CommandFacts), in the order met:
 *   - every simple command, also inside `$( )`, backticks, `<( )`, `>( )`,
 *     subshells, `{ …; }`, if/while/for/case bodies, function bodies and
 *     unquoted here-documents;
 *   - the real program behind a wrapper (sudo, doas, env, nice, nohup,
 *     timeout, stdbuf, ionice, setsid, chroot, time, exec, command, builtin,
 *     busybox, toybox, taskset, xargs, flock, strace, ltrace, systemd-run,
 *     nsenter, unshare, …): the wrapper is one statement and the program it
 *     runs another (with `wrappers` naming the chain), so an allow-list must
 *     allow both and a deny rule on the program still fires;
 *   - the commands of shell code given as a string: `sh -c '…'` (any shell,
 *     any option cluster such as -lc), `su -c`, `runuser -c`, `sg`, `script -c`,
 *     `flock -c`, `watch '…'`, `env -S`, `eval …`, `trap '…'`, `alias x='…'`,
 *     `ssh host '…'` (run elsewhere, analysed all the same), a shell fed by a
 *     here-document or here-string, `find … -exec …` (with `{}` replaced by
 *     the search roots), `xargs cmd`. A parent statement carries the union of
 *     its children's changes_state, dynamic, pipes_to_shell and paths_written.
 *
 * program: the basename of the program word after quote removal (`r\m`,
 * `"rm"`, `$'\x72m'` and `/bin/rm` are all `rm`); `path` keeps a word with '/'.
 * argv: argv[0] as written, then the arguments, quote-removed; expansions
 * ($X, $(…)) are kept as written.
 *
 * dynamic: true marks what cannot be seen from the text:
 *   - a program word built at run time ($X, $(…), globs, brace expansion,
 *     history expansion such as !! or ^a^b);
 *   - eval, source / `.`, fc, alias definitions, hash -p, enable -f;
 *   - a shell or interpreter whose code is not in the text: read from stdin,
 *     a pipe, a file (`sh script.sh`, `sh < x`), a process substitution, a
 *     non-constant `-c` string or here-document; inline code of other
 *     languages (`python -c`, `perl -e`, `node -e`, …); awk programs calling
 *     system() or pipes;
 *   - assignments to variables that change what runs (PATH, LD_*, BASH_ENV,
 *     ENV, IFS, PROMPT_COMMAND, PYTHONPATH, NODE_OPTIONS, GIT_SSH_COMMAND,
 *     PAGER, EDITOR, …), as a prefix, bare, or through export/declare/env;
 *   - text nested too deeply.
 * pipes_to_shell: a shell or interpreter runs code produced by another command:
 *   `… | sh`, `… | sudo bash -s`, `sh <(…)`, `sh -c "$(…)"`, `eval "$(…)"`,
 *   `source <(…)`, `sh <<< "$(…)"`, `… | xargs sh -c`. It implies dynamic.
 * stdin_code: a shell or interpreter reads its program from the session's own
 *   stdin (`ssh host bash < script`, or a bare `bash`, `su`, `sudo -s`), or
 *   sftp-server is run as a command: what it does is not in the text. Also
 *   dynamic. The SSH module may treat such an exec like a shell / the sftp subsystem.
 * paths_written: redirection targets (>, >>, >|, &>, &>>, <>, >&file; not
 *   /dev/null, /dev/std*, /dev/tty, /dev/fd/*) and the files of known writers:
 *   rm, rmdir, unlink, shred, mv (sources and target), cp, install, ln,
 *   link, touch, mkdir, mknod, mkfifo, truncate, fallocate, tee, dd of=,
 *   sed -i, perl/ruby -i, chmod, chown, chgrp, chattr, setfacl, chcon, sort -o,
 *   uniq OUT, iconv -o, xxd -r, curl -o/-O/-D/-c, wget (its output file),
 *   tar -c/-x, unzip, gzip & co (in place), rsync and scp (local target),
 *   mount, umount, mkfs*, mkswap, wipefs, fdisk, sfdisk, parted, split,
 *   patch -o, openssl -out, editors (vi, vim, nano, emacs, …), sudo -e,
 *   find -delete / -fprint, time/strace -o. Paths are normalised
 *   (`/tmp/../etc/x` is `/etc/x`); relative ones are resolved against a
 *   preceding `cd /dir` in the same line, else kept relative. A path ending in
 *   `/**` is a whole tree (rm -r, chmod -R, a copy's target, tar -x, find -delete).
 * changes_state: false only for programs listed as read-only in
 *   shell-programs.ts (inspection and text tools, shell builtins with no
 *   effect outside the shell, and the query forms of git, docker, kubectl,
 *   systemctl, journalctl, ip, iptables, package managers, …), and even then
 *   true when the command writes a path, is dynamic, or a command it runs
 *   changes state. Every other program counts as changing state (closed
 *   default, like unknown SQL).
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { parseShell, ShellSyntaxError, type ShellRedirect, type ShellWord, type SimpleCommand } from './lexer.js';
import { AWK_VALUE, interpreterSpec, isReadOnly, isSensitiveEnv, scanOptions, SHELL_VALUE_OPTS, SHELLS, WRAPPERS, writerFor, type InterpreterSpec, type WrapperSpec, type Write } from './programs.js';
import type { QueryFacts, StatementFacts } from '../sql/facts.js';

export interface CommandFacts extends StatementFacts {
  kind: 'command';
  /** Basename of the program; '' for a command made only of redirections or assignments; the word as written when dynamic. */
  program: string;
  /** The program word when it names a path (/usr/bin/rm, ./x). */
  path?: string;
  /** argv[0] as written, then the arguments (quote-removed, expansions as written). */
  argv: string[];
  /** Files and trees (`dir/**`) it writes. */
  paths_written: string[];
  pipes_to_shell?: boolean;
  stdin_code?: boolean;
  /** Wrappers it runs under, outermost first (sudo, env, xargs, …). */
  wrappers?: string[];
  /** Where it was found when not at top level: '$( )', '` `', '<( )', '>( )', '<<', 'function', 'sh -c', 'eval', 'find -exec', 'xargs', 'ssh <host>', … */
  nested_in?: string;
}

export function isCommandFacts(s: StatementFacts): s is CommandFacts {
  return s.kind === 'command';
}

/** Longest command line analysed; longer ones are a parse error. */
export const MAX_COMMAND_LINE = 1 << 20;
const MAX_TEXT_DEPTH = 8;
const MAX_STATEMENTS = 20_000;

interface Ctx {
  out: CommandFacts[];
  /** Working directory known from a preceding `cd /abs` in the line. */
  cwd: string | undefined;
}

interface Invocation {
  words: ShellWord[];
  cmd: SimpleCommand;
  wrappers: string[];
  nestedIn: string;
  depth: number;
  writes: string[];
  /** stdin is a pipe. */
  piped: boolean;
  /** Runs under xargs: more arguments come from xargs' input. */
  xargs?: { piped: boolean };
  dynamic: boolean;
}

/** Facts of one command line (an exec request, or a line typed into a shell). */
export function analyzeShell(commandLine: string): QueryFacts {
  if (commandLine.length > MAX_COMMAND_LINE) return { statements: [], parse_error: `command line longer than ${MAX_COMMAND_LINE} characters` };
  const ctx: Ctx = { out: [], cwd: undefined };
  try {
    analyzeText(ctx, commandLine, '', 0);
  } catch (e) {
    if (e instanceof ShellSyntaxError) return { statements: [], parse_error: e.message };
    throw e;
  }
  const programs = ctx.out.map((s) => s.program).join(' ');
  return {
    statements: ctx.out,
    fingerprint: createHash('sha256').update(programs).digest('hex').slice(0, 16),
    normalized: commandLine.trim().slice(0, 4096),
  };
}

function analyzeText(ctx: Ctx, text: string, nestedIn: string, depth: number): void {
  if (depth > MAX_TEXT_DEPTH) {
    ctx.out.push(blank(text, nestedIn, { dynamic: true }));
    return;
  }
  let cmds: SimpleCommand[];
  try {
    cmds = parseShell(text);
  } catch (e) {
    if (e instanceof ShellSyntaxError && depth > 0) throw new ShellSyntaxError(`in ${nestedIn}: ${e.message}`, e.position);
    if (e instanceof ShellSyntaxError) throw new ShellSyntaxError(`${e.message} (at offset ${e.position})`, e.position);
    throw e;
  }
  for (const cmd of cmds) {
    if (ctx.out.length > MAX_STATEMENTS) throw new ShellSyntaxError(`more than ${MAX_STATEMENTS} commands`, 0);
    analyzeSimple(ctx, cmd, nestedIn, depth);
  }
}

function blank(text: string, nestedIn: string, extra: Partial<CommandFacts>): CommandFacts {
  return {
    kind: 'command',
    tables_read: [],
    tables_written: [],
    functions: [],
    via: 'top',
    text,
    program: '',
    argv: [],
    paths_written: [],
    changes_state: true,
    ...(nestedIn && { nested_in: nestedIn }),
    ...extra,
  };
}

const assignName = (w: ShellWord) => w.value.replace(/(\[.*)?\+?=[\s\S]*$/, '');

function analyzeSimple(ctx: Ctx, cmd: SimpleCommand, outer: string, depth: number): void {
  const nestedIn = cmd.context && outer ? `${outer} ${cmd.context}` : cmd.context || outer;
  const writes = redirectWrites(cmd.redirects, ctx.cwd);
  const dynamic = cmd.assigns.some((a) => isSensitiveEnv(assignName(a)));
  if (cmd.words.length === 0) {
    if (writes.length || dynamic) ctx.out.push(blank(cmd.text, nestedIn, { argv: [], paths_written: writes, ...(dynamic && { dynamic }) }));
    return;
  }
  invoke(ctx, { words: cmd.words, cmd, wrappers: [], nestedIn, depth, writes, piped: cmd.pipedIn, dynamic });
  // `cd /dir && rm x`: later relative paths resolve against /dir (best effort; subshells not tracked)
  const w0 = cmd.words[0]!;
  if (!cmd.context && !cmd.pipedIn && (w0.value === 'cd' || w0.value === 'pushd')) {
    const arg = cmd.words.slice(1).find((w) => !w.value.startsWith('-') || w.value === '-');
    if (!arg) ctx.cwd = '~';
    else if (!arg.static || arg.pattern || arg.value === '-') ctx.cwd = undefined;
    else if (arg.value.startsWith('/') || arg.value.startsWith('~')) ctx.cwd = posix.normalize(arg.value);
    else ctx.cwd = ctx.cwd === undefined ? undefined : posix.join(ctx.cwd, arg.value);
  }
}

// ---------------------------------------------------------------- paths

const NOT_WRITES = /^\/(dev\/(null|stdout|stderr|stdin|tty|fd\/\d+)|proc\/self\/fd\/\d+)$/;

function normPath(p: string, cwd: string | undefined): string {
  if (p.includes('$') || p.includes('`') || p === '') return p;
  let v = p;
  if (!v.startsWith('/') && !v.startsWith('~') && cwd !== undefined) v = `${cwd}/${v}`;
  v = posix.normalize(v);
  if (v.length > 1 && v.endsWith('/')) v = v.slice(0, -1);
  return v;
}

function writePath(w: Write, cwd: string | undefined): string | undefined {
  if (/^[<>]\(/.test(w.path)) return undefined; // a process substitution, not a file
  const v = normPath(w.path, cwd);
  if (NOT_WRITES.test(v)) return undefined;
  if (!w.recursive) return v;
  return v === '/' ? '/**' : `${v}/**`;
}

function redirectWrites(redirects: ShellRedirect[], cwd: string | undefined): string[] {
  const out: string[] = [];
  for (const r of redirects) {
    const writes = r.op === '>' || r.op === '>>' || r.op === '>|' || r.op === '&>' || r.op === '&>>' || r.op === '<>' || (r.op === '>&' && !/^([0-9]+|-)$/.test(r.target.value));
    if (!writes || r.target.procsub) continue;
    const p = writePath({ path: r.target.value }, cwd);
    if (p !== undefined && !out.includes(p)) out.push(p);
  }
  return out;
}

function addWrites(f: CommandFacts, writes: Write[], cwd: string | undefined): void {
  for (const w of writes) {
    const p = writePath(w, cwd);
    if (p !== undefined && !f.paths_written.includes(p)) f.paths_written.push(p);
  }
}

// ---------------------------------------------------------------- one command

function invoke(ctx: Ctx, inv: Invocation): void {
  const w0 = inv.words[0]!;
  const argv = inv.words.map((w) => w.value);
  const f: CommandFacts = {
    kind: 'command',
    tables_read: [],
    tables_written: [],
    functions: [],
    via: 'top',
    text: inv.cmd.text,
    program: '',
    argv,
    paths_written: [...inv.writes],
    changes_state: true,
    ...(inv.nestedIn && { nested_in: inv.nestedIn }),
    ...(inv.wrappers.length && { wrappers: inv.wrappers }),
    ...(inv.dynamic && { dynamic: true }),
  };
  ctx.out.push(f);
  const history = !w0.quoted && w0.value.length > 1 && (w0.value[0] === '!' || w0.value[0] === '^');
  if (!w0.static || w0.pattern || history) {
    f.program = w0.value;
    f.dynamic = true;
    return;
  }
  const name = posix.basename(w0.value) || w0.value;
  f.program = name;
  if (w0.value.includes('/')) f.path = w0.value;
  const first = ctx.out.length;
  const args = inv.words.slice(1);
  const values = argv.slice(1);
  let container = false; // its effect is the commands it runs

  const wrapper = WRAPPERS[name];
  const interp = SHELLS.has(name) ? undefined : interpreterSpec(name);
  if (name === 'su' || name === 'script' || name === 'runuser' && !values.some((v) => v === '-u' || v.startsWith('--user'))) {
    container = shellSwitch(ctx, inv, f, name, values);
  } else if (wrapper) container = runWrapper(ctx, inv, f, name, wrapper, args);
  else if (SHELLS.has(name)) {
    container = true;
    runShell(ctx, inv, f, args);
  } else if (interp) runInterpreter(ctx, inv, f, interp, args);
  else {
    switch (name) {
      case 'eval':
        container = true;
        f.dynamic = true;
        if (args.some((w) => w.substituted)) f.pipes_to_shell = true;
        nested(ctx, inv, f, values.join(' '), 'eval', true);
        break;
      case 'source':
      case '.':
        f.dynamic = true;
        if (args[0]?.substituted || ((args[0]?.value === '/dev/stdin' || args[0]?.value === '-') && inv.piped)) f.pipes_to_shell = true;
        break;
      case 'fc':
        if (!values.includes('-l')) f.dynamic = true;
        break;
      case 'hash':
        if (values.includes('-p')) f.dynamic = true;
        break;
      case 'enable':
        if (values.some((v) => v.startsWith('-') && v.includes('f'))) f.dynamic = true;
        break;
      case 'alias':
        for (const v of values) {
          const eq = v.indexOf('=');
          if (eq > 0) {
            f.dynamic = true;
            nested(ctx, inv, f, v.slice(eq + 1), 'alias', true);
          }
        }
        break;
      case 'trap': {
        const o = scanOptions(values, new Set(), true);
        const action = o.operands[0];
        if (!o.opts.has('-l') && !o.opts.has('-p') && action && action !== '-' && o.operands.length > 1) {
          container = true;
          nested(ctx, inv, f, action, 'trap', !args[o.operandIndex[0]!]!.static);
        }
        break;
      }
      case 'export':
      case 'declare':
      case 'typeset':
      case 'local':
      case 'readonly':
        if (args.some((w) => /^[A-Za-z_][A-Za-z0-9_]*(\[.*\])?\+?=/.test(w.value) && isSensitiveEnv(assignName(w)))) f.dynamic = true;
        break;
      case 'find':
        runFind(ctx, inv, f, args);
        break;
      case 'sftp-server':
        // the file-transfer server run as a command: its operations come from the session's stdin
        f.dynamic = true;
        f.stdin_code = true;
        break;
      case 'ssh':
        container = runSsh(ctx, inv, f, args);
        break;
      case 'awk':
      case 'gawk':
      case 'mawk':
      case 'nawk': {
        const o = scanOptions(values, AWK_VALUE);
        const program = o.opts.has('-f') || o.opts.has('--file') ? undefined : o.operands[0];
        if (program !== undefined && /\bsystem\s*\(|\|\s*&?\s*"|"\s*\|\s*getline|\|&/.test(program)) f.dynamic = true;
        break;
      }
    }
  }
  const writer = writerFor(name);
  if (writer) addWrites(f, writer(values), ctx.cwd);

  // what the commands it runs do, it does
  let childChanges = false;
  for (let i = first; i < ctx.out.length; i++) {
    const c = ctx.out[i]!;
    if (c.changes_state) childChanges = true;
    if (c.dynamic) f.dynamic = true;
    if (c.pipes_to_shell) f.pipes_to_shell = true;
    for (const p of c.paths_written) if (!f.paths_written.includes(p)) f.paths_written.push(p);
  }
  if (f.pipes_to_shell || f.stdin_code) f.dynamic = true;
  f.changes_state = !!f.dynamic || f.paths_written.length > 0 || childChanges || (!container && !isReadOnly(name, values));
}

/** Analyses shell code found in a word; `tolerant`: the code is not constant, so a syntax error only makes it dynamic. */
function nested(ctx: Ctx, inv: Invocation, f: CommandFacts, code: string, label: string, tolerant: boolean): void {
  const where = inv.nestedIn ? `${inv.nestedIn} ${label}` : label;
  try {
    analyzeText(ctx, code, where, inv.depth + 1);
  } catch (e) {
    if (!(e instanceof ShellSyntaxError) || !tolerant) throw e;
    f.dynamic = true;
  }
}

function child(inv: Invocation, words: ShellWord[], extra: Partial<Invocation>): Invocation {
  return { ...inv, words, dynamic: false, ...extra };
}

// ---------------------------------------------------------------- wrappers

function runWrapper(ctx: Ctx, inv: Invocation, f: CommandFacts, name: string, spec: WrapperSpec, args: ShellWord[]): boolean {
  let skip = spec.skip ?? 0;
  let noRun = false;
  let shell = false;
  let edit = false;
  let exec = false; // watch -x
  let i = 0;
  const strings: ShellWord[] = [];
  const option = (opt: string, value: ShellWord | undefined) => {
    if (spec.noRun?.has(opt)) noRun = true;
    if (spec.shell?.has(opt)) shell = true;
    if (spec.edits?.has(opt)) edit = true;
    if (name === 'watch' && (opt === '-x' || opt === '--exec')) exec = true;
    if (value && spec.stringOption?.has(opt)) strings.push(value);
    if (value && spec.writes?.has(opt)) addWrites(f, [{ path: value.value }], ctx.cwd);
    if (value && name === 'env' && (opt === '-S' || opt === '--split-string')) strings.push(value);
  };
  const word = (v: string, like: ShellWord): ShellWord => ({ ...like, value: v });
  for (; i < args.length; i++) {
    const w = args[i]!;
    const a = w.value;
    if (a === '--') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const opt = eq < 0 ? a : a.slice(0, eq);
      let value: ShellWord | undefined;
      if (eq >= 0) value = word(a.slice(eq + 1), w);
      else if (spec.withValue.has(opt) || spec.stringOption?.has(opt)) value = args[++i];
      option(opt, value);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      if (spec.numericFlag && /^-[0-9]+$/.test(a)) continue;
      for (let j = 1; j < a.length; j++) {
        const opt = '-' + a[j];
        if (spec.withValue.has(opt) || spec.stringOption?.has(opt)) {
          option(opt, j + 1 < a.length ? word(a.slice(j + 1), w) : args[++i]);
          break;
        }
        option(opt, undefined);
      }
      continue;
    }
    if (spec.env && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a)) {
      if (isSensitiveEnv(a.slice(0, a.indexOf('=')))) f.dynamic = true;
      continue;
    }
    if (skip > 0) {
      skip--;
      continue;
    }
    break;
  }
  const inner = args.slice(i);
  for (const s of strings) nested(ctx, inv, f, name === 'env' ? s.value + ' ' + inner.map((w) => shellQuote(w.value)).join(' ') : s.value, `${name} -c`, !s.static);
  if (strings.length) return true;
  if (noRun) return false;
  if (edit) {
    addWrites(f, inner.map((w) => ({ path: w.value })), ctx.cwd);
    return false;
  }
  if (inner.length === 0) {
    if (shell || name === 'chroot') {
      // an interactive shell: its commands come from the session
      f.dynamic = true;
      if (inv.piped) f.pipes_to_shell = true;
      else f.stdin_code = true;
    }
    return false;
  }
  if (spec.joinsWords && !exec) {
    nested(ctx, inv, f, inner.map((w) => w.value).join(' '), name, !inner.every((w) => w.static));
    return true;
  }
  const wrappers = [...inv.wrappers, name];
  if (name === 'xargs') invoke(ctx, child(inv, inner, { wrappers, nestedIn: inv.nestedIn ? `${inv.nestedIn} xargs` : 'xargs', piped: false, xargs: { piped: inv.piped } }));
  else invoke(ctx, child(inv, inner, { wrappers }));
  return true;
}

/** su / runuser / script: a command string with -c, else an interactive shell. */
function shellSwitch(ctx: Ctx, inv: Invocation, f: CommandFacts, name: string, values: string[]): boolean {
  const spec = WRAPPERS[name];
  const withValue = new Set([...(spec?.withValue ?? []), '-c', '--command']);
  const o = scanOptions(values, withValue);
  const cmds = [...(o.opts.get('-c') ?? []), ...(o.opts.get('--command') ?? [])];
  if (name === 'script') addWrites(f, [{ path: o.operands[0] ?? 'typescript' }], ctx.cwd);
  if (cmds.length) {
    for (const c of cmds) nested(ctx, inv, f, c, `${name} -c`, c.includes('$') || c.includes('`'));
    return true;
  }
  f.dynamic = true;
  if (inv.piped) f.pipes_to_shell = true;
  else f.stdin_code = true;
  return false;
}

const shellQuote = (s: string) => (/^[A-Za-z0-9_\-+=.,/:@%]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

// ---------------------------------------------------------------- shells and interpreters

function runShell(ctx: Ctx, inv: Invocation, f: CommandFacts, args: ShellWord[]): void {
  let i = 0;
  let c = false;
  let s = false;
  for (; i < args.length; i++) {
    const a = args[i]!.value;
    if (a === '--' || a === '-') {
      i++;
      break;
    }
    if (SHELL_VALUE_OPTS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('--')) continue;
    if ((a[0] === '-' || a[0] === '+') && a.length > 1) {
      if (a.includes('c')) c = true;
      if (a.includes('s')) s = true;
      if (/[oO]$/.test(a)) i++; // -euo pipefail
      continue;
    }
    break;
  }
  const rest = args.slice(i);
  if (c) {
    const code = rest[0];
    if (!code) {
      // `xargs sh -c`: the code comes from xargs' input
      f.dynamic = true;
      if (inv.xargs?.piped) f.pipes_to_shell = true;
      return;
    }
    if (code.substituted) f.pipes_to_shell = true;
    if (!code.static) f.dynamic = true;
    nested(ctx, inv, f, code.value, `${f.program} -c`, !code.static);
    return;
  }
  if ((rest.length && !s) || inv.xargs) {
    // a script file (under xargs: named by xargs' input): its commands are not in the text
    f.dynamic = true;
    const w = rest[0];
    if (w && (w.substituted || ((w.value === '/dev/stdin' || w.value === '/proc/self/fd/0') && inv.piped))) f.pipes_to_shell = true;
    return;
  }
  stdinCode(ctx, inv, f, true);
}

/** A shell or interpreter that reads its program from stdin. */
function stdinCode(ctx: Ctx, inv: Invocation, f: CommandFacts, isShell: boolean): void {
  let r: ShellRedirect | undefined;
  for (const x of inv.cmd.redirects) {
    if ((x.fd === undefined || x.fd === 0) && (x.op[0] === '<' || x.op === '<>')) r = x;
  }
  if (r && (r.op === '<<' || r.op === '<<-' || r.op === '<<<')) {
    const here = r.op === '<<<';
    const code = here ? r.target.value : (r.body ?? '');
    const constant = here ? r.target.static : r.literal || !/[$`]/.test(code);
    if (here && r.target.substituted) f.pipes_to_shell = true;
    if (!here && !r.literal && /\$\(|`/.test(code)) f.pipes_to_shell = true;
    if (!constant) f.dynamic = true;
    if (isShell) nested(ctx, inv, f, code, `${f.program} ${r.op}`, !constant);
    else f.dynamic = true;
    return;
  }
  f.dynamic = true;
  if (r) {
    if (r.target.procsub || r.target.substituted) f.pipes_to_shell = true;
    return;
  }
  if (inv.piped) f.pipes_to_shell = true;
  else if (!inv.xargs) f.stdin_code = true;
}

function runInterpreter(ctx: Ctx, inv: Invocation, f: CommandFacts, spec: InterpreterSpec, args: ShellWord[]): void {
  const inline = (code: ShellWord | undefined) => {
    f.dynamic = true;
    if (code?.substituted) f.pipes_to_shell = true;
  };
  for (let i = 0; i < args.length; i++) {
    const w = args[i]!;
    const a = w.value;
    if (a === '-') break;
    if (a === '--') {
      const script = args[i + 1];
      if (!script) break;
      if (script.substituted) inline(script);
      return;
    }
    if (spec.inline.has(a)) {
      if (!args[i + 1] && inv.xargs?.piped) f.pipes_to_shell = true; // xargs python -c: the code comes from the pipe
      return inline(args[i + 1]);
    }
    if (spec.module?.has(a)) return;
    if (spec.withValue.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('--')) continue;
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const opt = '-' + a[j];
        if (spec.inline.has(opt)) return inline(j + 1 < a.length ? w : args[i + 1]);
        if (spec.module?.has(opt)) return;
        if (spec.attached?.has(opt)) break;
        if (spec.withValue.has(opt)) {
          if (j + 1 === a.length) i++;
          break;
        }
      }
      continue;
    }
    // a script file
    if (w.substituted || ((a === '/dev/stdin' || a === '/proc/self/fd/0') && inv.piped)) inline(w);
    return;
  }
  if (inv.xargs) f.dynamic = true; // the script is named by xargs' input
  else stdinCode(ctx, inv, f, false);
}

// ---------------------------------------------------------------- find, ssh

function runFind(ctx: Ctx, inv: Invocation, f: CommandFacts, args: ShellWord[]): void {
  let i = 0;
  while (i < args.length && /^-([HLP]|D|O[0-9]*)$/.test(args[i]!.value)) i += args[i]!.value === '-D' ? 2 : 1;
  const roots: string[] = [];
  for (; i < args.length; i++) {
    const a = args[i]!.value;
    if (a.startsWith('-') || a === '(' || a === '!' || a === ')' || a === ',') break;
    roots.push(a);
  }
  if (!roots.length) roots.push('.');
  for (; i < args.length; i++) {
    const a = args[i]!.value;
    if (a === '-delete') addWrites(f, roots.map((path) => ({ path, recursive: true })), ctx.cwd);
    else if (a === '-fprint' || a === '-fprint0' || a === '-fls' || a === '-fprintf') {
      const file = args[++i];
      if (file) addWrites(f, [{ path: file.value }], ctx.cwd);
      if (a === '-fprintf') i++;
    } else if (a === '-exec' || a === '-execdir' || a === '-ok' || a === '-okdir') {
      const words: ShellWord[] = [];
      for (i++; i < args.length && args[i]!.value !== ';' && args[i]!.value !== '+'; i++) words.push(args[i]!);
      if (!words.length) continue;
      for (const root of roots.slice(0, 4)) {
        const replaced = words.map((w) => (w.value.includes('{}') ? { ...w, value: w.value.split('{}').join(root) } : w));
        invoke(ctx, child(inv, replaced, { wrappers: [], nestedIn: inv.nestedIn ? `${inv.nestedIn} find ${a}` : `find ${a}`, piped: false }));
      }
    }
  }
}

const SSH_VALUE = new Set(['-B', '-b', '-c', '-D', '-E', '-e', '-F', '-I', '-i', '-J', '-L', '-l', '-m', '-O', '-o', '-p', '-Q', '-R', '-S', '-W', '-w']);

function runSsh(ctx: Ctx, inv: Invocation, f: CommandFacts, args: ShellWord[]): boolean {
  const o = scanOptions(args.map((w) => w.value), SSH_VALUE, true);
  const at = o.operandIndex[0];
  if (at === undefined) return false;
  const remote = args.slice(at + 1);
  if (!remote.length) return false;
  nested(ctx, inv, f, remote.map((w) => w.value).join(' '), `ssh ${args[at]!.value}`, !remote.every((w) => w.static));
  return true;
}
