// The audit trail of governed actions: one log line per decision (allowed
// statements on a pre-serialised fast path), and denials, reviews and refused
// side channels kept queryable (`sluice audit`).

import { rawLineWriter, type Logger } from '../observability/log.js';
import type { Decision } from '../policy/engine.js';
import type { QueryFacts } from '../policy/sql/facts.js';
import type { Session } from '../session/session.js';

/** Where queryable audit events go (the gateway keeps them with the recordings). */
export interface AuditSink {
  auditEvent(event: Record<string, unknown>): void;
}

/**
 * The recording's `policy.decision` event of a decision, serialised once per decision object: a
 * statement whose decision comes from the policy cache gets the same object, and stringifying
 * the event cost ~0.5 µs per statement.
 */
const decisionEvents = new WeakMap<Decision, Buffer>();
export function decisionEvent(d: Decision): Buffer {
  let b = decisionEvents.get(d);
  if (b === undefined) {
    const e = { event: 'policy.decision', decision: d.action, policy: d.policy, rule: d.rule, kind: d.kind, message: d.action === 'allow' ? undefined : d.message };
    decisionEvents.set(d, (b = Buffer.from(JSON.stringify(e), 'utf8')));
  }
  return b;
}

let lastMs = 0;
let lastIso = '';
/** The current time as pino writes it, formatted at most once per millisecond. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** `,"k":v,…` for the defined values, as JSON. */
function jsonFields(o: Record<string, unknown>): string {
  let out = '';
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
  return out;
}

/** The fields of one request's audit line (HTTP). */
export interface RequestAuditFields {
  method: string;
  /** Normalised path and query, as the policy saw it. */
  path: string;
  status: number;
  /** ok, denied, held, refused, upstream_error, client_abort, killed, error. */
  outcome: string;
  bytes_in: number;
  bytes_out: number;
  ms: number;
  /** Values masked in the response. */
  masked: number;
  decision?: string;
  policy?: string;
  rule?: string;
  error?: string;
}

export class Auditor {
  /** Direct writes of pre-built audit lines (null: go through pino). */
  private readonly raw: ((line: string) => void) | null;
  /** Serialised decision part of an allowed-statement line, per cached decision. */
  private readonly lineTails = new WeakMap<object, string>();

  constructor(
    readonly log: Logger,
    private readonly host: AuditSink,
  ) {
    this.raw = rawLineWriter(log);
  }

  /** One audit event per decision: who, where, what (normalised, literals removed) and why. */
  decision(s: Session, d: Decision, facts: QueryFacts | undefined, cached?: object): void {
    const level = d.action === 'allow' ? 'info' : 'warn';
    const denied = d.action !== 'allow';
    // Fingerprint and normalised text each cost a parse: only when they are written.
    const logged = this.log.isLevelEnabled(level);
    if (!logged && !denied) return;
    if (!denied && cached && this.raw) {
      // The hot path (one line per allowed statement): the session's and the
      // decision's parts of the line are serialised once and reused.
      let tail = this.lineTails.get(cached);
      if (tail === undefined) {
        tail = `${jsonFields({ decision: d.action, policy: d.policy, rule: d.rule, kind: d.kind, fingerprint: facts?.fingerprint, query: facts?.normalized })},"msg":"statement allowed"}\n`;
        this.lineTails.set(cached, tail);
      }
      s.logHead ??= jsonFields({ event: 'policy.decision', session: s.id, sub: s.init.identity.sub, target: s.init.target, protocol: s.init.protocol });
      this.raw(`{"level":"info","time":"${isoNow()}","svc":"sluice"${s.logHead}${tail}`);
      return;
    }
    const event = {
      event: 'policy.decision',
      time: new Date().toISOString(),
      session: s.id,
      sub: s.init.identity.sub,
      target: s.init.target,
      protocol: s.init.protocol,
      decision: d.action,
      policy: d.policy,
      rule: d.rule,
      kind: d.kind,
      fingerprint: facts?.fingerprint,
      query: facts?.normalized,
    };
    // Denials and reviews are kept queryable; allowed statements only in the log stream.
    if (denied) this.host.auditEvent(event);
    if (logged) this.log[level](event, denied ? `statement ${d.action === 'deny' ? 'denied' : 'held for review'}: ${d.message}` : 'statement allowed');
  }

  /**
   * One line per request for protocols that audit at the end of an action (HTTP): who (identity and
   * CI claims), what, the decision and the result. Refused and held ones are also kept queryable.
   */
  request(s: Session, f: RequestAuditFields): void {
    const refused = f.decision !== undefined && f.decision !== 'allow';
    const failed = f.outcome !== 'ok';
    if (!refused && !failed && this.raw) {
      // The hot path (one line per relayed request): the session's part is serialised once.
      if (!this.log.isLevelEnabled('info')) return;
      const id = s.init.identity;
      s.requestHead ??= jsonFields({ event: 'http.request', session: s.id, sub: id.sub, issuer: id.issuerName, target: s.init.target, protocol: s.init.protocol, claims: ciClaims(id.claims) });
      const line = `,"method":${JSON.stringify(f.method)},"path":${JSON.stringify(f.path)},"status":${f.status},"outcome":"ok","bytes_in":${f.bytes_in},"bytes_out":${f.bytes_out},"ms":${f.ms}${f.masked ? `,"masked":${f.masked}` : ''}${f.decision === undefined ? '' : `,"decision":"allow","policy":${JSON.stringify(f.policy)},"rule":${JSON.stringify(f.rule)}`}`;
      this.raw(`{"level":"info","time":"${isoNow()}","svc":"sluice"${s.requestHead}${line},"msg":${JSON.stringify(`${f.method} ${f.path} ${f.status}`)}}\n`);
      return;
    }
    const level = refused || failed ? 'warn' : 'info';
    if (!this.log.isLevelEnabled(level) && !refused) return;
    const id = s.init.identity;
    const line = { event: 'http.request', session: s.id, sub: id.sub, issuer: id.issuerName, target: s.init.target, protocol: s.init.protocol, claims: ciClaims(id.claims), ...f };
    if (refused) this.host.auditEvent({ ...line, time: new Date().toISOString() });
    this.log[level](line, `${f.method} ${f.path} ${f.status} ${f.outcome}`);
  }

  /** A side channel (forwarding, sftp write, shell, x11, agent) allowed or refused: logged; a refusal is also kept queryable. */
  sideChannel(s: Session, fields: Record<string, unknown>, allowed: boolean, msg: string, quiet = false): void {
    const line = { ...fields, session: s.id, sub: s.init.identity.sub, target: s.init.target };
    if (allowed) {
      this.log[quiet ? 'debug' : 'info'](line, msg);
      return;
    }
    this.log.warn(line, msg);
    this.host.auditEvent({ ...line, time: new Date().toISOString(), decision: 'deny', protocol: s.init.protocol });
  }
}

/** Registered JWT claims are in the identity already; the rest (CI claims: repository, workflow, run id, …) go to the audit line. */
const REGISTERED = new Set(['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'groups']);
const ciClaimsCache = new WeakMap<object, Record<string, unknown>>();
function ciClaims(claims: Record<string, unknown>): Record<string, unknown> {
  let c = ciClaimsCache.get(claims);
  if (!c) {
    c = {};
    for (const k in claims) if (!REGISTERED.has(k)) c[k] = claims[k];
    ciClaimsCache.set(claims, c);
  }
  return c;
}
