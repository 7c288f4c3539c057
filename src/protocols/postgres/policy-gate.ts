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
import { CONTINUE, type Action, type Held, type Refusal, type RefusalKind, type Transport } from '../../governance/pipeline.js';
import { analyzeSql, type QueryFacts } from '../../policy/sql/facts.js';
import { sqlCacheKey } from '../../policy/sql/cache-key.js';
import { F } from './constants.js';
import { errorResponse, noticeResponse, parseFields, queryMessage } from './messages.js';
import type { ClientText } from './encoding.js';

interface Pending {
  error: Buffer;
  /** Query/Sync/FunctionCall messages forwarded before the marker: its batch. */
  batch: number;
}

/** A statement waiting for approval. */
export interface HeldStatement {
  handle: Held;
  /** A copy of the original message, sent as is when approved. */
  message: Buffer;
  /** The prepared statement's name (with its NUL) when the message is a Parse. */
  parseName: Buffer | null;
}

/** What the gate needs from the relay. */
export interface GateHooks {
  /** A message for the server, in order with the client's. */
  emit(buf: Buffer): void;
  /** A notice for the client (approval waiting, approved). */
  notice(buf: Buffer): void;
  /** The held statement is settled: take the client's stream again. */
  resumeClient(): void;
}

/** How a refusal reads on the Postgres wire: its SQLSTATE. */
const SQLSTATE: Record<RefusalKind, string> = {
  policy: '42501',
  unparsable: '42601',
  approval_denied: '42501',
  approval_expired: '57014',
  approval_withdrawn: '57014',
  not_allowed: '42501',
};

/** A governance refusal as the ErrorResponse the client sees; the session goes on. */
export function refusalError(r: Refusal): Buffer {
  return errorResponse({
    severity: 'ERROR',
    code: SQLSTATE[r.kind],
    message: `sluice: ${r.message}`,
    detail: 'The statement was not run; the session goes on.',
    hint:
      r.kind === 'approval_expired'
        ? 'Ask an approver to decide sooner (sluice approvals list), then run the statement again.'
        : r.kind === 'policy' || r.kind === 'unparsable'
          ? 'Run `sluice policy check` with the same statement to see why; ask the gateway owner if the policy is wrong.'
          : undefined,
  });
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

export class PolicyGate implements Transport {
  /** After a denied Parse, the client's messages up to Sync are dropped (the server would skip them too). */
  private discarding = false;
  private forwardedSyncs = 0;
  private readyCount = 0;
  private readonly pending = new Map<string, Pending>();
  /** The statement waiting for approval, if any (the client stream is paused behind it). */
  held: HeldStatement | null = null;
  /** Set by the relay before each message: the server was still busy with earlier requests. */
  serverBusy = false;
  /** The action being governed; one object per connection (the pipeline copies what it keeps). */
  private readonly action: Action = { text: '', analyze: analyzeSql, cacheKey: undefined, noun: 'statement', runs: 1, display: undefined };
  /** The message being governed: where it is, and its prepared statement's name for a Parse. */
  private cur: { buf: Buffer; start: number; end: number; parseName: Buffer | null } = { buf: Buffer.alloc(0), start: 0, end: 0, parseName: null };

  constructor(
    private readonly session: Session,
    private readonly hooks: GateHooks,
    /** The client's encoding: SQL text is decoded with it. */
    private readonly text: ClientText,
  ) {}

  /** Whether the frontend handler must see this message whole. */
  wants(type: number): boolean {
    if (this.discarding) return type !== F.Sync && type !== F.Flush;
    if (type !== F.Query && type !== F.Parse && type !== F.FunctionCall) return false;
    if (this.session.gov.deciding) return true;
    // No policy: nothing to decide, the message streams through; it is still counted.
    if (type !== F.Parse) this.session.gov.pass();
    return false;
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
    const a = this.action;
    const cur = this.cur;
    cur.buf = buf;
    cur.start = start;
    cur.end = end;
    cur.parseName = null;
    a.display = undefined;
    if (type === F.Query || type === F.Parse) {
      let from = start + 5;
      let to = end - 1;
      if (type === F.Parse) {
        const z = buf.indexOf(0, start + 5);
        cur.parseName = buf.subarray(start + 5, z + 1); // with its NUL
        const q = buf.indexOf(0, z + 1);
        from = z + 1;
        to = q < 0 || q >= end ? end : q;
      }
      const sql = this.text.codec.decode(buf, from, to);
      a.text = sql;
      // Text Sluice may not read as the server will (see analyzeSqlUnsureEncoding).
      a.analyze = (this.serverBusy || !this.text.codec.exact) && NON_ASCII.test(sql) ? analyzeSqlUnsureEncoding : analyzeSql;
      a.cacheKey = sqlCacheKey(sql);
      a.runs = type === F.Parse ? 0 : 1; // a Parse only prepares; its Executes are counted as they come
    } else {
      // FunctionCall: int32 function OID after the header.
      const oid = buf.readUInt32BE(start + 5);
      a.text = `\0oid:${oid}`;
      a.analyze = functionCallFacts;
      a.cacheKey = undefined;
      a.runs = 1;
      a.display = `function call (oid ${oid})`;
    }
    return this.session.gov.govern(a, this) === CONTINUE;
  }

  // ---- the pipeline's transport ----

  /** Refused now (the message being governed) or after a hold (the held message): a marker takes its place. */
  refuse(r: Refusal): void {
    const h = this.held;
    if (h) this.answer(refusalError(r), h.parseName);
    else this.answer(refusalError(r), this.cur.parseName);
  }

  /** Keeps a copy of the message; the relay pauses the client stream behind it. */
  pause(handle: Held): void {
    const { buf, start, end, parseName } = this.cur;
    this.held = { handle, message: Buffer.from(buf.subarray(start, end)), parseName: parseName ? Buffer.from(parseName) : null };
  }

  notify(text: string, held: Held, kind: 'held' | 'approved'): void {
    if (kind !== 'held') return; // the result that follows says it ran
    this.hooks.notice(noticeResponse({ severity: 'NOTICE', code: '00000', message: text, detail: `Statement held by rule ${held.decision.rule}: ${held.decision.message}`, hint: 'Press Ctrl-C to withdraw the request.' }));
  }

  proceed(): void {
    const h = this.held;
    if (!h) return;
    this.hooks.emit(h.message);
    this.forwarded(h.message[0]!);
  }

  resume(): void {
    this.held = null;
    this.hooks.resumeClient();
  }

  /** Sends a marker in place of a statement; the server's error for it is swapped for `error`. */
  private answer(error: Buffer, parseName: Buffer | null): void {
    const m = marker();
    this.pending.set(m, { error, batch: this.forwardedSyncs });
    const msg = parseName ? parseMessage(parseName, m) : queryMessage(m);
    this.hooks.emit(msg);
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
