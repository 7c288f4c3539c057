// The decision-cache key: texts that differ only in numeric constants share a
// key, and a shared key never joins two texts whose facts differ.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { sqlCacheKey } from '../src/policy/sql/cache-key.js';
import { analyzeSql, initSqlAnalysis } from '../src/policy/sql/facts.js';

await initSqlAnalysis();

t.test('numbers share a key; everything else keeps it apart', async (t) => {
  const same: [string, string][] = [
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 17;', 'SELECT abalance FROM pgbench_accounts WHERE aid = 99321;'],
    ['UPDATE t SET v = v + 1.5 WHERE id = 3', 'UPDATE t SET v = v + 2 WHERE id = 4'],
    ['select .5, 1e-3, 2E+7', 'select 7, 8, 9'],
    ['select 1 -- note 1\n, 2', 'select 3 -- note 1\n, 4'],
    ["select 'a''1', 1", "select 'a''1', 2"],
  ];
  for (const [a, b] of same) t.equal(sqlCacheKey(a), sqlCacheKey(b), `${a} ~ ${b}`);

  const apart: [string, string][] = [
    ['select * from t1', 'select * from t2'],
    ["select '1'", "select '2'"],
    ['select "col1" from t', 'select "col2" from t'],
    ['select $1', 'select $2'],
    ['select 1 /* 1 */', 'select 1 /* 2 */'],
    ['select x1 from t where y = 1', 'select x2 from t where y = 1'],
  ];
  for (const [a, b] of apart) t.not(sqlCacheKey(a), sqlCacheKey(b), `${a} !~ ${b}`);

  // What the scan does not fully understand is its own key.
  for (const q of [
    "do $$ begin execute 'drop table t' || 1; end $$",
    "select E'\\'' || 1",
    "select U&'d\\0061t' , 1",
    'select 0x1F',
    'select 1_000',
    'select /* a /* nested */ 1 */ 2',
    "select 'unterminated 1",
    'select t.5',
  ]) {
    t.equal(sqlCacheKey(q), q, `kept whole: ${q}`);
  }
  t.equal(sqlCacheKey('select now()'), 'select now()', 'no numbers: the text itself');
});

t.test('soundness over the policy corpus: a shared key means the same facts', async (t) => {
  const corpus = parse(readFileSync(new URL('../fixtures/policy/corpus.yaml', import.meta.url), 'utf8')) as { sql: string }[];
  const facts = (sql: string) => {
    const f = analyzeSql(sql);
    // `text` (a top-level statement's own source) is informational: decisions never read it.
    return JSON.stringify({ s: f.statements.map(({ text: _t, ...rest }) => rest), e: f.parse_error !== undefined });
  };
  // Statements whose facts do depend on a number's value (read as a boolean).
  const sensitive = [
    'set transaction_read_only = 0',
    'SET default_transaction_read_only TO 1',
    'set session characteristics as transaction read write',
    'explain (analyze 0) delete from t',
    "update pg_settings set setting = 0 where name = 'standard_conforming_strings'",
    "select set_config('standard_conforming_strings', 0::text, false)",
    'SET U&"transaction\\005fread_only" = 0',
    'begin; set local transaction_read_only = 0; delete from t where id = 1',
  ];
  let shared = 0;
  for (const sql of [...corpus.map((c) => c.sql), ...sensitive]) {
    const key = sqlCacheKey(sql);
    if (key === sql) continue;
    // Change every numeric constant the key replaced (to 0, 1 and 4242); the facts must not change.
    for (const n of ['0', '1', '4242']) {
      const variant = key.split('\0').join(n);
      if (sqlCacheKey(variant) !== key) continue; // (e.g. glued to something: no sharing)
      shared++;
      t.equal(facts(variant), facts(sql), `same facts: ${sql.slice(0, 80)} with ${n}`);
    }
  }
  for (const sql of sensitive) t.equal(sqlCacheKey(sql), sql, `own key: ${sql}`);
  t.ok(shared > 20, `${shared} corpus entries share a key with a variant`);
});
