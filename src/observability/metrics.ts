// Prometheus metrics for GET /metrics (prom-client).
//
// The data path never calls prom-client: sessions keep plain counters, and the
// collectors read them (and the live-session registry) when /metrics is
// scraped, so a statement costs no label hashing.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SessionRegistry } from '../session/session.js';

/** Counters the core bumps as plain numbers; read at scrape time. */
export class Tallies {
  /** Statements by decision (allow / deny / review). */
  readonly decisions = { allow: 0, deny: 0, review: 0 };
  /** Values masked, by rule or detector name. */
  readonly masked = new Map<string, number>();
  /** Bytes of sessions that have ended, by protocol and direction. */
  readonly closedBytes = new Map<string, { from: number; to: number }>();
  readonly sessionsOpened = new Map<string, number>();
  readonly logins = { ok: 0, refused: 0 };
  readonly kills = { revocation: 0, admin: 0 };
  /** HTTP requests by `target\0method\0status`. */
  readonly httpRequests = new Map<string, number>();
}

export interface MetricsSources {
  sessions: SessionRegistry;
  tallies: Tallies;
  pendingApprovals(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly approvalWait: Histogram<'outcome'>;

  constructor(src: MetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'sluice_process_' });
    const t = src.tallies;
    new Gauge({
      name: 'sluice_sessions',
      help: 'Live sessions, by protocol and target.',
      labelNames: ['protocol', 'target'],
      registers: [r],
      collect() {
        this.reset();
        for (const s of src.sessions.list()) this.inc({ protocol: s.init.protocol, target: s.init.target });
      },
    });
    new Counter({
      name: 'sluice_sessions_opened_total',
      help: 'Sessions opened since start, by protocol.',
      labelNames: ['protocol'],
      registers: [r],
      collect() {
        this.reset();
        for (const [protocol, n] of t.sessionsOpened) this.inc({ protocol }, n);
      },
    });
    new Counter({
      name: 'sluice_statements_total',
      help: 'Statements and commands decided by the policy, by decision.',
      labelNames: ['decision'],
      registers: [r],
      collect() {
        this.reset();
        for (const [decision, n] of Object.entries(t.decisions)) this.inc({ decision }, n);
      },
    });
    new Counter({
      name: 'sluice_http_requests_total',
      help: 'HTTP requests answered, by target, method and status (Sluice\'s own refusals included).',
      labelNames: ['target', 'method', 'status'],
      registers: [r],
      collect() {
        this.reset();
        for (const [k, n] of t.httpRequests) {
          const [target, method, status] = k.split('\0');
          this.inc({ target, method, status }, n);
        }
      },
    });
    new Counter({
      name: 'sluice_bytes_total',
      help: 'Bytes relayed, by protocol and direction (from_client, to_client).',
      labelNames: ['protocol', 'direction'],
      registers: [r],
      collect() {
        this.reset();
        const sum = new Map<string, { from: number; to: number }>();
        for (const [p, v] of t.closedBytes) sum.set(p, { ...v });
        for (const s of src.sessions.list()) {
          const v = sum.get(s.init.protocol) ?? { from: 0, to: 0 };
          v.from += s.bytesFromClient;
          v.to += s.bytesToClient;
          sum.set(s.init.protocol, v);
        }
        for (const [protocol, v] of sum) {
          this.inc({ protocol, direction: 'from_client' }, v.from);
          this.inc({ protocol, direction: 'to_client' }, v.to);
        }
      },
    });
    new Counter({
      name: 'sluice_masked_values_total',
      help: 'Values masked in results, by column rule or detector.',
      labelNames: ['rule'],
      registers: [r],
      collect() {
        this.reset();
        for (const [rule, n] of t.masked) this.inc({ rule }, n);
      },
    });
    new Counter({
      name: 'sluice_logins_total',
      help: 'Logins, by result (ok, refused).',
      labelNames: ['result'],
      registers: [r],
      collect() {
        this.reset();
        this.inc({ result: 'ok' }, t.logins.ok);
        this.inc({ result: 'refused' }, t.logins.refused);
      },
    });
    new Counter({
      name: 'sluice_sessions_killed_total',
      help: 'Sessions ended from outside, by cause (revocation, admin).',
      labelNames: ['cause'],
      registers: [r],
      collect() {
        this.reset();
        for (const [cause, n] of Object.entries(t.kills)) this.inc({ cause }, n);
      },
    });
    new Gauge({
      name: 'sluice_approvals_pending',
      help: 'Statements waiting for approval.',
      registers: [r],
      collect() {
        this.set(src.pendingApprovals());
      },
    });
    this.approvalWait = new Histogram({
      name: 'sluice_approval_wait_seconds',
      help: 'Time from an approval request to its outcome, by outcome.',
      labelNames: ['outcome'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800],
      registers: [r],
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
