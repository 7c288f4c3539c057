// The statement-policy corpus: every entry of fixtures/policy/corpus.yaml is
// decided by the real engine (libpg-query parse tree -> facts -> rules) against
// the reference policies in fixtures/policy/policies.yaml. Evasion tricks
// (writes in CTEs, EXPLAIN ANALYZE, DO blocks, comments, quoting, multi-statement
// strings, COPY PROGRAM, dangerous functions...) and the exact catalog queries
// psql 15 sends for \d, \dt, \df, \l, \du, \dn, \di are all here.
//
// An entry whose expectation the engine gets wrong today carries
// `known_bug: "<reason>"`: it is reported as a todo (with what the engine said)
// instead of failing, and flagged when it starts to pass.
import t from 'tap';
import fs from 'node:fs';
import { parse } from 'yaml';
import { configFromObject } from '../src/core/config.js';
import type { Identity } from '../src/core/identity-types.js';
import { PolicyResolver, type PolicySet } from '../src/policy/engine.js';
import { analyzeSql, initSqlAnalysis } from '../src/policy/sql-facts.js';

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
    ['ci-read-mostly', 'analysts', 'dba'],
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

const counts = { total: corpus.length, pass: 0, fail: 0, known: 0, knownNowPassing: 0, allow: 0, deny: 0, review: 0 };

for (const g of GROUPS) {
  t.test(`decisions as ${g}`, async (t) => {
    const set = sets.get(g)!;
    for (const e of corpus.filter((x) => x.as === g)) {
      const { decision, facts } = set.decide(e.sql, analyzeSql);
      counts[e.expect]++;
      const ok = decision.action === e.expect && (e.rule === undefined || decision.rule === e.rule);
      const got = `${decision.action} by ${decision.rule}${decision.kind ? ` (kind ${decision.kind})` : ''}`;
      const want = `${e.expect}${e.rule ? ` by ${e.rule}` : ''}`;
      if (e.known_bug !== undefined) {
        counts.known++;
        if (ok) {
          counts.knownNowPassing++;
          t.comment(`known_bug entry now decides as expected, remove known_bug: ${show(e.sql)} (${want})`);
        }
        // A todo subtest is listed, not run: its name carries what the engine said.
        t.todo(`${show(e.sql)}: expected ${want}, engine: ${got} [known bug: ${e.known_bug}]`, (t) => {
          t.equal(decision.action, e.expect);
        });
        continue;
      }
      if (ok) counts.pass++;
      else counts.fail++;
      const diag = { why: e.why, got, message: decision.message, facts };
      t.equal(decision.action, e.expect, `${g}: ${show(e.sql)} -> ${e.expect}`, ok ? {} : diag);
      if (e.rule !== undefined) t.equal(decision.rule, e.rule, `${g}: ${show(e.sql)} decided by ${e.rule}`, ok ? {} : diag);
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
