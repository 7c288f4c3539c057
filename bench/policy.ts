// Policy decision cost per statement: uncached (parse + facts + rules) and
// cached (decision cache hit), for a pgbench statement and psql's \d query.
//   node --import tsx bench/policy.ts
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { configFromObject } from '../src/config/load.js';
import { PolicyResolver } from '../src/policy/engine.js';
import { analyzeSql, initSqlAnalysis } from '../src/policy/sql/facts.js';
import { machineLine, writeResult } from './lib/env.js';

await initSqlAnalysis();
const cfg = configFromObject(
  {
    policies: [
      {
        name: 'ci',
        match: { groups: ['ci'] },
        rules: [
          { deny: { kind: ['drop', 'truncate', 'alter_system', 'grant', 'revoke', 'create_role'] } },
          { deny: { kind: ['update', 'delete'], where: 'absent' } },
          { deny: { copy: ['program', 'file'] } },
          { deny: { functions: ['pg_read_file', 'pg_ls_dir', 'lo_export', 'lo_import', 'dblink*'] } },
          { allow: { kind: ['select', 'update', 'insert', 'begin', 'commit'] } },
        ],
      },
    ],
  },
  '',
);
const identity = { sub: 'b', groups: ['ci'], issuer: 'x', claims: {} };
const cases: Record<string, string> = {
  'pgbench -S select': 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;',
  'pgbench tpcb update': 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;',
  'psql \\d table': `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation, a.attidentity, a.attgenerated FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;`,
};

function time(fn: (i: number) => void, n: number): number {
  for (let i = 0; i < Math.min(n, 2000); i++) fn(i);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

const rows: string[] = ['| statement | uncached µs | cached µs |', '|---|---:|---:|'];
const json: Record<string, unknown>[] = [];
for (const [name, sql] of Object.entries(cases)) {
  // Uncached: a fresh resolver (empty cache) and a distinct text each time, so nothing is reused.
  const uncached = time((i) => {
    const set = new PolicyResolver(cfg.policies, cfg.policy).resolve(identity, 'orders', 'postgres')!;
    set.decide(`${sql} -- ${i}`, analyzeSql);
  }, 3000);
  const set = new PolicyResolver(cfg.policies, cfg.policy).resolve(identity, 'orders', 'postgres')!;
  const cached = time(() => set.decide(sql, analyzeSql), 200_000);
  rows.push(`| ${name} | ${uncached.toFixed(1)} | ${cached.toFixed(2)} |`);
  json.push({ statement: name, uncached_us: uncached, cached_us: cached });
}
const md = `Policy decision cost per statement, one core; ${machineLine()}\n\n${rows.join('\n')}\n`;
writeResult('policy', md, { results: json });
