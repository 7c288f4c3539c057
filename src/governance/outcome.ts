// The words a user reads when Sluice refuses or holds something, in one place.
//
// Core speaks in protocol-neutral refusal kinds; each protocol encodes a
// Refusal in its own wire format (Postgres: an ErrorResponse with a SQLSTATE;
// SSH: a line on stderr and exit status 126; HTTP: a status; MySQL: an errno;
// MCP: a tool error). The sentence itself is the same for every protocol.

import type { Decision } from '../policy/engine.js';
import type { ApprovalOutcome } from './approvals.js';

export type RefusalKind =
  /** A policy rule (or policy.default) denied the action. */
  | 'policy'
  /** The action could not be read (policy.on_parse_error: deny). */
  | 'unparsable'
  /** An approver denied a held action. */
  | 'approval_denied'
  /** Nobody decided a held action in time. */
  | 'approval_expired'
  /** The client cancelled a held action, or its session ended. */
  | 'approval_withdrawn'
  /** A side channel (forwarding, file writes, a shell) the session's options do not allow. */
  | 'not_allowed';

export interface Refusal {
  kind: RefusalKind;
  /** The sentence for the user, without the "sluice: " prefix protocols add. */
  message: string;
  rule?: string;
  policy?: string;
  /** The approval request, for approval outcomes. */
  approval?: string;
}

/** What the action is called in sentences: "statement", "command", "request", "tool call". */
export type Noun = string;

/** A denial by the policy. */
export function policyRefusal(d: Decision, noun: Noun): Refusal {
  return {
    kind: d.rule === 'on_parse_error' ? 'unparsable' : 'policy',
    message: `${noun} denied: ${d.message}`,
    rule: d.rule,
    policy: d.policy,
  };
}

/** A held action that was not approved. */
export function approvalRefusal(o: Exclude<ApprovalOutcome, { status: 'approved' }>, id: string, rule: string, noun: Noun): Refusal {
  if (o.status === 'denied') {
    return { kind: 'approval_denied', approval: id, rule, message: `${noun} denied by approver ${o.approver}${o.reason ? `: ${o.reason}` : ''} (approval ${id}, rule ${rule})` };
  }
  if (o.status === 'expired') {
    return { kind: 'approval_expired', approval: id, rule, message: `approval ${id} timed out after ${Math.round(o.after_ms / 1000)} s without a decision; the ${noun} was not run` };
  }
  return { kind: 'approval_withdrawn', approval: id, rule, message: `approval ${id} withdrawn (${o.reason}); the ${noun} was not run` };
}

/** Shown when a held action is released. */
export function approvedNotice(o: Extract<ApprovalOutcome, { status: 'approved' }>): string {
  return `approved by ${o.approvers.join(', ')}`;
}
