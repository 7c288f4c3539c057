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
// - SQL and shell commands (SSH) share rules: conditions on tables, functions,
//   where, copy, explain_analyze and set_role match only SQL statements; those on
//   commands, args, writes and pipe_to_shell only commands (kind 'command');
//   kind, dynamic and changes_state both.
// - HTTP requests (kind 'http', src/policy/http/) likewise: methods, paths,
//   query, headers and body match only http statements, and an http statement
//   meets no SQL or shell condition. Their conditions are evaluated loosely for
//   deny/review rules and strictly for allow rules (src/policy/http/match.ts).

import type { PolicyAction, PolicyConfig, PolicyMatch, PolicyRule, PolicySettings, RuleCondition, SshPolicyConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { LruCache } from './lru.js';
import { compileNamePatterns, type NameMatcher } from './sql/names.js';
import type { QueryFacts, StatementFacts } from './sql/facts.js';
import type { CommandFacts } from './shell/facts.js';
import { compileArgGlobs, compileCommandGlobs, compileWriteGlobs } from './shell/match.js';
import type { HttpFacts } from './http/facts.js';
import { compileHttpCondition, HTTP_CONDITIONS, httpInputsOf, type HttpMatcher } from './http/match.js';

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
  /** Shell commands: the program of the command that decided. */
  program?: string;
}

interface CompiledRule {
  rule: PolicyRule;
  policy: string;
  tables?: NameMatcher;
  functions?: NameMatcher;
  commands?: (program: string, path: string | undefined) => boolean;
  args?: (arg: string) => boolean;
  writes?: (path: string) => boolean;
  http?: HttpMatcher;
  /** Has a condition only SQL statements / only shell commands / only HTTP requests can meet. */
  sqlOnly?: boolean;
  shellOnly?: boolean;
  httpOnly?: boolean;
}

const SQL_CONDITIONS = ['tables', 'functions', 'where', 'copy', 'explain_analyze', 'set_role'] as const;
const SHELL_CONDITIONS = ['commands', 'args', 'writes', 'pipe_to_shell'] as const;

function compileRule(policy: string, rule: PolicyRule): CompiledRule {
  const w = rule.when;
  return {
    policy,
    rule,
    tables: w.tables ? compileNamePatterns(w.tables) : undefined,
    functions: w.functions ? compileNamePatterns(w.functions) : undefined,
    commands: w.commands ? compileCommandGlobs(w.commands) : undefined,
    args: w.args ? compileArgGlobs(w.args) : undefined,
    writes: w.writes ? compileWriteGlobs(w.writes) : undefined,
    sqlOnly: SQL_CONDITIONS.some((c) => w[c] !== undefined),
    shellOnly: SHELL_CONDITIONS.some((c) => w[c] !== undefined),
    http: compileHttpCondition(w),
    httpOnly: HTTP_CONDITIONS.some((c) => w[c] !== undefined),
  };
}

function describeCondition(w: RuleCondition): string {
  const parts: string[] = [];
  if (w.kind) parts.push(`kind ${w.kind.join(', ')}`);
  if (w.tables) parts.push(`tables ${w.tables.join(', ')}`);
  if (w.functions) parts.push(`functions ${w.functions.join(', ')}`);
  if (w.where) parts.push(`where ${w.where}`);
  if (w.copy) parts.push(`copy ${w.copy.join(', ')}`);
  if (w.commands) parts.push(`commands ${w.commands.join(', ')}`);
  if (w.args) parts.push(`args ${w.args.join(', ')}`);
  if (w.writes) parts.push(`writes ${w.writes.join(', ')}`);
  if (w.methods) parts.push(`methods ${w.methods.join(', ')}`);
  if (w.paths) parts.push(`paths ${w.paths.join(', ')}`);
  for (const k of ['query', 'headers', 'body'] as const) {
    const m = w[k];
    if (m) parts.push(`${k} ${Object.entries(m).map(([n, g]) => `${n}=${g.join('|')}`).join(', ')}`);
  }
  for (const k of ['explain_analyze', 'set_role', 'pipe_to_shell', 'dynamic', 'changes_state'] as const) {
    if (w[k] !== undefined) parts.push(`${k}: ${w[k]}`);
  }
  return parts.length ? parts.join('; ') : 'every statement';
}

function matches(r: CompiledRule, s: StatementFacts): boolean {
  const w = r.rule.when;
  if (w.kind && !w.kind.includes(s.kind)) return false;
  if (s.kind === 'http') {
    if (r.sqlOnly || r.shellOnly) return false;
    if (r.http && !r.http(s as HttpFacts, r.rule.action !== 'allow')) return false;
  } else if (r.httpOnly) return false;
  if (s.kind === 'command') {
    if (r.sqlOnly) return false;
    const c = s as CommandFacts;
    if (r.commands && !r.commands(c.program, c.path)) return false;
    if (r.args && !c.argv.some((a, i) => i > 0 && r.args!(a))) return false;
    if (r.writes && !c.paths_written.some(r.writes)) return false;
    if (w.pipe_to_shell !== undefined && (c.pipes_to_shell ?? false) !== w.pipe_to_shell) return false;
  } else if (r.shellOnly) return false;
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
  /** What an SSH session may do besides exec commands (shell, sftp, forwarding), resolved across the policies. */
  readonly ssh: SshOptions;
  /**
   * HTTP: the header names (lower-case) and body JSON paths some rule reads. A
   * request's decision depends on its method, path and query (the decision
   * text) and on these alone, so the HTTP decision-cache key holds just their
   * values (src/policy/http/cache-key.ts).
   */
  readonly httpInputs: { headers: string[]; bodyPaths: string[] };
  private readonly rules: CompiledRule[];
  /**
   * One decision cache per analyzer (SQL text and shell text never share entries,
   * whoever calls decide). The last one used is kept at hand.
   */
  private readonly caches = new Map<Analyzer | string, DecisionCache>();
  private lastAnalyzer: Analyzer | string | undefined;
  private lastCache: DecisionCache | undefined;

  constructor(
    policies: PolicyConfig[],
    private readonly settings: PolicySettings,
  ) {
    this.readOnly = policies.some((p) => p.read_only);
    this.names = policies.map((p) => p.name);
    this.ssh = resolveSshOptions(policies, settings);
    this.rules = [];
    for (const p of policies) {
      if (p.read_only) {
        this.rules.push({
          policy: p.name,
          rule: { action: 'deny', name: `${p.name}#read_only`, when: { changes_state: true }, message: `policy "${p.name}" is read-only: this statement changes state` },
        });
        this.rules.push({ policy: p.name, rule: { action: 'allow', name: `${p.name}#read_only`, when: { changes_state: false } } });
      }
      for (const r of p.rules) this.rules.push(compileRule(p.name, r));
    }
    this.httpInputs = httpInputsOf(this.rules.map((r) => r.rule.when));
  }

  private cacheFor(analyze: Analyzer): DecisionCache | undefined {
    const id = analyze.cacheDomain ?? analyze;
    if (id === this.lastAnalyzer) return this.lastCache;
    let c = this.caches.get(id);
    if (!c) {
      // A caller passing a new closure each time (the policy CLI) gets no cache rather than a leak.
      if (this.caches.size >= 4) return undefined;
      c = new LruCache({ maxEntries: 10_000, maxWeight: 16 << 20, weigh: (k) => k.length });
      this.caches.set(id, c);
    }
    this.lastAnalyzer = id;
    this.lastCache = c;
    return c;
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
        ...(s.kind === 'command' && { program: (s as CommandFacts).program }),
        message:
          action === 'deny'
            ? s.kind === 'http'
              ? `no policy rule allows ${s.text} (policy.default: deny)`
              : s.kind === 'command'
              ? `no policy rule allows the command ${JSON.stringify((s as CommandFacts).program || (s as CommandFacts).text)} (policy.default: deny)`
              : `no policy rule allows this ${s.kind.replace(/_/g, ' ')} statement (policy.default: deny)`
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
      ...(s.kind === 'command' && { program: (s as CommandFacts).program }),
      message: rule.action === 'allow' ? why : `${why} (policy "${policy}", rule "${rule.name}")`,
    };
  }

  /**
   * The decision for a whole query string, cached by text; `analyze` (SQL text to
   * facts) runs only on a cache miss.
   */
  decide(sql: string, analyze: Analyzer, key = sql): { decision: Decision; facts: QueryFacts } {
    const cache = this.cacheFor(analyze);
    const hit = cache?.get(key);
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
    // A parse error's message may quote the text: keep it under the exact text.
    cache?.set(facts.parse_error !== undefined ? sql : key, r);
    return r;
  }
}

/** Whether a `match` block fits a session: every list given must contain its value; groups need one in common. */
export function matchFits(m: PolicyMatch, identity: Identity, target: string, protocol: string): boolean {
  if (m.targets && !m.targets.includes(target)) return false;
  if (m.protocols && !m.protocols.includes(protocol)) return false;
  if (m.issuers && (identity.issuerName === undefined || !m.issuers.includes(identity.issuerName))) return false;
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
    // Per protocol too: a session of another protocol never shares a PolicySet (nor its caches).
    const key = `${protocol}:${idx.join(',')}`;
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

/**
 * Text → facts. An analyzer made per action (an HTTP request's facts depend on
 * more than its text) names its cache with `cacheDomain`, and its callers pass
 * a key that holds everything the facts depend on.
 */
export type Analyzer = ((text: string) => QueryFacts) & { cacheDomain?: string };
type DecisionCache = LruCache<string, { decision: Decision; facts: QueryFacts }>;

// ---------------------------------------------------------------------------
// SSH session options

export interface SshOptions {
  /** Interactive shells (`shell` requests); exec is decided command by command. */
  shell: 'allow' | 'deny';
  /** The sftp subsystem (also scp, which OpenSSH runs over sftp). */
  sftp: 'read_write' | 'read_only' | 'deny';
  forwarding: { local: boolean; remote: boolean; agent: boolean; x11: boolean };
}

/** When no statement policy is configured at all: shells and sftp work, forwarding is refused. */
export const SSH_DEFAULTS: Readonly<SshOptions> = Object.freeze({
  shell: 'allow',
  sftp: 'read_write',
  forwarding: Object.freeze({ local: false, remote: false, agent: false, x11: false }),
});

const SFTP_RANK = { read_write: 0, read_only: 1, deny: 2 } as const;

/**
 * Combines the `ssh:` blocks of the policies that apply to a session; the
 * strictest wins and a field a policy leaves out abstains:
 * - shell: deny when any policy says deny, else allow;
 * - sftp: the strictest given (deny > read_only > read_write); a `read_only: true`
 *   policy counts as sftp read_only; none given: read_write;
 * - forwarding (each of local, remote, agent, x11): allowed only when some policy
 *   allows it and none refuses it; closed when no policy mentions it.
 * No policy applies (policy.default decides every command): shell and sftp
 * follow policy.default (deny: no shell, no sftp), forwarding is refused.
 */
export function resolveSshOptions(policies: readonly PolicyConfig[], settings: PolicySettings): SshOptions {
  if (policies.length === 0) {
    const open = settings.default === 'allow';
    return { shell: open ? 'allow' : 'deny', sftp: open ? 'read_write' : 'deny', forwarding: { ...SSH_DEFAULTS.forwarding } };
  }
  let shell: SshOptions['shell'] = 'allow';
  let sftp: SshOptions['sftp'] = 'read_write';
  const grant = { local: false, remote: false, agent: false, x11: false };
  const refuse = { local: false, remote: false, agent: false, x11: false };
  for (const p of policies) {
    const o: SshPolicyConfig = p.ssh ?? {};
    if (o.shell === 'deny') shell = 'deny';
    if (o.sftp && SFTP_RANK[o.sftp] > SFTP_RANK[sftp]) sftp = o.sftp;
    if (p.read_only && SFTP_RANK[sftp] < SFTP_RANK.read_only) sftp = 'read_only'; // whatever its own sftp says
    for (const k of ['local', 'remote', 'agent', 'x11'] as const) {
      const v = o.forwarding?.[k];
      if (v === true) grant[k] = true;
      if (v === false) refuse[k] = true;
    }
  }
  return {
    shell,
    sftp,
    forwarding: { local: grant.local && !refuse.local, remote: grant.remote && !refuse.remote, agent: grant.agent && !refuse.agent, x11: grant.x11 && !refuse.x11 },
  };
}

/** The SSH options for a session's PolicySet (null: no statement policy configured). */
export function sshOptions(set: PolicySet | null): SshOptions {
  return set ? set.ssh : { ...SSH_DEFAULTS, forwarding: { ...SSH_DEFAULTS.forwarding } };
}
