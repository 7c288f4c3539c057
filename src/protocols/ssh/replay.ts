// Showing a recorded SSH session (frames.ts describes the recording):
//   - playSsh: `sluice replay <id>` plays shells back in the terminal at the
//     recorded pace (--speed N, --no-wait for all at once), as the user saw
//     them; an exec is shown as its command, its output and its exit status;
//     sftp and forwarding as lines of what happened.
//   - renderSsh: the same as plain lines (for --follow and non-terminals).

import { StringDecoder } from 'node:string_decoder';
import { Dir, type Frame } from '../../recording/types.js';
import { decodeData, Stream } from './frames.js';

export interface SshReplayOptions {
  /** Playback speed factor (2 = twice as fast). */
  speed: number;
  /** Print everything at once. */
  wait: boolean;
  /** Longest pause kept (seconds, after speed): idle time is not worth waiting for. */
  maxPause?: number;
}

type Ev = Record<string, unknown> & { event: string; channel?: number };

interface ChannelInfo {
  kind?: 'shell' | 'exec' | 'sftp' | 'forward';
  command?: string;
  pty?: boolean;
}

/** UTF-8 text of chunked streams: a character split across chunks stays whole. */
export class Decoders {
  private readonly m = new Map<string, StringDecoder>();
  write(key: string, data: Buffer): string {
    let d = this.m.get(key);
    if (!d) this.m.set(key, (d = new StringDecoder('utf8')));
    return d.write(data);
  }
}

const clock = (us: number) => {
  const s = us / 1e6;
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, '0')}:${(s - m * 60).toFixed(3).padStart(6, '0')}`;
};

function parseEvent(f: Frame): Ev | null {
  try {
    return JSON.parse(f.payload.toString('utf8')) as Ev;
  } catch {
    return null;
  }
}

/** One note line for an event, or null for events shown otherwise (or not at all). */
function note(ev: Ev, ch: Map<number, ChannelInfo>): string | null {
  const c = ev.channel !== undefined ? `[${ev.channel}] ` : '';
  switch (ev.event) {
    case 'session.open':
      return `session opened by ${ev.sub}${Array.isArray(ev.groups) && ev.groups.length ? ` (${(ev.groups as string[]).join(', ')})` : ''} from ${ev.client}`;
    case 'session.close':
      return `session closed: ${ev.reason}`;
    case 'ssh.exec':
      return null;
    case 'ssh.shell':
      return `${c}shell${ev.pty ? ' (pty)' : ''}`;
    case 'ssh.pty':
      return `${c}pty ${ev.term} ${ev.cols}x${ev.rows}`;
    case 'ssh.resize':
      return `${c}resize ${ev.cols}x${ev.rows}`;
    case 'ssh.subsystem':
      return `${c}subsystem ${ev.name}${ev.allowed === false ? ' (refused)' : ''}`;
    case 'ssh.line':
      return `${c}typed: ${ev.line}${ev.approximate ? ' (approximate)' : ''}${ev.decision ? `  → ${ev.decision}${ev.rule ? ` (${ev.rule})` : ''}` : ''}`;
    case 'policy.decision':
      return ev.decision === 'allow' ? null : `${c}policy: ${ev.decision} by ${ev.policy ?? ''} ${ev.rule ?? ''}${ev.message ? `: ${ev.message}` : ''}`;
    case 'ssh.denied':
      return `${c}refused: ${ev.message} (exit ${ev.code})`;
    case 'ssh.exit':
      return ch.get(ev.channel ?? -1)?.kind === 'exec' ? null : `${c}exit ${ev.code ?? `signal ${ev.signal}`}`;
    case 'ssh.signal':
      return `${c}signal ${ev.name}`;
    case 'ssh.env':
      return `${c}env ${ev.name}${ev.allowed ? '' : ' (not passed)'}`;
    case 'sftp.op': {
      const access = Array.isArray(ev.access) ? ` (${(ev.access as string[]).join(', ')})` : '';
      const to = ev.new_path ?? ev.target;
      const bytes = `${ev.bytes_read ? ` read ${ev.bytes_read} B` : ''}${ev.bytes_written ? ` wrote ${ev.bytes_written} B` : ''}`;
      const failed = ev.status ? `  failed: ${ev.status}${ev.message ? ` (${ev.message})` : ''}` : '';
      return `${c}sftp ${ev.name ?? ev.op}${ev.path ? ` ${ev.path}` : ''}${to ? ` → ${to}` : ''}${access}${ev.command ? ` (${ev.command})` : ''}${bytes}${failed}${ev.allowed === false ? '  REFUSED' : ''}`;
    }
    case 'ssh.forward':
      return `${c}${ev.kind} forwarding${ev.dest ? ` to ${ev.dest}` : ''}${ev.bind ? ` on ${ev.bind}` : ''}: ${ev.allowed ? 'allowed' : 'refused'}`;
    case 'ssh.channel':
      return ev.type === 'session' ? null : `${c}${ev.type} channel${ev.dest ? ` to ${ev.dest}` : ''}`;
    case 'ssh.terminated':
      return `${c}terminated: ${ev.reason}`;
    case 'masking.applied':
      return `${c}masked ${ev.values} value(s)`;
    case 'recording.gap':
      return `(recording gap: ${ev.frames} frame(s) lost)`;
    default:
      return null;
  }
}

/** Walks a session's frames in order, calling back with what to show. */
export function walk(
  frames: Iterable<Frame>,
  on: {
    note(t_us: number, text: string): void;
    /** Output a shell user saw (terminal bytes). */
    term(t_us: number, channel: number, data: Buffer): void;
    /** An exec: its command, then output, then its exit. */
    exec(t_us: number, channel: number, command: string): void;
    execOut(t_us: number, channel: number, stream: Stream, data: Buffer): void;
    execExit(t_us: number, channel: number, ev: Ev): void;
  },
): void {
  const ch = new Map<number, ChannelInfo>();
  const info = (n: number) => {
    let c = ch.get(n);
    if (!c) ch.set(n, (c = {}));
    return c;
  };
  for (const f of frames) {
    if (f.dir === Dir.Event) {
      const ev = parseEvent(f);
      if (!ev) continue;
      if (ev.channel !== undefined) {
        const c = info(ev.channel);
        if (ev.event === 'ssh.exec') {
          c.kind = 'exec';
          c.command = String(ev.command);
          on.exec(f.t_us, ev.channel, c.command);
        } else if (ev.event === 'ssh.shell') c.kind = 'shell';
        else if (ev.event === 'ssh.subsystem') c.kind = 'sftp';
        else if (ev.event === 'ssh.pty') c.pty = true;
        else if (ev.event === 'ssh.channel' && ev.type !== 'session') c.kind = 'forward';
        if (ev.event === 'ssh.exit' && c.kind === 'exec') on.execExit(f.t_us, ev.channel, ev);
      }
      const n = note(ev, ch);
      if (n) on.note(f.t_us, n);
      continue;
    }
    const d = decodeData(f.payload);
    if (!d || d.stream === Stream.Stdin) continue;
    const c = ch.get(d.channel);
    if (c?.kind === 'shell') on.term(f.t_us, d.channel, d.data);
    else if (c?.kind === 'exec') on.execOut(f.t_us, d.channel, d.stream, d.data);
    // sftp and forwarded bytes are binary: their events tell the story.
  }
}

/** Plain lines (no timing): notes with times, shell output as text, exec command/output/exit. */
export function renderSsh(frames: Iterable<Frame>): string[] {
  const lines: string[] = [];
  const dec = new Decoders();
  const text = (key: string, data: Buffer) => dec.write(key, data);
  const partial = new Map<string, string>();
  const emit = (key: string, prefix: string, s: string) => {
    // Terminal control sequences are dropped from the plain view.
    const clean = (partial.get(key) ?? '') + s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r(?!\n)/g, '');
    const parts = clean.split(/\r?\n/);
    partial.set(key, parts.pop()!);
    for (const p of parts) lines.push(`${prefix}${p}`);
  };
  walk(frames, {
    note: (t, n) => lines.push(`${clock(t)}  ${n}`),
    term: (t, c, data) => emit(`t${c}`, `  │ `, text(`t${c}`, data)),
    exec: (t, c, cmd) => lines.push(`${clock(t)}  [${c}] $ ${cmd}`),
    execOut: (t, c, s, data) => emit(`e${c}.${s}`, s === Stream.Stderr ? '  ! ' : '  │ ', text(`e${c}.${s}`, data)),
    execExit: (t, c, ev) => {
      for (const [k, v] of partial) if (v && k.startsWith(`e${c}.`)) lines.push(`  │ ${v}`);
      for (const k of [...partial.keys()]) if (k.startsWith(`e${c}.`)) partial.delete(k);
      lines.push(`${clock(t)}  [${c}] exit ${ev.code ?? `signal ${ev.signal}`}`);
    },
  });
  for (const [k, v] of partial) if (v) lines.push(`${k.startsWith('t') ? '  │ ' : '  │ '}${v}`);
  return lines;
}

/** Plays a session to `out` at the recorded pace. */
export async function playSsh(frames: Frame[], opts: SshReplayOptions, out: (s: string) => void): Promise<void> {
  const maxPause = (opts.maxPause ?? 2) * 1e6;
  let last: number | null = null;
  const steps: { t: number; s: string }[] = [];
  const push = (t: number, s: string) => steps.push({ t, s });
  const dec = new Decoders();
  walk(frames, {
    note: (t, n) => push(t, `\x1b[2m── ${clock(t)} ${n}\x1b[0m\r\n`),
    term: (t, c, data) => push(t, dec.write(`t${c}`, data)),
    exec: (t, c, cmd) => push(t, `\x1b[1m$ ${cmd}\x1b[0m\r\n`),
    execOut: (t, c, s, data) => push(t, dec.write(`e${c}.${s}`, data).replace(/\r?\n/g, '\r\n')),
    execExit: (t, c, ev) => push(t, `\x1b[2m[exit ${ev.code ?? `signal ${ev.signal}`}]\x1b[0m\r\n`),
  });
  for (const st of steps) {
    if (opts.wait && last !== null) {
      const gap = Math.min((st.t - last) / opts.speed, maxPause);
      if (gap > 1000) await new Promise((r) => setTimeout(r, gap / 1000));
    }
    last = st.t;
    out(st.s);
  }
}
