// Just-in-time approval of single statements (or commands).
//
// A protocol module that gets a `review` decision asks the broker; the request
// waits, with its session held, until enough approvers approve it, one denies
// it, it times out, or the client withdraws it (Ctrl-C, disconnect). Requests
// live in memory with the session that waits for them; a `fingerprint`
// approval leaves a grant behind that answers later requests of the same shape
// from the same identity on the same target until it expires.

import { randomBytes } from 'node:crypto';
import type { ApprovalsConfig } from '../config/types.js';
import { principal, type Identity } from '../identity/types.js';

export type ApprovalScope = 'once' | 'fingerprint';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'withdrawn';

export interface ApprovalVote {
  sub: string;
  /** The voter's issuer name (identity.issuers[].name, `sluice` for Sluice's own). */
  issuer?: string;
  action: 'approve' | 'deny';
  reason?: string;
  scope?: ApprovalScope;
  at: string;
}

/** What approvers see (admin API, CLI, webhooks). Never holds result data. */
export interface ApprovalView {
  id: string;
  status: ApprovalStatus;
  session: string;
  protocol: string;
  target: string;
  sub: string;
  /** The requester's issuer name. */
  issuer?: string;
  groups: string[];
  claims: Record<string, unknown>;
  statement: string;
  policy?: string;
  rule: string;
  message: string;
  fingerprint?: string;
  asked_at: string;
  expires_at: string;
  decided_at?: string;
  min_approvals: number;
  votes: ApprovalVote[];
  /** Why it ended: the denier's reason, "timed out", "cancelled by the client". */
  reason?: string;
}

export type ApprovalOutcome =
  | { status: 'approved'; approvers: string[]; reason?: string; grant?: boolean }
  | { status: 'denied'; approver: string; reason?: string }
  | { status: 'expired'; after_ms: number }
  | { status: 'withdrawn'; reason: string };

export interface ApprovalAsk {
  session: string;
  protocol: string;
  target: string;
  identity: Identity;
  statement: string;
  policy?: string;
  rule: string;
  message: string;
  fingerprint?: string;
}

export interface ApprovalHandle {
  id: string;
  /** The line the waiting client is shown; absent when a grant answered at once. */
  notice?: string;
  outcome: Promise<ApprovalOutcome>;
  /** Withdraws a pending request (client cancel or disconnect); no effect once decided. */
  withdraw(reason: string): void;
}

/** Thrown at approvers: `code` maps to an HTTP status in the admin API. */
export class ApprovalError extends Error {
  constructor(
    readonly code: 'not_found' | 'not_pending' | 'forbidden' | 'self_approval' | 'already_voted',
    message: string,
  ) {
    super(message);
    this.name = 'ApprovalError';
  }
}

/** Events the broker reports (audit, recording, webhooks, metrics). */
export interface ApprovalEvents {
  requested(view: ApprovalView): void;
  voted(view: ApprovalView, vote: ApprovalVote): void;
  decided(view: ApprovalView, outcome: ApprovalOutcome, waitedMs: number): void;
}

interface Pending {
  view: ApprovalView;
  resolve(o: ApprovalOutcome): void;
  timer: NodeJS.Timeout;
  started: number;
}

interface Grant {
  until: number;
  by: string[];
}

/** Short ids people can type: 6 base32 characters (30 bits; approvers are authenticated anyway). */
function shortId(taken: (id: string) => boolean): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  for (;;) {
    const b = randomBytes(6);
    let id = '';
    for (const x of b) id += alphabet[x & 31];
    if (!taken(id)) return id;
  }
}

/** Decided requests kept for `approvals list --all` and the admin API. */
const RECENT = 200;

export class ApprovalBroker {
  private readonly pending = new Map<string, Pending>();
  private readonly recent: ApprovalView[] = [];
  private readonly grants = new Map<string, Grant>();

  /**
   * `isApprover` says whether an identity holds the approver role: approvals.approvers for
   * Sluice's own issuer, identity.issuers[].approver_groups for another (see access.ts).
   * `approverHint` names where that is configured, for the refusal message.
   */
  constructor(
    private cfg: ApprovalsConfig,
    private readonly events: ApprovalEvents,
    private isApprover: (who: Identity) => boolean = (who) => who.groups.some((g) => this.cfg.approvers.includes(g)),
    private approverHint: (who: Identity) => string = () => `members of ${this.cfg.approvers.map((g) => `group ${g}`).join(', ')} (approvals.approvers)`,
  ) {}

  reload(cfg: ApprovalsConfig): void {
    this.cfg = cfg;
  }

  /** A standing grant belongs to one identity (issuer and sub), target and query shape. */
  private grantKey(a: { sub: string; issuer?: string; target: string; fingerprint?: string }): string {
    return `${a.issuer ?? ''}\0${a.sub}\0${a.target}\0${a.fingerprint}`;
  }

  request(ask: ApprovalAsk): ApprovalHandle {
    const now = Date.now();
    const id = shortId((x) => this.pending.has(x) || this.recent.some((v) => v.id === x));
    const view: ApprovalView = {
      id,
      status: 'pending',
      session: ask.session,
      protocol: ask.protocol,
      target: ask.target,
      sub: ask.identity.sub,
      issuer: ask.identity.issuerName,
      groups: ask.identity.groups,
      claims: ask.identity.claims,
      statement: ask.statement,
      policy: ask.policy,
      rule: ask.rule,
      message: ask.message,
      fingerprint: ask.fingerprint,
      asked_at: new Date(now).toISOString(),
      expires_at: new Date(now + this.cfg.timeout).toISOString(),
      min_approvals: this.cfg.min_approvals,
      votes: [],
    };
    // A standing fingerprint approval answers at once.
    if (ask.fingerprint) {
      const g = this.grants.get(this.grantKey(view));
      if (g && g.until > now) {
        const outcome: ApprovalOutcome = { status: 'approved', approvers: g.by, grant: true, reason: `standing approval of this query shape until ${new Date(g.until).toISOString()}` };
        view.status = 'approved';
        view.decided_at = view.asked_at;
        view.reason = outcome.reason;
        this.remember(view);
        this.events.decided(view, outcome, 0);
        return { id, outcome: Promise.resolve(outcome), withdraw: () => {} };
      }
      if (g) this.grants.delete(this.grantKey(view));
    }
    let resolve!: (o: ApprovalOutcome) => void;
    const outcome = new Promise<ApprovalOutcome>((r) => (resolve = r));
    const timer = setTimeout(() => this.finish(id, { status: 'expired', after_ms: this.cfg.timeout }, 'timed out'), this.cfg.timeout);
    timer.unref();
    this.pending.set(id, { view, resolve, timer, started: now });
    this.events.requested(view);
    return {
      id,
      notice: `waiting for approval ${id} (rule ${ask.rule}): ask an approver to run: sluice approvals approve ${id}`,
      outcome,
      withdraw: (reason) => this.finish(id, { status: 'withdrawn', reason }, reason),
    };
  }

  private finish(id: string, outcome: ApprovalOutcome, reason?: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.view.status = outcome.status;
    p.view.decided_at = new Date().toISOString();
    p.view.reason = reason;
    this.remember(p.view);
    this.events.decided(p.view, outcome, Date.now() - p.started);
    p.resolve(outcome);
  }

  private remember(view: ApprovalView): void {
    this.recent.push(view);
    if (this.recent.length > RECENT) this.recent.shift();
  }

  /** Whether `who` may decide requests: the approver role of its own issuer. */
  mayApprove(who: Identity): boolean {
    return this.isApprover(who);
  }

  private check(id: string, who: Identity): Pending {
    if (!this.mayApprove(who)) {
      throw new ApprovalError('forbidden', `${principal(who)} is not an approver: approvers are ${this.approverHint(who)}`);
    }
    const p = this.pending.get(id);
    if (!p) {
      const done = this.recent.find((v) => v.id === id);
      if (done) throw new ApprovalError('not_pending', `approval ${id} is already ${done.status}${done.reason ? ` (${done.reason})` : ''}`);
      throw new ApprovalError('not_found', `no approval request ${id}: run \`sluice approvals list\` to see pending requests`);
    }
    // A person is compared by sub across issuers: the same subject name from another issuer
    // is taken as the same person (refusing too much here is safe; too little is not).
    if (p.view.sub === who.sub) {
      const other = p.view.issuer !== who.issuerName ? ` (the same subject under issuer ${who.issuerName ?? '?'} counts as the same person)` : '';
      throw new ApprovalError('self_approval', `self-approval is refused: approval ${id} was asked by ${principal({ sub: p.view.sub, issuerName: p.view.issuer })}${other}; another approver must decide it`);
    }
    if (p.view.votes.some((v) => v.sub === who.sub)) {
      throw new ApprovalError('already_voted', `${principal(who)} already approved ${id}; it needs ${p.view.min_approvals} distinct approvers`);
    }
    return p;
  }

  approve(id: string, who: Identity, opts: { reason?: string; scope?: ApprovalScope } = {}): ApprovalView {
    const p = this.check(id, who);
    const scope = opts.scope ?? 'once';
    const vote: ApprovalVote = { sub: who.sub, issuer: who.issuerName, action: 'approve', reason: opts.reason, scope, at: new Date().toISOString() };
    p.view.votes.push(vote);
    this.events.voted(p.view, vote);
    const approvals = p.view.votes.filter((v) => v.action === 'approve');
    if (approvals.length >= p.view.min_approvals) {
      const approvers = approvals.map((v) => principal({ sub: v.sub, issuerName: v.issuer }));
      // A fingerprint grant needs every approver to have chosen that scope.
      const grant = p.view.fingerprint !== undefined && approvals.every((v) => v.scope === 'fingerprint');
      if (grant) this.grants.set(this.grantKey(p.view), { until: Date.now() + this.cfg.fingerprint_window, by: approvers });
      this.finish(id, { status: 'approved', approvers, reason: opts.reason, grant }, opts.reason);
    }
    return p.view;
  }

  deny(id: string, who: Identity, reason?: string): ApprovalView {
    const p = this.check(id, who);
    const vote: ApprovalVote = { sub: who.sub, issuer: who.issuerName, action: 'deny', reason, at: new Date().toISOString() };
    p.view.votes.push(vote);
    this.events.voted(p.view, vote);
    this.finish(id, { status: 'denied', approver: principal(who), reason }, reason);
    return p.view;
  }

  get(id: string): ApprovalView | undefined {
    return this.pending.get(id)?.view ?? this.recent.find((v) => v.id === id);
  }

  /** Pending requests first (oldest first), then decided ones (newest first) when `all`. */
  list(all = false): ApprovalView[] {
    const out = [...this.pending.values()].map((p) => p.view);
    if (all) out.push(...[...this.recent].reverse());
    return out;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Ends every pending request (gateway shutdown). */
  close(reason: string): void {
    for (const id of [...this.pending.keys()]) this.finish(id, { status: 'withdrawn', reason }, reason);
  }
}
