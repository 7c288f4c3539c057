// The statement-policy corpus: every entry of fixtures/policy/corpus.yaml is
// decided by the real engine (libpg-query parse tree -> facts -> rules) against
// the reference policies in fixtures/policy/policies.yaml. Evasion tricks
// (writes in CTEs, EXPLAIN ANALYZE, DO blocks, comments, quoting, multi-statement
// strings, COPY PROGRAM, dangerous functions...) and the exact catalog queries
// psql 15 sends for \d, \dt, \df, \l, \du, \dn, \di are all here.
//
// fixtures/policy/shell.yaml is the same for shell commands (SSH sessions,
// analyzeShell), decided against the same reference policies; and
// fixtures/policy/http.yaml for HTTP requests (httpAction, target payments).
//
// An entry whose expectation the engine gets wrong today carries
// `known_bug: "<reason>"`: it is reported as a todo (with what the engine said)
// instead of failing, and flagged when it starts to pass.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import { parse } from 'yaml';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { configFromObject } from '../src/config/load.js';
import type { Identity } from '../src/identity/types.js';
import { PolicyResolver, sshOptions, type Decision, type PolicySet } from '../src/policy/engine.js';
import { analyzeShell } from '../src/policy/shell/facts.js';
import { httpAction, type HeaderInput } from '../src/policy/http/index.js';
import { analyzeSql, initSqlAnalysis } from '../src/policy/sql/facts.js';

interface Entry {
  sql: string;
  as: 'ci' | 'analysts' | 'dba';
  expect: 'allow' | 'deny' | 'review';
  why: string;
  rule?: string;
  tags?: string[];
  known_bug?: string;
}

const GROUPS = ['ci', 'analysts', 'dba'] as const;
const ACTIONS = ['allow', 'deny', 'review'] as const;

/** Every evasion category the corpus must exercise at least once. */
const REQUIRED_TAGS = [
  'cte', // data-modifying statement inside WITH
  'nested_cte', // WITH inside WITH
  'cte_in_insert', // data-modifying CTE inside INSERT ... SELECT
  'subquery',
  'select_into',
  'create_table_as',
  'explain', // plain EXPLAIN of a write (not executed)
  'explain_analyze', // EXPLAIN ANALYZE of a write (executed)
  'prepare',
  'do',
  'do_dynamic', // EXECUTE of a string built at run time
  'do_literal', // EXECUTE of a literal
  'function_body',
  'multi_statement',
  'comment',
  'string_literal',
  'quoted_identifier',
  'case',
  'schema_qualified',
  'copy',
  'dangerous_function',
  'set_role',
  'session_authorization',
  'grant',
  'create_role',
  'alter_system',
  'truncate',
  'vacuum',
  'lock',
  'parse_error',
  'empty',
  'psql_catalog',
  'read_only_write', // a write an analyst (read_only) must not get through
  'read_only_read', // a read an analyst must be allowed
  'parse_differential', // settings that make the server lex differently from the gateway
];

const root = new URL('../fixtures/policy/', import.meta.url);
const fragment = parse(fs.readFileSync(new URL('policies.yaml', root), 'utf8')) as Record<string, unknown>;
const corpus = parse(fs.readFileSync(new URL('corpus.yaml', root), 'utf8')) as Entry[];

const cfg = configFromObject({ ...fragment, targets: {} }, '');
const resolver = new PolicyResolver(cfg.policies, cfg.policy);
await initSqlAnalysis();

function identity(group: string): Identity {
  return { sub: 'x', groups: [group], issuer: 't', claims: {} };
}

const sets = new Map<string, PolicySet>();
for (const g of GROUPS) {
  const set = resolver.resolve(identity(g), 'orders', 'postgres');
  if (!set) throw new Error('the reference policies resolved to no policy set');
  sets.set(g, set);
}

/** One line of SQL for messages. */
function show(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  return JSON.stringify(s.length > 160 ? s.slice(0, 157) + '...' : s);
}

t.test('the reference policies', async (t) => {
  t.same(
    cfg.policies.map((p) => p.name),
    ['ci-read-mostly', 'analysts', 'dba', 'ssh-guard', 'ci-shell', 'dba-forwarding', 'http-api'],
  );
  const ci = cfg.policies[0]!;
  t.same(
    ci.rules.map((r) => `${r.name} ${r.action}`),
    [
      'ci-read-mostly#1 deny',
      'ci-read-mostly#2 deny',
      'ci-read-mostly#3 deny',
      'ci-read-mostly#4 deny',
      'ci-read-mostly#5 review',
      'ci-read-mostly#6 allow',
    ],
  );
  t.equal(cfg.policies[1]!.read_only, true);
  t.same(cfg.policy, { default: 'deny', on_parse_error: 'deny' });
  for (const g of GROUPS) t.same(sets.get(g)!.names.length, 1, `exactly one policy applies to group ${g}`);
});

t.test('the corpus is well formed', async (t) => {
  t.ok(Array.isArray(corpus), 'a YAML list');
  t.ok(corpus.length >= 150, `at least 150 entries (has ${corpus.length})`);
  const seen = new Set<string>();
  const tags = new Set<string>();
  for (const [i, e] of corpus.entries()) {
    const where = `entry ${i + 1} ${show(String(e.sql))}`;
    t.equal(typeof e.sql, 'string', `${where}: sql is a string`);
    t.ok(GROUPS.includes(e.as as (typeof GROUPS)[number]), `${where}: as is one of ${GROUPS.join(', ')}`);
    t.ok(ACTIONS.includes(e.expect as (typeof ACTIONS)[number]), `${where}: expect is one of ${ACTIONS.join(', ')}`);
    t.ok(typeof e.why === 'string' && e.why.length > 0, `${where}: has a why`);
    const key = `${e.as}\u0000${e.sql}`;
    t.notOk(seen.has(key), `${where}: not a duplicate`);
    seen.add(key);
    for (const tag of e.tags ?? []) tags.add(tag);
  }
  for (const tag of REQUIRED_TAGS) t.ok(tags.has(tag), `some entry is tagged ${tag}`);
  for (const g of GROUPS) t.ok(corpus.some((e) => e.as === g), `some entry is decided as ${g}`);
});

type Counts = { total: number; pass: number; fail: number; known: number; knownNowPassing: number; allow: number; deny: number; review: number };
const newCounts = (total: number): Counts => ({ total, pass: 0, fail: 0, known: 0, knownNowPassing: 0, allow: 0, deny: 0, review: 0 });
const counts = newCounts(corpus.length);

/** Checks one corpus entry's decision (SQL or shell); known bugs become todos. */
function checkEntry(
  t: Test,
  g: string,
  text: string,
  e: { expect: 'allow' | 'deny' | 'review'; rule?: string; why?: string; known_bug?: string },
  r: { decision: Decision; facts: unknown },
  counts: Counts,
  detail: string,
): void {
  const { decision, facts } = r;
  counts[e.expect]++;
  const ok = decision.action === e.expect && (e.rule === undefined || decision.rule === e.rule);
  const got = `${decision.action} by ${decision.rule}${detail}`;
  const want = `${e.expect}${e.rule ? ` by ${e.rule}` : ''}`;
  if (e.known_bug !== undefined) {
    counts.known++;
    if (ok) {
      counts.knownNowPassing++;
      t.comment(`known_bug entry now decides as expected, remove known_bug: ${show(text)} (${want})`);
    }
    // A todo subtest is listed, not run: its name carries what the engine said.
    t.todo(`${show(text)}: expected ${want}, engine: ${got} [known bug: ${e.known_bug}]`, (t) => {
      t.equal(decision.action, e.expect);
    });
    return;
  }
  if (ok) counts.pass++;
  else counts.fail++;
  const diag = { why: e.why, got, message: decision.message, facts };
  t.equal(decision.action, e.expect, `${g}: ${show(text)} -> ${e.expect}`, ok ? {} : diag);
  if (e.rule !== undefined) t.equal(decision.rule, e.rule, `${g}: ${show(text)} decided by ${e.rule}`, ok ? {} : diag);
}

for (const g of GROUPS) {
  t.test(`decisions as ${g}`, async (t) => {
    const set = sets.get(g)!;
    for (const e of corpus.filter((x) => x.as === g)) {
      const r = set.decide(e.sql, analyzeSql);
      checkEntry(t, g, e.sql, e, r, counts, r.decision.kind ? ` (kind ${r.decision.kind})` : '');
    }
  });
}

// Runs after the decision subtests (top-level subtests run in order).
t.test('summary', async (t) => {
  t.pass(`${counts.total} entries decided`);
  t.comment(
    `policy corpus: ${counts.total} entries (${counts.allow} allow, ${counts.review} review, ${counts.deny} deny expected); ` +
      `${counts.pass} agree, ${counts.fail} disagree, ${counts.known} known bugs (todo)` +
      (counts.knownNowPassing ? `, ${counts.knownNowPassing} known bugs now pass` : ''),
  );
});

// ---------------------------------------------------------------- shell commands (SSH)

interface ShellEntry {
  command: string;
  as: 'ci' | 'analysts' | 'dba';
  expect: 'allow' | 'deny' | 'review';
  why: string;
  rule?: string;
  tags?: string[];
  known_bug?: string;
}

/** Every evasion category the shell corpus must exercise at least once. */
const REQUIRED_SHELL_TAGS = [
  'quoting', // r\m, "rm", $'\x72m', /bin/rm
  'pipe_to_shell',
  'redirect',
  'wrapper', // sudo, env, nice, timeout, ...
  'sh_c',
  'substitution', // $( ), backticks
  'procsub',
  'heredoc',
  'dynamic',
  'eval',
  'env_prefix',
  'xargs',
  'find',
  'comment',
  'multi_command',
  'compound', // if, for, case, functions
  'subshell',
  'cd',
  'path_normalisation',
  'brace_expansion',
  'glob',
  'ssh_remote',
  'parse_error',
  'empty',
  'review',
  'read_only_write',
  'read_only_read',
];

const shellCorpus = parse(fs.readFileSync(new URL('shell.yaml', root), 'utf8')) as ShellEntry[];
const sshSets = new Map<string, PolicySet>();
for (const g of GROUPS) {
  const set = resolver.resolve(identity(g), 'web01', 'ssh');
  if (!set) throw new Error('the reference policies resolved to no policy set for ssh');
  sshSets.set(g, set);
}

t.test('the shell corpus is well formed', async (t) => {
  t.ok(Array.isArray(shellCorpus), 'a YAML list');
  t.ok(shellCorpus.length >= 60, `at least 60 entries (has ${shellCorpus.length})`);
  const seen = new Set<string>();
  const tags = new Set<string>();
  for (const [i, e] of shellCorpus.entries()) {
    const where = `entry ${i + 1} ${show(String(e.command))}`;
    t.equal(typeof e.command, 'string', `${where}: command is a string`);
    t.ok(GROUPS.includes(e.as), `${where}: as is one of ${GROUPS.join(', ')}`);
    t.ok(ACTIONS.includes(e.expect), `${where}: expect is one of ${ACTIONS.join(', ')}`);
    t.ok(typeof e.why === 'string' && e.why.length > 0, `${where}: has a why`);
    const key = `${e.as}\u0000${e.command}`;
    t.notOk(seen.has(key), `${where}: not a duplicate`);
    seen.add(key);
    for (const tag of e.tags ?? []) tags.add(tag);
  }
  for (const tag of REQUIRED_SHELL_TAGS) t.ok(tags.has(tag), `some entry is tagged ${tag}`);
  for (const g of GROUPS) t.ok(shellCorpus.some((e) => e.as === g), `some entry is decided as ${g}`);
  for (const a of ACTIONS) t.ok(shellCorpus.some((e) => e.expect === a), `some entry expects ${a}`);
});

t.test('SSH sessions get their own policy sets', async (t) => {
  t.same(sshSets.get('ci')!.names, ['ci-read-mostly', 'ssh-guard', 'ci-shell']);
  t.same(sshSets.get('analysts')!.names, ['analysts', 'ssh-guard']);
  t.same(sshSets.get('dba')!.names, ['dba', 'ssh-guard', 'dba-forwarding']);
  for (const g of GROUPS) t.not(sshSets.get(g), sets.get(g), `${g}: the ssh set is not the postgres set`);
  // a policy matching both protocols alone still gives two sets (and so two caches)
  const both = new PolicyResolver([{ name: 'any', match: {}, read_only: true, rules: [] }], cfg.policy);
  const pg = both.resolve(identity('x'), 't', 'postgres')!;
  const ssh = both.resolve(identity('x'), 't', 'ssh')!;
  t.not(pg, ssh, 'resolved per protocol');
  t.equal(both.resolve(identity('y'), 't', 'ssh'), ssh, 'and shared by sessions of one protocol');
  // even one PolicySet never mixes SQL and shell text in its cache
  const a = pg.decide('ls', analyzeSql);
  const b = pg.decide('ls', analyzeShell);
  t.ok(a.facts.parse_error !== undefined, '"ls" as SQL does not parse');
  t.same(b.facts.statements.map((s) => s.kind), ['command'], '"ls" as a shell line is a command');
  t.equal(b.decision.action, 'allow', 'and read_only allows it');
  t.equal(pg.decide('ls', analyzeSql).decision.rule, 'on_parse_error', 'the SQL entry is still there');
});

t.test('SSH options from the reference policies', async (t) => {
  t.same(sshOptions(sshSets.get('ci')!), { shell: 'deny', sftp: 'read_write', forwarding: { local: false, remote: false, agent: false, x11: false } }, 'ci: exec only');
  t.same(sshOptions(sshSets.get('analysts')!), { shell: 'allow', sftp: 'read_only', forwarding: { local: false, remote: false, agent: false, x11: false } }, 'analysts: read_only means sftp read_only');
  t.same(sshOptions(sshSets.get('dba')!), { shell: 'allow', sftp: 'read_write', forwarding: { local: true, remote: false, agent: false, x11: false } }, 'dba: local forwarding granted; agent granted but refused by ssh-guard');
  t.same(sshOptions(null), { shell: 'allow', sftp: 'read_write', forwarding: { local: false, remote: false, agent: false, x11: false } }, 'no statement policy: forwarding still closed');
  const none = resolver.resolve({ sub: 'x', groups: ['nobody'], issuer: 't', claims: {} }, 'web01', 'ssh')!;
  t.same(none.names, ['ssh-guard']);
  const nothing = new PolicyResolver(cfg.policies, cfg.policy).resolve({ sub: 'x', groups: [] , issuer: 't', claims: {} }, 'web01', 'postgres')!;
  t.same(nothing.names, []);
  t.same(sshOptions(nothing), { shell: 'deny', sftp: 'deny', forwarding: { local: false, remote: false, agent: false, x11: false } }, 'no policy applies and policy.default is deny: no shell, no sftp');
});

const shellCounts = newCounts(shellCorpus.length);

for (const g of GROUPS) {
  t.test(`shell decisions as ${g}`, async (t) => {
    const set = sshSets.get(g)!;
    for (const e of shellCorpus.filter((x) => x.as === g)) {
      const r = set.decide(e.command, analyzeShell);
      checkEntry(t, g, e.command, e, r, shellCounts, r.decision.program !== undefined ? ` (command ${JSON.stringify(r.decision.program)})` : '');
    }
  });
}

t.test('shell summary', async (t) => {
  t.pass(`${shellCounts.total} shell entries decided`);
  t.comment(
    `shell corpus: ${shellCounts.total} entries (${shellCounts.allow} allow, ${shellCounts.review} review, ${shellCounts.deny} deny expected); ` +
      `${shellCounts.pass} agree, ${shellCounts.fail} disagree, ${shellCounts.known} known bugs (todo)` +
      (shellCounts.knownNowPassing ? `, ${shellCounts.knownNowPassing} known bugs now pass` : ''),
  );
});

// ---------------------------------------------------------------- HTTP requests

interface HttpEntry {
  request: string;
  headers?: HeaderInput;
  body?: unknown;
  body_error?: string;
  as: 'ci' | 'analysts' | 'dba';
  expect: 'allow' | 'deny' | 'review';
  why: string;
  rule?: string;
  tags?: string[];
  known_bug?: string;
}

/** Every path-confusion and evasion category the HTTP corpus must exercise at least once. */
const REQUIRED_HTTP_TAGS = [
  'dot_segments', 'encoded_dot', 'path_params', 'encoded_slash', 'backslash', 'double_encoding', 'overlong_utf8',
  'double_slash', 'case', 'fragment', 'head', 'method_override', 'query', 'header', 'body', 'body_error', 'hpp',
  'parse_error', 'read_only_write', 'read_only_read',
];

const httpCorpus = parse(fs.readFileSync(new URL('http.yaml', root), 'utf8')) as HttpEntry[];
const httpSets = new Map<string, PolicySet>();
for (const g of GROUPS) httpSets.set(g, resolver.resolve(identity(g), 'payments', 'http')!);

t.test('the HTTP corpus is well formed', async (t) => {
  t.ok(Array.isArray(httpCorpus), 'a YAML list');
  const tags = new Set<string>();
  const seen = new Set<string>();
  for (const [i, e] of httpCorpus.entries()) {
    const where = `entry ${i + 1} ${show(String(e.request))}`;
    t.match(e.request, /^[A-Z]+ \S/, `${where}: request is "METHOD target"`);
    t.ok(GROUPS.includes(e.as), `${where}: as is one of ${GROUPS.join(', ')}`);
    t.ok(ACTIONS.includes(e.expect), `${where}: expect is one of ${ACTIONS.join(', ')}`);
    t.ok(typeof e.why === 'string' && e.why.length > 0, `${where}: has a why`);
    const key = JSON.stringify([e.as, e.request, e.headers, e.body, e.body_error]);
    t.notOk(seen.has(key), `${where}: not a duplicate`);
    seen.add(key);
    for (const tag of e.tags ?? []) tags.add(tag);
  }
  for (const tag of REQUIRED_HTTP_TAGS) t.ok(tags.has(tag), `some entry is tagged ${tag}`);
  t.same(httpSets.get('ci')!.names, ['ci-read-mostly', 'http-api']);
});

const httpCounts = newCounts(httpCorpus.length);

for (const g of GROUPS) {
  t.test(`HTTP decisions as ${g}`, async (t) => {
    const set = httpSets.get(g)!;
    for (const e of httpCorpus.filter((x) => x.as === g)) {
      const sp = e.request.indexOf(' ');
      const a = httpAction(set, { method: e.request.slice(0, sp), target: e.request.slice(sp + 1), headers: e.headers, body: e.body, body_error: e.body_error });
      const r = set.decide(a.text, a.analyze, a.cacheKey);
      const label = `${e.request}${e.headers ? ' ' + JSON.stringify(e.headers) : ''}${e.body !== undefined ? ' ' + JSON.stringify(e.body) : ''}`;
      checkEntry(t, g, label, e, r, httpCounts, '');
    }
  });
}

t.test('HTTP summary', async (t) => {
  t.pass(`${httpCounts.total} HTTP entries decided`);
  t.comment(
    `http corpus: ${httpCounts.total} entries (${httpCounts.allow} allow, ${httpCounts.review} review, ${httpCounts.deny} deny expected); ` +
      `${httpCounts.pass} agree, ${httpCounts.fail} disagree, ${httpCounts.known} known bugs (todo)`,
  );
});
