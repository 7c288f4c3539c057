// HTTP's error encoder: every refusal is an RFC 9457 application/problem+json body.

import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Refusal } from '../../governance/outcome.js';

type Res = ServerResponse | Http2ServerResponse;

export interface Problem {
  status: number;
  /** Short, fixed per kind of problem. */
  title: string;
  /** The sentence for the user: what happened and what to do. */
  detail: string;
  /** Extension members (policy, rule, approval, …). */
  [k: string]: unknown;
}

const TYPE_BASE = 'https://sluice.dev/problems/';

/** The body and headers of a problem response. */
export function problemBody(p: Problem): Buffer {
  const { status, title, detail, ...ext } = p;
  return Buffer.from(JSON.stringify({ type: TYPE_BASE + title.toLowerCase().replace(/[^a-z0-9]+/g, '-'), title, status, detail: `sluice: ${detail}`, ...ext }) + '\n');
}

/** A policy or approval refusal as a problem (403). */
export function refusalProblem(r: Refusal): Problem {
  const title =
    r.kind === 'policy' ? 'Request denied by policy'
    : r.kind === 'unparsable' ? 'Request could not be read'
    : r.kind === 'approval_denied' ? 'Request denied by an approver'
    : r.kind === 'approval_expired' ? 'Approval timed out'
    : r.kind === 'approval_withdrawn' ? 'Approval withdrawn'
    : 'Not allowed';
  return { status: 403, title, detail: r.message, policy: r.policy, rule: r.rule, approval: r.approval };
}

/** Writes a problem response (if the head is not sent yet) and ends it. */
export function sendProblem(res: Res, p: Problem, extraHeaders?: Record<string, string>, close = false, sent?: (head: Record<string, string | number>, body: Buffer) => void): number {
  if (res.headersSent || res.writableEnded || res.destroyed) {
    res.destroy();
    return p.status;
  }
  const body = problemBody(p);
  const h: Record<string, string | number> = { 'content-type': 'application/problem+json', 'content-length': body.length, 'cache-control': 'no-store', ...extraHeaders };
  if (close && !(res as Http2ServerResponse).stream) h.connection = 'close';
  res.writeHead(p.status, h);
  res.end(body);
  sent?.(h, body);
  return p.status;
}

