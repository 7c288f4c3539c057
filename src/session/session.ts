import { randomBytes } from 'node:crypto';
import type { Logger } from '../observability/log.js';
import { Auditor } from '../governance/audit.js';
import { Governor } from '../governance/pipeline.js';
import type { Identity } from '../identity/types.js';
import type { ClientInfo } from '../protocols/kit/module.js';
import type { Decision, PolicySet } from '../policy/engine.js';
import type { QueryFacts } from '../policy/sql/facts.js';
import type { MaskingSet } from '../policy/masking/ruleset.js';
import type { MaskContext } from '../policy/masking/strategies.js';
import type { RecordingStore, SessionRecorder } from '../recording/store.js';
import type { ApprovalBroker, ApprovalHandle } from '../governance/approvals.js';
import type { Tallies } from '../observability/metrics.js';

/** What sessions need from the core: policy, masking, recording; `generation` changes on every config reload. */
export interface SessionHost {
  readonly generation: number;
  resolve(identity: Identity, target: string, protocol: string): PolicySet | null;
  resolveMasking(identity: Identity, target: string, protocol: string): MaskingSet | null;
  /** The gateway's key for the `hash` strategy. */
  readonly maskContext: MaskContext;
  /** The recording store, when recording is on and the store can write. */
  recordingStore(): RecordingStore | null;
  /** Keeps an audit event queryable (`sluice audit`); the log line is written separately. */
  auditEvent(event: Record<string, unknown>): void;
  /** Just-in-time approvals of `review` decisions. */
  readonly approvals: ApprovalBroker;
  /** Plain counters read by /metrics. */
  readonly tallies: Tallies;
}

/** What masking did to one statement's results: counts per column rule and per detector, never values. */
export interface MaskingCounts {
  columns: Record<string, number>;
  detectors: Record<string, number>;
}

export interface SessionInit {
  protocol: string;
  identity: Identity;
  target: string;
  client: ClientInfo;
  /** Ends the session from outside (kill switch, shutdown). Must be idempotent. */
  terminate(reason: string): void;
}

export interface SessionSummary {
  id: string;
  protocol: string;
  sub: string;
  groups: string[];
  issuer: string;
  target: string;
  client: string;
  started_at: string;
  ended_at?: string;
  bytes_from_client: number;
  bytes_to_client: number;
  statements: number;
  denied: number;
  masked: number;
  /** Ids of approval requests this session is waiting on. */
  waiting_approvals: string[];
  close_reason?: string;
}

/** Short, URL-safe, unguessable session id (base32 of 10 random bytes). */
function newId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const b = randomBytes(10);
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const byte of b) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet[(acc >>> bits) & 31];
    }
  }
  return out;
}

export class Session {
  readonly id = newId();
  readonly startedAt = new Date();
  endedAt?: Date;
  /** Counters are plain fields: the hot path bumps them without calls. */
  bytesFromClient = 0;
  bytesToClient = 0;
  statements = 0;
  denied = 0;
  closeReason?: string;
  private policyGen = -1;
  private policySet: PolicySet | null = null;
  private maskingGen = -1;
  private maskingSet: MaskingSet | null = null;
  /** Values masked over the whole session. */
  masked = 0;
  /** Records both directions and events; absent when recording is off. */
  recorder?: SessionRecorder;
  /** The session's fields of an audit line, serialised once. */
  logHead?: string;
  /** The same for protocols with one audit line per request (HTTP). */
  requestHead?: string;
  /** Facts of the last statement decided (for the approval fingerprint). */
  lastFacts?: QueryFacts;
  /** Approval requests of this session still waiting. */
  readonly waiting = new Set<ApprovalHandle>();
  /** The governance pipeline: every action this session's protocol governs goes through it. */
  readonly gov: Governor = new Governor(this);

  constructor(
    readonly init: SessionInit,
    readonly registry: SessionRegistry,
  ) {}

  get identity(): Identity {
    return this.init.identity;
  }

  /** The statement policy in force for this session (re-read after a config reload); null: none. */
  policy(): PolicySet | null {
    const p = this.registry.policies;
    if (this.policyGen !== p.generation) {
      this.policySet = p.resolve(this.init.identity, this.init.target, this.init.protocol);
      this.policyGen = p.generation;
    }
    return this.policySet;
  }

  /** The masking in force for this session (re-read after a config reload); null: none. */
  masking(): MaskingSet | null {
    const p = this.registry.policies;
    if (this.maskingGen !== p.generation) {
      this.maskingSet = p.resolveMasking(this.init.identity, this.init.target, this.init.protocol);
      this.maskingGen = p.generation;
    }
    return this.maskingSet;
  }

  get maskContext(): MaskContext {
    return this.registry.policies.maskContext;
  }

  /** Audit event for masking done on one statement's results (or one HTTP response); returns the values masked. */
  maskingApplied(counts: MaskingCounts, opts: { log?: boolean; req?: number } = {}): number {
    let n = 0;
    for (const k in counts.columns) n += counts.columns[k]!;
    for (const k in counts.detectors) n += counts.detectors[k]!;
    if (n === 0) return 0;
    this.masked += n;
    const tally = this.registry.policies.tallies.masked;
    for (const [k, v] of Object.entries(counts.columns)) tally.set(k, (tally.get(k) ?? 0) + v);
    for (const [k, v] of Object.entries(counts.detectors)) tally.set(k, (tally.get(k) ?? 0) + v);
    this.recorder?.event({ event: 'masking.applied', req: opts.req, values: n, columns: counts.columns, detectors: counts.detectors });
    // Protocols with one audit line per request put the count there instead (HTTP).
    if (opts.log === false) return n;
    this.registry.log.info(
      { event: 'masking.applied', session: this.id, sub: this.init.identity.sub, target: this.init.target, values: n, columns: counts.columns, detectors: counts.detectors },
      `masked ${n} value(s)`,
    );
    return n;
  }

  /** Asks the protocol module to end the session; it then calls close(). */
  terminate(reason: string): void {
    this.init.terminate(reason);
  }

  /** Marks the session ended; idempotent. Called by the protocol module. */
  close(reason: string): void {
    if (this.endedAt) return;
    this.endedAt = new Date();
    this.closeReason = reason;
    for (const h of this.waiting) h.withdraw(`the session ended (${reason})`);
    if (this.recorder) {
      this.recorder.event({ event: 'session.close', reason });
      void this.recorder.close({ reason, bytes_from_client: this.bytesFromClient, bytes_to_client: this.bytesToClient }).catch(() => {});
    }
    this.registry.closed(this);
  }

  summary(): SessionSummary {
    const { identity, client } = this.init;
    return {
      id: this.id,
      protocol: this.init.protocol,
      sub: identity.sub,
      groups: identity.groups,
      issuer: identity.issuer,
      target: this.init.target,
      client: `${client.address}:${client.port}`,
      started_at: this.startedAt.toISOString(),
      ended_at: this.endedAt?.toISOString(),
      bytes_from_client: this.bytesFromClient,
      bytes_to_client: this.bytesToClient,
      statements: this.statements,
      denied: this.denied,
      masked: this.masked,
      waiting_approvals: [...this.waiting].map((h) => h.id),
      close_reason: this.closeReason,
    };
  }
}

/** The live-session registry: what is connected right now, by whom, to what. */
export class SessionRegistry {
  private readonly live = new Map<string, Session>();
  /** The audit trail of governed actions. */
  readonly auditor: Auditor;

  constructor(
    readonly log: Logger,
    readonly policies: SessionHost,
  ) {
    this.auditor = new Auditor(log, policies);
  }

  open(init: SessionInit): Session {
    const s = new Session(init, this);
    this.live.set(s.id, s);
    const opened = this.policies.tallies.sessionsOpened;
    opened.set(init.protocol, (opened.get(init.protocol) ?? 0) + 1);
    const { identity, client } = init;
    const store = this.policies.recordingStore();
    if (store) {
      s.recorder = store.start({
        id: s.id,
        protocol: init.protocol,
        target: init.target,
        sub: identity.sub,
        groups: identity.groups,
        issuer: identity.issuer,
        claims: identity.claims,
        client: `${client.address}:${client.port}`,
        started_at: s.startedAt.toISOString(),
      });
      s.recorder.event({ event: 'session.open', sub: identity.sub, groups: identity.groups, issuer: identity.issuer, jti: identity.jti, client: `${client.address}:${client.port}`, tls: client.secure, application: client.application });
    }
    this.log.info(
      {
        event: 'session.open',
        session: s.id,
        protocol: init.protocol,
        target: init.target,
        sub: identity.sub,
        groups: identity.groups,
        issuer: identity.issuer,
        jti: identity.jti,
        client: `${client.address}:${client.port}`,
        tls: client.secure,
        client_user: client.user,
        application: client.application,
        claims: identity.claims,
      },
      'session opened',
    );
    this.policies.auditEvent({ event: 'session.open', time: s.startedAt.toISOString(), session: s.id, protocol: init.protocol, target: init.target, sub: identity.sub, groups: identity.groups, client: `${client.address}:${client.port}` });
    return s;
  }

  /** Called by Session.close. */
  closed(s: Session): void {
    this.live.delete(s.id);
    const sum = s.summary();
    const bytes = this.policies.tallies.closedBytes;
    const b = bytes.get(sum.protocol) ?? { from: 0, to: 0 };
    b.from += sum.bytes_from_client;
    b.to += sum.bytes_to_client;
    bytes.set(sum.protocol, b);
    this.log.info(
      {
        event: 'session.close',
        session: s.id,
        protocol: sum.protocol,
        target: sum.target,
        sub: sum.sub,
        reason: sum.close_reason,
        duration_ms: s.endedAt!.getTime() - s.startedAt.getTime(),
        bytes_from_client: sum.bytes_from_client,
        bytes_to_client: sum.bytes_to_client,
        statements: sum.statements,
      },
      'session closed',
    );
    this.policies.auditEvent({ event: 'session.close', time: s.endedAt!.toISOString(), session: s.id, protocol: sum.protocol, target: sum.target, sub: sum.sub, reason: sum.close_reason, bytes_from_client: sum.bytes_from_client, bytes_to_client: sum.bytes_to_client, statements: sum.statements });
  }

  get(id: string): Session | undefined {
    return this.live.get(id);
  }

  list(): Session[] {
    return [...this.live.values()];
  }

  get size(): number {
    return this.live.size;
  }

  /** Ends every live session matching `pred`; returns how many. */
  terminateWhere(pred: (s: Session) => boolean, reason: string): number {
    let n = 0;
    for (const s of this.live.values()) {
      if (pred(s)) {
        s.terminate(reason);
        n++;
      }
    }
    return n;
  }
}
