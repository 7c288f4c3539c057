// The one governance pipeline. Every protocol calls it the same way for every
// action it governs (a Postgres statement, an SSH exec or shell line, an sftp
// write, a forwarding request; next an HTTP request, a MySQL statement, an MCP
// tool call):
//
//   decide → count → log and audit → record → hold for approval → outcome
//
// The protocol supplies only a narrow Transport: refuse in its wire format,
// notify the user, pause/resume its client stream, and run a held action once
// approved. Like an Envoy filter, govern() answers CONTINUE (run it now: the
// allow fast path, synchronous and allocation-free) or STOP (refused, or held:
// the pipeline later calls proceed() or refuse() exactly once).

import type { Decision } from '../policy/engine.js';
import type { QueryFacts } from '../policy/sql/facts.js';
import type { Session } from '../session/session.js';
import type { ApprovalHandle, ApprovalOutcome } from './approvals.js';
import { decisionEvent } from './audit.js';
import { approvalRefusal, approvedNotice, policyRefusal, type Noun, type Refusal } from './outcome.js';

export type { Refusal, RefusalKind } from './outcome.js';

/** Run the action now. */
export const CONTINUE = 0;
/** Do not run it now: it was refused, or it is held (the transport hears the outcome). */
export const STOP = 1;
export type Status = typeof CONTINUE | typeof STOP;

/** One governed action. Protocols may reuse one object per connection (the pipeline copies what it keeps). */
export interface Action {
  /** The text the policy decides and approvers see (SQL, a command line). */
  text: string;
  /** Facts of the text for the policy (sql, shell, …: the policy domain). */
  analyze: (text: string) => QueryFacts;
  /** Names texts with the same facts for the decision cache (default: the text). */
  cacheKey?: string;
  /** What the user calls it: "statement", "command", … */
  noun: Noun;
  /** Statements it runs: 1 (default); 0 for one that only prepares (a Postgres Parse). */
  runs?: number;
  /** What approvers see, when it is not `text`. */
  display?: string;
  /** The protocol writes one audit line per action itself, decision included (HTTP: one line per request, at its end). */
  ownAudit?: boolean;
}

/** A held action, for the protocol to withdraw on a client cancel (Ctrl-C, CancelRequest). */
export interface Held {
  readonly id: string;
  readonly decision: Decision;
  withdraw(reason: string): void;
  /**
   * The client stopped waiting but the request stays open for approvers (HTTP answers 403 with
   * the approval id and a retry goes through once approved): the session's end no longer withdraws it.
   */
  detach(): void;
}

/** What the pipeline needs from a protocol. */
export interface Transport {
  /** Told the decision (null: no policy) once it is counted, audited and recorded, before anything else. */
  decided?(d: Decision | null): void;
  /** The action must not run: tell the client, in the protocol's own words and wire format. */
  refuse(r: Refusal): void;
  /** A held action was approved: run it now. */
  proceed(): void;
  /** A line for the user while an action waits: the approval notice, then who approved. */
  notify(text: string, held: Held, kind: 'held' | 'approved'): void;
  /** An action is held: stop taking the client's next actions (queue or pause). */
  pause(held: Held): void;
  /** The held action is settled (after proceed/refuse): go on. */
  resume(): void;
}

/** Options of a side channel: allowed or not, and what the log says. */
export interface SideChannel {
  /** The event name in the log, audit and recording (`ssh.forward`, `sftp.op`, …). */
  event: string;
  allowed: boolean;
  /** Fields for the log, audit and recording. */
  fields: Record<string, unknown>;
  /** The log message. */
  message: string;
  /** Allowed and routine (metadata reads): logged at debug level. */
  quiet?: boolean;
  /** Counted as a governed action (default true for refusals; allowed side channels are not statements). */
  record?: boolean;
}

/** The pipeline of one session. */
export class Governor {
  constructor(private readonly s: Session) {}

  /**
   * Whether a policy decides this session's actions. Without one, govern()
   * would CONTINUE every action: a protocol may then skip reading an action
   * whole (a large Query streams through) and call pass() to count it.
   */
  get deciding(): boolean {
    return this.s.policy() !== null;
  }

  /** An action that needs no decision (no policy, or a run of what was decided before): counted. */
  pass(runs = 1): void {
    const s = this.s;
    s.statements += runs;
    s.recorder?.count(undefined, runs);
  }

  /** Decides, counts, audits, records; refuses or holds through `t` when it is not allowed. */
  govern(a: Action, t: Transport): Status {
    const s = this.s;
    const set = s.policy();
    const runs = a.runs ?? 1;
    if (set === null) {
      this.pass(runs);
      t.decided?.(null);
      return CONTINUE;
    }
    const r = set.decide(a.text, a.analyze, a.cacheKey);
    const d = r.decision;
    s.lastFacts = r.facts;
    s.statements += runs;
    const host = s.registry.policies;
    host.tallies.decisions[d.action]++;
    if (d.action === 'deny') s.denied++;
    if (!a.ownAudit) s.registry.auditor.decision(s, d, r.facts, r);
    const rec = s.recorder;
    if (rec) {
      rec.count(d.action, runs);
      rec.eventJson(decisionEvent(d));
    }
    t.decided?.(d);
    if (d.action === 'allow') return CONTINUE;
    if (d.action === 'deny') t.refuse(policyRefusal(d, a.noun));
    else this.hold(a, d, t);
    return STOP;
  }

  /** A side channel allowed or refused by the session's options: logged, recorded, a refusal counted and audited. */
  sideChannel(c: SideChannel): boolean {
    const s = this.s;
    const ev = { event: c.event, ...c.fields, allowed: c.allowed };
    s.recorder?.event(ev);
    if (!c.allowed) {
      s.denied++;
      s.registry.policies.tallies.decisions.deny++;
      s.recorder?.count('deny', 0);
    }
    s.registry.auditor.sideChannel(s, ev, c.allowed, c.message, c.quiet);
    return c.allowed;
  }

  private hold(a: Action, d: Decision, t: Transport): void {
    const s = this.s;
    const handle: ApprovalHandle = s.registry.policies.approvals.request({
      session: s.id,
      protocol: s.init.protocol,
      target: s.init.target,
      identity: s.init.identity,
      statement: a.display ?? a.text,
      policy: d.policy,
      rule: d.rule,
      message: d.message,
      fingerprint: s.lastFacts?.fingerprint,
    });
    s.waiting.add(handle);
    const held: Held = { id: handle.id, decision: d, withdraw: (reason) => handle.withdraw(reason), detach: () => s.waiting.delete(handle) };
    const noun = a.noun;
    t.pause(held);
    if (handle.notice) t.notify(handle.notice, held, 'held');
    void handle.outcome.then((o: ApprovalOutcome) => {
      const detached = !s.waiting.delete(handle);
      if (s.endedAt && !detached) return;
      if (o.status === 'approved') {
        if (handle.notice) t.notify(approvedNotice(o), held, 'approved');
        t.proceed();
      } else {
        t.refuse(approvalRefusal(o, handle.id, d.rule, noun));
      }
      t.resume();
    });
  }
}
