// `sluice export <id> --format asciicast`: a recorded SSH session as asciicast
// v2 (https://docs.asciinema.org/manual/asciicast/v2/), for `asciinema play`.
// Line 1 is the header; every other line is [seconds, "o", text] for what the
// user's terminal showed, or [seconds, "r", "COLSxROWS"] for a resize. Exec
// channels are shown as "$ command", their output, and "[exit N]". Keystrokes
// are not exported ("i" events): what was typed is echoed in the output,
// except what should not be (passwords).

import { Dir, type Frame, type SessionIndexEntry } from '../../recording/types.js';
import { decodeData, Stream } from './frames.js';
import { Decoders } from './replay.js';

interface Header {
  version: 2;
  width: number;
  height: number;
  timestamp?: number;
  title?: string;
  env?: Record<string, string>;
}

export function toAsciicast(frames: Iterable<Frame>, session: Pick<SessionIndexEntry, 'id' | 'sub' | 'target' | 'started_at'>): string[] {
  const events: string[] = [];
  const kinds = new Map<number, { kind: string; pty: boolean }>();
  const dec = new Decoders();
  let size: { cols: number; rows: number; term: string } | null = null;
  const at = (t_us: number) => Math.round(t_us) / 1e6;
  const out = (t_us: number, text: string) => text && events.push(JSON.stringify([at(t_us), 'o', text]));
  for (const f of frames) {
    if (f.dir === Dir.Event) {
      let ev: Record<string, unknown>;
      try {
        ev = JSON.parse(f.payload.toString('utf8'));
      } catch {
        continue;
      }
      const c = typeof ev.channel === 'number' ? ev.channel : -1;
      const k = kinds.get(c) ?? { kind: '', pty: false };
      kinds.set(c, k);
      switch (ev.event) {
        case 'ssh.pty':
          k.pty = true;
          if (!size) size = { cols: Number(ev.cols) || 80, rows: Number(ev.rows) || 24, term: String(ev.term ?? 'xterm') };
          else events.push(JSON.stringify([at(f.t_us), 'r', `${ev.cols}x${ev.rows}`]));
          break;
        case 'ssh.resize':
          events.push(JSON.stringify([at(f.t_us), 'r', `${ev.cols}x${ev.rows}`]));
          break;
        case 'ssh.shell':
          k.kind = 'shell';
          break;
        case 'ssh.exec':
          k.kind = 'exec';
          out(f.t_us, `$ ${String(ev.command)}\r\n`);
          break;
        case 'ssh.subsystem':
          k.kind = 'sftp';
          break;
        case 'ssh.exit':
          if (k.kind === 'exec') out(f.t_us, `[exit ${ev.code ?? `signal ${ev.signal}`}]\r\n`);
          break;
      }
      continue;
    }
    const d = decodeData(f.payload);
    if (!d || d.stream === Stream.Stdin) continue;
    const k = kinds.get(d.channel);
    if (!k || (k.kind !== 'shell' && k.kind !== 'exec')) continue;
    let text = dec.write(`${d.channel}.${d.stream}`, d.data);
    // Without a pty, output has bare newlines; a terminal needs CR LF.
    if (!k.pty) text = text.replace(/\r?\n/g, '\r\n');
    out(f.t_us, text);
  }
  const header: Header = {
    version: 2,
    width: size?.cols ?? 80,
    height: size?.rows ?? 24,
    timestamp: Math.floor(Date.parse(session.started_at) / 1000),
    title: `sluice ${session.id}: ${session.sub} → ${session.target}`,
    env: { TERM: size?.term ?? 'xterm', SHELL: '/bin/sh' },
  };
  return [JSON.stringify(header), ...events];
}
