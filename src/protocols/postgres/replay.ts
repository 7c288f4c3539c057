// Rendering a recorded Postgres session for a DBA: each statement with its time,
// duration, decision and rule, its result as a table (first N rows) with the
// row count, errors and notices. Works from the recording alone (the target may
// be offline): both directions are re-framed with the relay's own Framer.

import { Dir, type Frame } from '../../recording/types.js';
import { B, F } from './constants.js';
import { Framer, type FrameHandler } from './framer.js';
import { parseFields } from './messages.js';

import type { ReplayOptions } from '../kit/module.js';
import { approvalLine } from '../kit/replay-lines.js';

export type { ReplayOptions };

interface Statement {
  /** From a simple Query (ends at ReadyForQuery) or an Execute (ends at its CommandComplete). */
  simple: boolean;
  t_us: number;
  text: string;
  decision?: { action: string; rule?: string; policy?: string; message?: string };
  columns?: string[];
  rows: string[][];
  rowCount: number;
  tags: string[];
  errors: string[];
  notices: string[];
  /** Approval events while the statement was held. */
  approvals?: string[];
  done_us?: number;
}

const cstr = (buf: Buffer, o: number): [string, number] => {
  const z = buf.indexOf(0, o);
  return [buf.toString('utf8', o, z), z + 1];
};

class Collector {
  statements: Statement[] = [];
  /** Statements sent and not yet answered, in order (the protocol is FIFO). */
  private pending: Statement[] = [];
  private current: Statement | null = null;
  now = 0;
  private bytesFromClient = 0;
  private bytesToClient = 0;

  constructor(private readonly maxRows: number) {}

  front: FrameHandler = {
    wantsMessage: (type) => type === F.Query || type === F.Parse || type === F.Sync || type === F.Execute,
    onMessage: (type, buf, s) => {
      if (type === F.Query) this.begin(cstr(buf, s + 5)[0], true);
      else if (type === F.Parse) {
        const [, o] = cstr(buf, s + 5);
        this.parsed = cstr(buf, o)[0];
      } else if (type === F.Execute) {
        this.begin(this.parsed ?? '(prepared statement)', false);
      }
      return true;
    },
  };
  private parsed: string | null = null;
  private skipToSync = false;

  private begin(text: string, simple: boolean): void {
    const st: Statement = { simple, t_us: this.now, text, rows: [], rowCount: 0, tags: [], errors: [], notices: [] };
    this.statements.push(st);
    this.pending.push(st);
  }

  private head(): Statement | null {
    this.current ??= this.pending.shift() ?? null;
    return this.current;
  }

  back: FrameHandler = {
    wantsMessage: () => true,
    onMessage: (type, buf, s, e) => {
      const st = this.head();
      switch (type) {
        case B.RowDescription: {
          if (!st) break;
          const n = buf.readInt16BE(s + 5);
          let o = s + 7;
          st.columns = [];
          for (let i = 0; i < n; i++) {
            const [name, next] = cstr(buf, o);
            st.columns.push(name);
            o = next + 18;
          }
          break;
        }
        case B.DataRow: {
          if (!st) break;
          st.rowCount++;
          if (st.rows.length >= this.maxRows) break;
          const n = buf.readInt16BE(s + 5);
          let o = s + 7;
          const row: string[] = [];
          for (let i = 0; i < n; i++) {
            const len = buf.readInt32BE(o);
            o += 4;
            if (len < 0) row.push('NULL');
            else {
              row.push(buf.toString('utf8', o, o + len));
              o += len;
            }
          }
          st.rows.push(row);
          break;
        }
        case B.CommandComplete:
          if (!st) break;
          st.tags.push(cstr(buf, s + 5)[0]);
          if (!st.simple) {
            st.done_us = this.now;
            this.current = null;
          }
          break;
        case B.ErrorResponse: {
          const f = parseFields(buf, s + 5, e);
          st?.errors.push(`${f.S ?? 'ERROR'} ${f.C ?? ''}: ${f.M ?? ''}${f.D ? ` (${f.D})` : ''}`);
          if (st && !st.simple) {
            // The server skips the rest of the batch: its statements get no answer.
            st.done_us = this.now;
            this.current = null;
            this.skipToSync = true;
          }
          break;
        }
        case B.NoticeResponse: {
          const f = parseFields(buf, s + 5, e);
          (st ?? this.statements[this.statements.length - 1])?.notices.push(`${f.S ?? 'NOTICE'}: ${f.M ?? ''}`);
          break;
        }
        case B.ReadyForQuery:
          if (st && st.done_us === undefined) st.done_us = this.now;
          this.current = null;
          if (this.skipToSync) {
            // Executes after an error in the same batch were never run.
            while (this.pending.length && !this.pending[0]!.simple) this.pending.shift();
            this.skipToSync = false;
          }
          break;
      }
      return true;
    },
  };

  event(obj: Record<string, unknown>): void {
    if (obj.event === 'policy.decision') {
      // The decision precedes the statement's bytes reaching the server; attach to the latest statement sent.
      const st = this.statements[this.statements.length - 1];
      if (st && !st.decision) st.decision = { action: String(obj.decision), rule: obj.rule as string, policy: obj.policy as string, message: obj.message as string };
    } else if (typeof obj.event === 'string' && obj.event.startsWith('approval.')) {
      const st = this.statements[this.statements.length - 1];
      if (st) (st.approvals ??= []).push(approvalLine(obj));
    }
  }

  count(dir: Dir, n: number): void {
    if (dir === Dir.ClientToGateway) this.bytesFromClient += n;
    else this.bytesToClient += n;
  }
}

function table(columns: string[] | undefined, rows: string[][]): string[] {
  if (!columns) return [];
  const width = columns.map((c, i) => Math.min(40, Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length))));
  const cell = (v: string, i: number) => (v.length > width[i]! ? v.slice(0, width[i]! - 1) + '…' : v.padEnd(width[i]!));
  const lines = [' ' + columns.map(cell).join(' | '), '-' + width.map((w) => '-'.repeat(w)).join('-+-') + '-'];
  for (const r of rows) lines.push(' ' + r.map((v, i) => cell(v.replace(/\n/g, '\\n'), i)).join(' | '));
  return lines;
}

/** Renders frames of a Postgres session as text lines. */
export function renderPostgres(frames: Iterable<Frame>, opts: ReplayOptions): string[] {
  const c = new Collector(opts.rows);
  const front = new Framer(c.front, 0x7fffffff);
  const back = new Framer(c.back, 0x7fffffff);
  // Client frames are re-framed from the first complete message; the startup
  // exchange happened before recording began, so streams start at a boundary.
  let closeReason: string | undefined;
  for (const f of frames) {
    c.now = f.t_us;
    if (f.dir === Dir.Event) {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(f.payload.toString('utf8'));
      } catch {
        continue;
      }
      if (obj.event === 'session.close') closeReason = String(obj.reason ?? '');
      c.event(obj);
      continue;
    }
    c.count(f.dir, f.payload.length);
    try {
      (f.dir === Dir.ClientToGateway ? front : back).push(f.payload);
      front.take();
      back.take();
    } catch {
      // A recording of a protocol violation: show what came before it.
    }
  }
  const out: string[] = [];
  const at = (us: number) =>
    opts.startedAt ? new Date(opts.startedAt.getTime() + us / 1000).toISOString().slice(11, 23) : `+${(us / 1e6).toFixed(3)}s`;
  for (const st of c.statements) {
    const dur = st.done_us !== undefined ? ` (${((st.done_us - st.t_us) / 1000).toFixed(1)} ms)` : ' (no answer recorded)';
    const decision = st.decision ? `  [${st.decision.action}${st.decision.rule ? ` by ${st.decision.policy ? `${st.decision.policy} ` : ''}${st.decision.rule}` : ''}]` : '';
    out.push(`${at(st.t_us)}${dur}${decision}`);
    out.push(...st.text.trim().split('\n').map((l) => `  > ${l}`));
    for (const a of st.approvals ?? []) out.push(`  ${a}`);
    for (const n of st.notices) out.push(`  ${n}`);
    if (st.columns) {
      out.push(...table(st.columns, st.rows).map((l) => `  ${l}`));
      out.push(`  (${st.rowCount} row${st.rowCount === 1 ? '' : 's'}${st.rowCount > st.rows.length ? `, first ${st.rows.length} shown` : ''})`);
    }
    for (const t of st.tags) if (!st.columns) out.push(`  ${t}`);
    for (const e of st.errors) out.push(`  ${e}`);
    out.push('');
  }
  if (closeReason) out.push(`session closed: ${closeReason}`);
  return out;
}
