// Statement policy on the Postgres wire.
//
// A denied statement never reaches the server. In its place Sluice sends a
// marker statement that the server rejects at once (a bare identifier is a
// syntax error), then swaps the server's error for Sluice's own in the response
// stream. The server's error handling therefore stays exactly Postgres': an
// explicit transaction is aborted, an extended-query batch is skipped up to
// Sync, a named statement that was denied is never created (a later Bind of it
// fails on the server), and responses stay in order however deeply the client
// pipelines. The cost is one round trip per denial, only for denials.
//
// A `review` decision holds the statement: the gate keeps a copy of the
// message, the relay pauses the client stream behind it and shows the client a
// notice, and when the approval settles the gate sends either the original
// message or a marker carrying the outcome as an error.

import { randomBytes } from 'node:crypto';
import type { Session } from '../../session/session.js';
import type { ApprovalHandle, ApprovalOutcome } from '../../governance/approvals.js';
import type { Decision } from '../../policy/engine.js';
import { analyzeSql, type QueryFacts } from '../../policy/sql/facts.js';
import { sqlCacheKey } from '../../policy/sql/cache-key.js';
import { F } from './constants.js';
import { errorResponse, parseFields, queryMessage } from './messages.js';
import type { ClientText } from './encoding.js';

interface Pending {
  error: Buffer;
  /** Query/Sync/FunctionCall messages forwarded before the marker: its batch. */
  batch: number;
}

/** A statement waiting for approval. */
export interface Held {
  handle: ApprovalHandle;
  decision: Decision;
  /** A copy of the original message, sent as is when approved. */
  message: Buffer;
  build: (text: string) => Buffer;
  parseName: Buffer | null;
}

function marker(): string {
  return `sluice_denied_${randomBytes(6).toString('hex')}`;
}


function parseMessage(name: Buffer, text: string): Buffer {
  const q = Buffer.from(text + '\0', 'utf8');
  const len = 4 + name.length + q.length + 2;
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = F.Parse;
  out.writeInt32BE(len, 1);
  name.copy(out, 5);
  q.copy(out, 5 + name.length);
  out.writeInt16BE(0, 5 + name.length + q.length);
  return out;
}

const NON_ASCII = /[^\x00-\x7f]/;
const nonAsciiName = (names: string[]) => names.some((n) => NON_ASCII.test(n));

/**
 * analyzeSql for text Sluice may not read as the server will: sent while earlier
 * requests were still running (any of them may change client_encoding, and the
 * server reports that only when it is done), or in an encoding Sluice cannot
 * decode. ASCII is the same bytes in every encoding that gets here, so only
 * non-ASCII names are in doubt: a statement with one cannot be read (policy.on_parse_error).
 * A separate function, so its decisions are cached apart from analyzeSql's.
 */
function analyzeSqlUnsureEncoding(sql: string): QueryFacts {
  const f = analyzeSql(sql);
  if (f.parse_error !== undefined) return f;
  if (!f.statements.some((s) => nonAsciiName(s.tables_read) || nonAsciiName(s.tables_written) || nonAsciiName(s.functions))) return f;
  return {
    statements: [],
    parse_error:
      'it names objects with non-ASCII characters, and Sluice cannot be sure which client_encoding the server reads it in (it was sent before the results of earlier requests, or the encoding is one Sluice cannot decode); send it on its own, in UTF8 or a single-byte encoding',
  };
}

/** Facts for a fast-path FunctionCall: a function by OID, no SQL to read. */
function functionCallFacts(text: string): QueryFacts {
  return {
    statements: [{ kind: 'function_call', tables_read: [], tables_written: [], functions: [text.slice(1)], changes_state: true, via: 'top' }],
  };
}

export class PolicyGate {
  /** After a denied Parse, the client's messages up to Sync are dropped (the server would skip them too). */
  private discarding = false;
  private forwardedSyncs = 0;
  private readyCount = 0;
  private readonly pending = new Map<string, Pending>();
  /** The statement waiting for approval, if any (the client stream is paused behind it). */
  held: Held | null = null;
  /** Set by the relay before each message: the server was still busy with earlier requests. */
  serverBusy = false;

  constructor(
    private readonly session: Session,
    private readonly emit: (buf: Buffer) => void,
    /** The client's encoding: SQL text is decoded with it. */
    private readonly text: ClientText,
  ) {}

  /** Decides a statement, read in the client's encoding. */
  private decideSql(sql: string): Decision | null {
    const codec = this.text.codec;
    if ((this.serverBusy || !codec.exact) && NON_ASCII.test(sql)) return this.session.decide(sql, analyzeSqlUnsureEncoding, sqlCacheKey(sql));
    return this.session.decide(sql, analyzeSql, sqlCacheKey(sql));
  }

  /** Whether the frontend handler must see this message whole. */
  wants(type: number): boolean {
    if (this.discarding) return type !== F.Sync && type !== F.Flush;
    if (type !== F.Query && type !== F.Parse && type !== F.FunctionCall) return false;
    return this.session.policy() !== null;
  }

  /** Counts what reaches the server, to know which batch a marker belongs to. */
  forwarded(type: number): void {
    if (type === F.Query || type === F.Sync || type === F.FunctionCall) {
      this.forwardedSyncs++;
      if (type === F.Sync) this.discarding = false;
    }
  }

  /** A whole frontend message the gate asked for. Returns true to forward it unchanged. */
  onFrontend(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.discarding) return false;
    if (type === F.Query) {
      const sql = this.text.codec.decode(buf, start + 5, end - 1);
      const d = this.decideSql(sql);
      if (!d || d.action === 'allow') return true;
      if (d.action === 'review') this.hold(d, sql, buf, start, end, queryMessage, null);
      else this.deny(d, queryMessage, null);
      return false;
    }
    if (type === F.Parse) {
      const z = buf.indexOf(0, start + 5);
      const name = buf.subarray(start + 5, z + 1); // with its NUL
      const q = buf.indexOf(0, z + 1);
      const sql = this.text.codec.decode(buf, z + 1, q < 0 || q >= end ? end : q);
      const d = this.decideSql(sql);
      if (!d || d.action === 'allow') return true;
      const build = (text: string) => parseMessage(name, text);
      if (d.action === 'review') this.hold(d, sql, buf, start, end, build, Buffer.from(name));
      else this.deny(d, build, name);
      return false;
    }
    // FunctionCall: int32 function OID after the header.
    const oid = buf.readUInt32BE(start + 5);
    const d = this.session.decide(`\0oid:${oid}`, functionCallFacts);
    if (!d || d.action === 'allow') return true;
    if (d.action === 'review') this.hold(d, `function call (oid ${oid})`, buf, start, end, queryMessage, null);
    else this.deny(d, queryMessage, null);
    return false;
  }

  /** Asks for approval; the relay pauses the client stream while `held` is set. */
  private hold(d: Decision, statement: string, buf: Buffer, start: number, end: number, build: (text: string) => Buffer, parseName: Buffer | null): void {
    const handle = this.session.requestApproval(statement, d);
    this.held = { handle, decision: d, message: Buffer.from(buf.subarray(start, end)), build, parseName };
  }

  /** The held statement's approval settled: forward it, or answer it with the outcome as an error. */
  settle(o: ApprovalOutcome): void {
    const h = this.held;
    if (!h) return;
    this.held = null;
    if (o.status === 'approved') {
      this.emit(h.message);
      this.forwarded(h.message[0]!);
      return;
    }
    const id = h.handle.id;
    let code = '42501';
    let message: string;
    let detail = 'The statement was not run; the session goes on.';
    if (o.status === 'denied') {
      message = `sluice: statement denied by approver ${o.approver}${o.reason ? `: ${o.reason}` : ''} (approval ${id}, rule ${h.decision.rule})`;
    } else if (o.status === 'expired') {
      code = '57014';
      message = `sluice: approval ${id} timed out after ${Math.round(o.after_ms / 1000)} s without a decision; the statement was not run`;
      detail = 'Ask an approver to decide sooner (sluice approvals list), then run the statement again.';
    } else {
      code = '57014';
      message = `canceling statement due to user request (approval ${id} withdrawn)`;
    }
    this.answer(errorResponse({ severity: 'ERROR', code, message, detail }), h.build, h.parseName);
  }

  private deny(d: Decision, build: (text: string) => Buffer, parseName: Buffer | null): void {
    const error = errorResponse({
      severity: 'ERROR',
      code: d.rule === 'on_parse_error' ? '42601' : '42501',
      message: `sluice: statement denied: ${d.message}`,
      detail: 'The statement was not run; the session goes on.',
      hint: 'Run `sluice policy check` with the same statement to see why; ask the gateway owner if the policy is wrong.',
    });
    this.answer(error, build, parseName);
  }

  /** Sends a marker in place of a statement; the server's error for it is swapped for `error`. */
  private answer(error: Buffer, build: (text: string) => Buffer, parseName: Buffer | null): void {
    const m = marker();
    this.pending.set(m, { error, batch: this.forwardedSyncs });
    const msg = build(m);
    this.emit(msg);
    this.forwarded(msg[0]!);
    if (parseName) this.discarding = true;
  }

  /** True while a denial's error is on its way back. */
  get awaitingError(): boolean {
    return this.pending.size > 0;
  }

  /** A server ErrorResponse: Sluice's own error when it answers a marker, else null. */
  replaceError(buf: Buffer, start: number, end: number): Buffer | null {
    const fields = parseFields(buf, start + 5, end);
    const m = /sluice_denied_[0-9a-f]{12}/.exec(fields.M ?? '');
    if (!m) return null;
    const p = this.pending.get(m[0]);
    if (!p) return null;
    this.pending.delete(m[0]);
    return p.error;
  }

  /** ReadyForQuery: markers of finished batches that got no error (the server skipped them) are dropped. */
  onReady(): void {
    this.readyCount++;
    if (this.pending.size === 0) return;
    for (const [k, p] of this.pending) if (p.batch < this.readyCount) this.pending.delete(k);
  }
}
