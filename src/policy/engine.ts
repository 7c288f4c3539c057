// The statement policy engine: from the facts of one query string to a decision.
//
// Semantics (README "Statement policy"):
// - The policies that apply to a session are those whose `match` fits its
//   identity, target and protocol. Their rules are pooled.
// - Each statement (top-level and every nested one) is matched against every
//   rule; the strongest matching action wins: deny > review > allow. Rule order
//   only decides which rule is reported among equals. No match: `policy.default`.
// - The query's decision is the strongest across its statements.
// - SQL that does not parse: `policy.on_parse_error` (deny unless configured).
// - No applicable policy at all: `policy.default` for every statement.

import type { PolicyAction, PolicyConfig, PolicyMatch, PolicyRule, PolicySettings, RuleCondition } from '../core/config-types.js';
import type { Identity } from '../core/identity-types.js';
import { LruCache } from './lru.js';
import { compileNamePatterns, type NameMatcher } from './names.js';
import type { QueryFacts, StatementFacts } from './sql-facts.js';

const RANK: Record<PolicyAction, number> = { allow: 0, review: 1, deny: 2 };

export interface Decision {
  action: PolicyAction;
  /** The policy and rule that decided; rule is "default" or "on_parse_error" when no rule matched. */
  policy?: string;
  rule: string;
  /** For the client (deny) or the approvers (review). */
  message: string;
  /** Kind of the statement that decided, when one did. */
  kind?: string;
}

interface CompiledRule {
  rule: PolicyRule;
  policy: string;
  tables?: NameMatcher;
  functions?: NameMatcher;
}

function describeCondition(w: RuleCondition): string {
  const parts: string[] = [];
  if (w.kind) parts.push(`kind ${w.kind.join(', ')}`);
  if (w.tables) parts.push(`tables ${w.tables.join(', ')}`);
  if (w.functions) parts.push(`functions ${w.functions.join(', ')}`);
  if (w.where) parts.push(`where ${w.where}`);
  if (w.copy) parts.push(`copy ${w.copy.join(', ')}`);
  for (const k of ['explain_analyze', 'set_role', 'dynamic', 'changes_state'] as const) {
    if (w[k] !== undefined) parts.push(`${k}: ${w[k]}`);
  }
  return parts.length ? parts.join('; ') : 'every statement';
}

function matches(r: CompiledRule, s: StatementFacts): boolean {
  const w = r.rule.when;
  if (w.kind && !w.kind.includes(s.kind)) return false;
  if (w.where) {
    if (s.where === undefined) return false;
    if ((w.where === 'present') !== s.where) return false;
  }
  if (w.copy && !(s.copy && w.copy.includes(s.copy.target))) return false;
  if (w.explain_analyze !== undefined && (s.explain_analyze ?? false) !== w.explain_analyze) return false;
  if (w.set_role !== undefined && (s.set_role ?? false) !== w.set_role) return false;
  if (w.dynamic !== undefined && (s.dynamic ?? false) !== w.dynamic) return false;
  if (w.changes_state !== undefined && s.changes_state !== w.changes_state) return false;
  if (r.tables && !(s.tables_read.some(r.tables) || s.tables_written.some(r.tables))) return false;
  if (r.functions && !s.functions.some(r.functions)) return false;
  return true;
}

/** The rules that apply to one kind of session, compiled once and shared, with a decision cache. */
export class PolicySet {
  readonly readOnly: boolean;
  readonly names: string[];
  private readonly rules: CompiledRule[];
  private readonly cache = new LruCache<string, { decision: Decision; facts: QueryFacts }>({ maxEntries: 10_000, maxWeight: 16 << 20, weigh: (k) => k.length });

  constructor(
    policies: PolicyConfig[],
    private readonly settings: PolicySettings,
  ) {
    this.readOnly = policies.some((p) => p.read_only);
    this.names = policies.map((p) => p.name);
    this.rules = [];
    for (const p of policies) {
      if (p.read_only) {
        this.rules.push({
          policy: p.name,
          rule: { action: 'deny', name: `${p.name}#read_only`, when: { changes_state: true }, message: `policy "${p.name}" is read-only: this statement changes state` },
        });
        this.rules.push({ policy: p.name, rule: { action: 'allow', name: `${p.name}#read_only`, when: { changes_state: false } } });
      }
      for (const r of p.rules) {
        this.rules.push({
          policy: p.name,
          rule: r,
          tables: r.when.tables ? compileNamePatterns(r.when.tables) : undefined,
          functions: r.when.functions ? compileNamePatterns(r.when.functions) : undefined,
        });
      }
    }
  }

  /** The decision for one statement. */
  private decideStatement(s: StatementFacts): Decision {
    let best: CompiledRule | undefined;
    for (const r of this.rules) {
      if (best && RANK[r.rule.action] <= RANK[best.rule.action]) continue;
      if (matches(r, s)) {
        best = r;
        if (r.rule.action === 'deny') break;
      }
    }
    if (!best) {
      const action = this.settings.default;
      return {
        action,
        rule: 'default',
        kind: s.kind,
        message:
          action === 'deny'
            ? `no policy rule allows this ${s.kind.replace(/_/g, ' ')} statement (policy.default: deny)`
            : 'no rule matched (policy.default: allow)',
      };
    }
    const { rule, policy } = best;
    const why = rule.message ?? `${rule.action} ${describeCondition(rule.when)}`;
    return {
      action: rule.action,
      policy,
      rule: rule.name,
      kind: s.kind,
      message: rule.action === 'allow' ? why : `${why} (policy "${policy}", rule "${rule.name}")`,
    };
  }

  /**
   * The decision for a whole query string, cached by text; `analyze` (SQL text to
   * facts) runs only on a cache miss.
   */
  decide(sql: string, analyze: (sql: string) => QueryFacts): { decision: Decision; facts: QueryFacts } {
    const hit = this.cache.get(sql);
    if (hit) return hit;
    const facts = analyze(sql);
    let d: Decision;
    if (facts.parse_error !== undefined) {
      const action = this.settings.on_parse_error;
      d = {
        action,
        rule: 'on_parse_error',
        message:
          action === 'deny'
            ? `Sluice could not parse this statement, so it is denied (policy.on_parse_error: deny): ${facts.parse_error}`
            : `statement did not parse (policy.on_parse_error: allow): ${facts.parse_error}`,
      };
    } else if (facts.statements.length === 0) {
      d = { action: 'allow', rule: 'empty', message: 'empty query' };
    } else {
      d = this.decideStatement(facts.statements[0]!);
      for (let i = 1; i < facts.statements.length && d.action !== 'deny'; i++) {
        const next = this.decideStatement(facts.statements[i]!);
        if (RANK[next.action] > RANK[d.action]) d = next;
      }
    }
    const r = { decision: d, facts };
    this.cache.set(sql, r);
    return r;
  }
}

/** Whether a `match` block fits a session: every list given must contain its value; groups need one in common. */
export function matchFits(m: PolicyMatch, identity: Identity, target: string, protocol: string): boolean {
  if (m.targets && !m.targets.includes(target)) return false;
  if (m.protocols && !m.protocols.includes(protocol)) return false;
  if (m.subs && !m.subs.includes(identity.sub)) return false;
  if (m.groups && !m.groups.some((g) => identity.groups.includes(g))) return false;
  return true;
}

/**
 * Resolves the PolicySet for sessions; one per (config, matching policies), so
 * sessions with the same policies share compiled rules and the decision cache.
 * Returns null when no statement policy is configured.
 */
export class PolicyResolver {
  private readonly sets = new Map<string, PolicySet>();

  constructor(
    private readonly policies: PolicyConfig[],
    private readonly settings: PolicySettings,
  ) {}

  get enabled(): boolean {
    return this.policies.length > 0;
  }

  resolve(identity: Identity, target: string, protocol: string): PolicySet | null {
    if (!this.enabled) return null;
    const idx: number[] = [];
    this.policies.forEach((p, i) => matchFits(p.match, identity, target, protocol) && idx.push(i));
    const key = idx.join(',');
    let set = this.sets.get(key);
    if (!set) {
      set = new PolicySet(
        idx.map((i) => this.policies[i]!),
        this.settings,
      );
      this.sets.set(key, set);
    }
    return set;
  }
}
