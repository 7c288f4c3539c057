// Facts extracted from SQL text: every place a statement can hide (CTEs,
// subqueries, EXPLAIN, PREPARE, COPY, cursors, rules, views, DO blocks,
// function bodies), read-only semantics, names, parse errors, and the cache.
import t from 'tap';
import {
  analyzeSql,
  analyzeSqlCached,
  initSqlAnalysis,
  type StatementFacts,
} from '../src/policy/sql/facts.js';
import { LruCache } from '../src/policy/lru.js';

await initSqlAnalysis();

const all = (sql: string): StatementFacts[] => analyzeSql(sql).statements;
const top = (sql: string): StatementFacts => {
  const s = all(sql)[0];
  if (s === undefined) throw new Error(`no statement in ${sql}`);
  return s;
};
/** "via:kind" of every statement, top-level first. */
const shape = (sql: string): string[] => all(sql).map((s) => `${s.via}:${s.kind}`);
const find = (sql: string, kind: string): StatementFacts | undefined =>
  all(sql).find((s) => s.kind === kind);

// Captured with `psql -E` (psql 15.20) against PostgreSQL 15 for
// \d pgbench_accounts, \dt, \df, \l, \du.
const PSQL_QUERIES: [string, string][] = [
  ["\\d (lookup)", String.raw`SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(pgbench_accounts)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;`],
  ["\\d (relation info)", String.raw`SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '16396';`],
  ["\\d (columns)", String.raw`SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16396' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;`],
  ["\\d (indexes)", String.raw`SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '16396' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname;`],
  ["\\d (policies)", String.raw`SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd
    WHEN 'r' THEN 'SELECT'
    WHEN 'a' THEN 'INSERT'
    WHEN 'w' THEN 'UPDATE'
    WHEN 'd' THEN 'DELETE'
    END AS cmd
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '16396' ORDER BY 1;`],
  ["\\d (statistics)", String.raw`SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '16396'
ORDER BY nsp, stxname;`],
  ["\\d (publications)", String.raw`SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16396' and pg_catalog.pg_relation_is_publishable('16396')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16396'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16396')
ORDER BY 1;`],
  ["\\d (inherits)", String.raw`SELECT c.oid::pg_catalog.regclass
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '16396'
  AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno;`],
  ["\\d (partitions)", String.raw`SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '16396'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text;`],
  ["\\dt", String.raw`SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;`],
  ["\\df", String.raw`SELECT n.nspname as "Schema",
  p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types",
 CASE p.prokind
  WHEN 'a' THEN 'agg'
  WHEN 'w' THEN 'window'
  WHEN 'p' THEN 'proc'
  ELSE 'func'
 END as "Type"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
ORDER BY 1, 2, 4;`],
  ["\\l", String.raw`SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       d.datctype as "Ctype",
       d.daticulocale as "ICU Locale",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;`],
  ["\\du", String.raw`SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;`],
];

t.test('psql catalog queries are read-only selects', async (t) => {
  t.equal(PSQL_QUERIES.length, 13);
  for (const [label, sql] of PSQL_QUERIES) {
    const facts = analyzeSql(sql);
    t.equal(facts.parse_error, undefined, `${label} parses`);
    t.equal(facts.statements[0]?.kind, 'select', `${label} kind`);
    t.ok(facts.statements.every((s) => !s.changes_state && !s.dynamic && !s.set_role), `${label} read-only`);
    t.ok(facts.statements[0]?.tables_read.every((n) => n.startsWith('pg_catalog.')), `${label} catalog only`);
  }
  const d = top(PSQL_QUERIES[0]![1]);
  t.same(d.tables_read, ['pg_catalog.pg_class', 'pg_catalog.pg_namespace']);
  t.same(d.functions, ['pg_catalog.pg_table_is_visible']);
  // \d (columns) has two scalar subqueries.
  t.same(shape(PSQL_QUERIES[2]![1]), ['top:select', 'subquery:select', 'subquery:select']);
  // \du: ARRAY(SELECT ...) subquery reads pg_auth_members.
  t.ok(top(PSQL_QUERIES[12]![1]).tables_read.includes('pg_catalog.pg_auth_members'));
});

t.test('simple statements', async (t) => {
  const s = top('SELECT abalance FROM pgbench_accounts WHERE aid = $1');
  t.same(s, {
    kind: 'select', tables_read: ['pgbench_accounts'], tables_written: [], functions: [],
    changes_state: false, via: 'top', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
  });
  t.equal(top('values (1), (2)').kind, 'values');
  t.equal(top('values (1), (2)').changes_state, false);
  t.equal(top('table t').tables_read[0], 't');
  t.same(top('insert into t (a) values (1)').tables_written, ['t']);
  t.equal(top('insert into t (a) values (1)').changes_state, true);
  t.same(shape('insert into t (a) values (1)'), ['top:insert']);
});

t.test('multi-statement strings keep order and text', async (t) => {
  const f = analyzeSql('select 1; delete from t where id = 2 ;  update u set a = 1');
  t.same(f.statements.map((s) => s.kind), ['select', 'delete', 'update']);
  t.same(f.statements.map((s) => s.text), ['select 1', 'delete from t where id = 2', 'update u set a = 1']);
  // stmt_location is a byte offset: non-ASCII text before a statement must not shift slices.
  t.same(all("select 'é€'; select 2").map((s) => s.text), ["select 'é€'", 'select 2']);
});

t.test('comments, literals and quoted identifiers are not statements', async (t) => {
  t.same(shape('select 1 /* drop table x */'), ['top:select']);
  t.same(shape('select 1 -- ; drop table x\n'), ['top:select']);
  t.same(shape("select 'drop table x'"), ['top:select']);
  t.equal(top("select 'drop table x'").changes_state, false);
  const q = top('select "delete" from t');
  t.same([q.kind, q.tables_read, q.changes_state], ['select', ['t'], false]);
  t.same(shape('select $$; delete from t; $$'), ['top:select']);
  t.same(analyzeSql('-- nothing here').statements, []);
  t.same(analyzeSql('').statements, []);
});

t.test('name folding', async (t) => {
  t.same(top('DELETE FROM "Orders"').tables_written, ['Orders']);
  t.same(top('delete from Orders').tables_written, ['orders']);
  t.same(top('delete from public.Orders').tables_written, ['public.orders']);
  t.same(top('select * from "Sch"."T", db.s.t').tables_read, ['Sch.T', 'db.s.t']);
  t.same(top('select PG_CATALOG.Pg_Read_File(\'x\')').functions, ['pg_catalog.pg_read_file']);
  t.same(top('select "MyFn"()').functions, ['MyFn']);
  // A dot inside a quoted identifier is not a schema separator.
  t.same(top('delete from "public.customers"').tables_written, ['"public.customers"']);
  t.same(top('select * from s."a.b", "x""y"').tables_read, ['s."a.b"', '"x""y"']);
  t.same(top('drop table "a.b"').tables_written, ['"a.b"']);
});

t.test('parse errors', async (t) => {
  const f = analyzeSql('selec 1');
  t.match(f.parse_error, /syntax error at or near "selec"/);
  t.same(f.statements, []);
  t.equal(f.fingerprint, undefined);
  t.match(analyzeSql('select 1; drop tabel x').parse_error, /syntax error/);
  t.same(analyzeSql('select 1; drop tabel x').statements, []);
});

t.test('fingerprint and normalized', async (t) => {
  const a = analyzeSql('select * from t where id = 1');
  const b = analyzeSql('select * from t where id = 42');
  t.equal(typeof a.fingerprint, 'string');
  t.equal(a.fingerprint, b.fingerprint);
  t.equal(a.normalized, 'select * from t where id = $1');
  t.match(JSON.parse(JSON.stringify(a)), { fingerprint: a.fingerprint, normalized: a.normalized });
});

t.test('CTEs', async (t) => {
  const sql = 'WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d';
  t.same(shape(sql), ['top:select', 'cte:delete']);
  const [sel, del] = all(sql);
  t.same(sel!.tables_read, [], 'the CTE name is not a table');
  t.equal(sel!.changes_state, true, 'the top statement carries the write it runs');
  t.same(sel!.tables_written, ['t']);
  t.same([del!.tables_written, del!.where, del!.changes_state], [['t'], true, true]);
  // Nested WITH inside a CTE, and a CTE referenced from a subquery.
  const nested = 'with a as (with b as (insert into log values (1) returning id) select * from b) ' +
    'select * from x where id in (select id from a)';
  t.same(shape(nested), ['top:select', 'cte:select', 'cte:insert', 'subquery:select']);
  t.same(top(nested).tables_read, ['x']);
  t.same(top(nested).tables_written, ['log']);
  // Without RECURSIVE, a CTE's own name inside it is the real table.
  t.same(top('WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets').tables_read, ['secrets']);
  t.same(top('with a as (select 1), b as (select * from a) select * from b').tables_read, []);
  t.same(top('with b as (select * from a), a as (select 1) select * from b').tables_read, ['a']);
  // CTE names are visible in nested subqueries, but not outside their WITH.
  t.same(top('with a as (select 1) select * from (select * from a) s').tables_read, []);
  t.same(top('select * from (with a as (select 1) select * from a) s, a').tables_read, ['a']);
  // A schema-qualified name never refers to a CTE.
  t.same(top('with t as (select 1) select * from public.t, t').tables_read, ['public.t']);
  // Data-modifying CTE under INSERT / UPDATE.
  t.same(shape('with u as (update acct set b = 0 returning id) insert into audit select id from u'),
    ['top:insert', 'cte:update', 'subquery:select']);
});

t.test('recursive CTEs', async (t) => {
  const sql = 'with recursive r(n) as (select 1 union all select n + 1 from r where n < 5) select * from r';
  t.same(shape(sql), ['top:select', 'cte:select']);
  t.ok(all(sql).every((s) => s.tables_read.length === 0 && !s.changes_state));
  const w = 'with recursive r as (select id from tree union all select t.id from tree t join r on t.parent = r.id) delete from tree where id in (select id from r)';
  t.same(top(w).tables_written, ['tree']);
  t.same(top(w).tables_read, ['tree']);
});

t.test('subqueries in every clause', async (t) => {
  const cases: [string, string][] = [
    ['select * from (select * from s1) x', 's1'],
    ['select * from t where exists (select 1 from s2)', 's2'],
    ['select (select max(a) from s3)', 's3'],
    ['select a, count(*) from t group by a having count(*) > (select 1 from s4)', 's4'],
    ['select * from t order by (select 1 from s5)', 's5'],
    ['select * from t, lateral (select * from s6 where s6.id = t.id) l', 's6'],
    ['select * from t join s7 on true', 's7'],
    ['select 1 from t union select 2 from s8', 's8'],
    ['select * from t where a = any(array(select a from s9))', 's9'],
    ['select f((select x from s10))', 's10'],
    ['select * from t where a in (select a from s11 where b in (select b from s12))', 's12'],
    ['delete from t using (select id from s13) x where t.id = x.id', 's13'],
    ['update t set a = (select max(a) from s14)', 's14'],
    ['insert into t values ((select 1 from s15))', 's15'],
    ['select case when exists (select 1 from s16) then 1 end', 's16'],
    ['select count(*) filter (where a in (select a from s17)) from t', 's17'],
  ];
  for (const [sql, table] of cases) t.ok(top(sql).tables_read.includes(table), sql);
  t.same(shape('select * from t where exists (select 1 from s2)'), ['top:select', 'subquery:select']);
  t.same(shape('select 1 from t union select 2 from s8'), ['top:select'], 'set-operation arms are one statement');
  // Writes hidden in a subquery inside a data-modifying CTE inside a subquery.
  const deep = 'select * from (with x as (delete from victims returning *) select * from x) s';
  t.same(shape(deep), ['top:select', 'subquery:select', 'cte:delete']);
  t.equal(top(deep).changes_state, true);
});

t.test('INSERT ... SELECT and MERGE', async (t) => {
  const ins = top('insert into archive select * from orders where ts < now() on conflict do nothing');
  t.same([ins.tables_written, ins.tables_read, ins.functions], [['archive'], ['orders'], ['now']]);
  const m = top('merge into tgt t using src s on t.id = s.id when matched then delete when not matched then insert values (s.id)');
  t.same([m.kind, m.tables_written, m.tables_read, m.changes_state], ['merge', ['tgt'], ['src'], true]);
});

t.test('UPDATE/DELETE where flag', async (t) => {
  t.equal(top('delete from t').where, false);
  t.equal(top('delete from t where a = 1').where, true);
  t.equal(top('update t set a = 1').where, false);
  t.equal(top('update t set a = 1 from u where t.id = u.id').where, true);
  t.same(top('update t set a = 1 from u where t.id = u.id').tables_read, ['u']);
  t.equal(top('delete from t where current of c').where, true);
  t.equal(top('select 1').where, undefined);
});

t.test('SELECT INTO and CREATE TABLE AS', async (t) => {
  const s = top('select * into newt from t');
  t.same([s.kind, s.tables_written, s.tables_read, s.changes_state], ['select_into', ['newt'], ['t'], true]);
  t.equal(top('select 1 into x union select 2').kind, 'select_into');
  const c = analyzeSql('create table c as select * from t').statements;
  t.same(c.map((x) => `${x.via}:${x.kind}`), ['top:create_table_as', 'create_as:select']);
  t.same([c[0]!.tables_written, c[0]!.tables_read], [['c'], ['t']]);
  t.same(shape('create materialized view mv as select * from t with no data'), ['top:create_matview', 'create_as:select']);
  t.same(top('refresh materialized view concurrently mv').tables_written, ['mv']);
  t.equal(top('refresh materialized view mv').kind, 'refresh_matview');
});

t.test('views and rules', async (t) => {
  const v = analyzeSql('create view v as select * from secrets').statements;
  t.same(v.map((x) => `${x.via}:${x.kind}`), ['top:create_view', 'create_as:select']);
  t.same([v[0]!.tables_written, v[0]!.tables_read], [['v'], ['secrets']]);
  const r = 'create rule r as on insert to t do instead (delete from u; notify x)';
  t.same(shape(r), ['top:create_other', 'rule:delete', 'rule:notify']);
  t.same(top(r).tables_written, ['t', 'u']);
});

t.test('EXPLAIN', async (t) => {
  const sql = 'explain analyze delete from t';
  t.same(shape(sql), ['top:explain', 'explain:delete']);
  const [e, d] = all(sql);
  t.same([e!.explain_analyze, e!.changes_state, e!.tables_written], [true, true, ['t']]);
  t.same([d!.kind, d!.changes_state, d!.where], ['delete', true, false]);
  const plain = all('explain delete from t');
  t.same([plain[0]!.explain_analyze, plain[0]!.changes_state, plain[0]!.tables_written], [false, false, []]);
  t.same([plain[1]!.kind, plain[1]!.tables_written, plain[1]!.changes_state], ['delete', ['t'], true],
    'the nested statement is described as if it ran (conservative)');
  t.same(all('explain with d as (delete from t returning *) select * from d').map((s) => s.changes_state),
    [false, true, true]);
  t.equal(top("explain select set_config('role', 'x', false)").set_role, undefined);
  t.same(all('explain analyze with d as (delete from t returning *) select * from d').map((s) => s.changes_state),
    [true, true, true]);
  t.equal(top('explain (analyze, costs off) update t set a = 1').explain_analyze, true);
  t.equal(top('explain (analyze false) delete from t').explain_analyze, false);
  t.equal(top('explain (analyze off) delete from t').changes_state, false);
  t.same([top('explain analyze select * from t').changes_state, top('explain analyze select * from t').tables_read],
    [false, ['t']]);
  t.equal(top('explain analyze select nextval(\'s\')').changes_state, true);
});

t.test('PREPARE / EXECUTE / DEALLOCATE', async (t) => {
  t.same(shape('prepare p(int) as delete from t where id = $1'), ['top:prepare', 'prepare:delete']);
  t.equal(top('prepare p(int) as delete from t where id = $1').changes_state, true);
  t.equal(top('prepare q as select * from t').changes_state, false);
  const ex = top('execute p(1)');
  t.same([ex.kind, ex.dynamic, ex.changes_state], ['execute', true, true]);
  t.same([top('deallocate all').kind, top('deallocate p').changes_state], ['deallocate', false]);
  t.same(shape('create table x as execute p'), ['top:create_table_as', 'create_as:execute']);
  t.equal(top('create table x as execute p').dynamic, true);
});

t.test('COPY variants', async (t) => {
  const cases: [string, object, boolean, string[], string[]][] = [
    ['copy t from stdin', { direction: 'from', target: 'stdin' }, true, [], ['t']],
    ["copy t to '/tmp/x'", { direction: 'to', target: 'file' }, true, ['t'], []],
    ["copy t from program 'id'", { direction: 'from', target: 'program' }, true, [], ['t']],
    ["copy t to program 'gzip > /tmp/x'", { direction: 'to', target: 'program' }, true, ['t'], []],
    ['copy t (a, b) to stdout', { direction: 'to', target: 'stdout' }, false, ['t'], []],
    ["copy s.T from '/f' with (format csv)", { direction: 'from', target: 'file' }, true, [], ['s.t']],
  ];
  for (const [sql, copy, changes, read, written] of cases) {
    const s = top(sql);
    t.same([s.kind, s.copy, s.changes_state, s.tables_read, s.tables_written], ['copy', copy, changes, read, written], sql);
  }
  const q = 'copy (select * from secrets where x > 1) to stdout';
  t.same(shape(q), ['top:copy', 'copy_query:select']);
  t.same([top(q).tables_read, top(q).changes_state, top(q).copy], [['secrets'], false, { direction: 'to', target: 'stdout' }]);
  const w = 'copy (delete from t returning *) to stdout';
  t.same([top(w).changes_state, top(w).tables_written], [true, ['t']]);
});

t.test('cursors', async (t) => {
  t.same(shape('declare c cursor for select * from t'), ['top:declare_cursor', 'subquery:select']);
  t.equal(top('declare c cursor with hold for select * from t').changes_state, false);
  t.equal(top('declare c cursor for select * from t for update').changes_state, true);
  t.same(['fetch 10 from c', 'move c', 'close c'].map((q) => [top(q).kind, top(q).changes_state]),
    [['fetch', false], ['move', false], ['close_cursor', false]]);
});

t.test('row-locking clauses change state', async (t) => {
  for (const lock of ['update', 'no key update', 'share', 'key share']) {
    t.equal(top(`select * from t for ${lock}`).changes_state, true, lock);
  }
});

t.test('side-effect functions', async (t) => {
  const writes = [
    "select nextval('s')", "select setval('s', 1)", "select pg_catalog.nextval('s')",
    'select pg_advisory_lock(1)', 'select pg_try_advisory_xact_lock(1)', "select lo_import('/etc/passwd')",
    "select pg_read_file('/etc/passwd')", "select pg_ls_dir('.')", 'select pg_terminate_backend(1)',
    'select pg_reload_conf()', "select pg_notify('c', 'x')", "select dblink_exec('c', 'drop table t')",
    'select txid_current()', "select pg_create_logical_replication_slot('s', 'p')",
    "select pg_replication_origin_create('x')", "select * from t where id = nextval('s')",
    "select * from nextval('s')", 'select pg_catalog.pg_switch_wal()',
  ];
  for (const q of writes) t.equal(top(q).changes_state, true, q);
  const x = top("select query_to_xml('delete from t returning 1', true, false, '')");
  t.same([x.changes_state, x.dynamic], [true, true]);
  // Unknown or other-schema functions cannot be judged from text.
  for (const q of ['select my_func(1)', 'select myschema.nextval(1)', 'select now(), count(*) from t']) {
    t.equal(top(q).changes_state, false, q);
  }
  t.same(top('select my_func(1)').functions, ['my_func']);
  t.same(top('values (1), (nextval(\'s\'))').changes_state, true);
});

t.test('SET ROLE and friends', async (t) => {
  for (const q of ['set role admin', 'set local role admin', 'reset role', 'set role none',
    'set session authorization bob', 'reset session authorization', 'SET "Role" = x',
    'set session role admin']) {
    const s = top(q);
    t.same([s.kind, s.set_role, s.changes_state], ['set_role', true, true], q);
  }
  const sc = top("select set_config('role', 'admin', false)");
  t.same([sc.kind, sc.set_role, sc.changes_state], ['select', true, true]);
  t.equal(top("select set_config('ROLE', 'admin', false)").set_role, true);
  t.equal(top('select set_config(name, x, false) from cfg').set_role, true, 'unknown setting name');
  t.equal(top("select set_config('search_path', 'x', false)").set_role, undefined);
  t.equal(top("select pg_catalog.set_config('search_path', 'x', false)").changes_state, true);
  t.equal(top("with c as (select set_config('role', 'x', true)) select * from c").set_role, true);
});

t.test('SET / RESET / SHOW read-only semantics', async (t) => {
  const cases: [string, string, boolean][] = [
    ['set search_path = a, b', 'set', false],
    ["set time zone 'UTC'", 'set', false],
    ['set statement_timeout to default', 'set', false],
    ['reset work_mem', 'reset', false],
    ['reset all', 'reset', false],
    ['show all', 'show', false],
    ['set default_transaction_read_only = off', 'set', true],
    ['set default_transaction_read_only to false', 'set', true],
    ["set default_transaction_read_only = 'f'", 'set', true],
    ['set transaction_read_only = 0', 'set', true],
    ['reset default_transaction_read_only', 'reset', true],
    ['set default_transaction_read_only to default', 'set', true],
    ['set default_transaction_read_only = on', 'set', false],
    ['set session transaction_read_only = true', 'set', false],
    ['set transaction read write', 'set', true],
    ['set transaction read only', 'set', false],
    ['set transaction isolation level serializable', 'set', false],
    ['set session characteristics as transaction read write', 'set', true],
    ['set session characteristics as transaction read only', 'set', false],
    ['set constraints all deferred', 'set', false],
  ];
  for (const [q, kind, changes] of cases) t.same([top(q).kind, top(q).changes_state], [kind, changes], q);
});

t.test('settings that make later SQL parse differently on the server', async (t) => {
  // The parser assumes standard_conforming_strings on and UTF-8 text; after these,
  // 'x\' ; drop table t; --' would hide a statement from it.
  for (const q of ['set standard_conforming_strings = off', 'set local standard_conforming_strings to 0',
    "set names 'GBK'", "set client_encoding = 'SJIS'", "set client_encoding to 'Shift-JIS'",
    "set client_encoding = 'BIG5'", "set client_encoding = 'win949'"]) {
    const s = top(q);
    t.same([s.kind, s.dynamic, s.changes_state], ['other', true, true], q);
  }
  for (const q of ['set standard_conforming_strings = on', "set client_encoding = 'UTF8'",
    "set client_encoding = 'LATIN1'", 'set names default', 'reset client_encoding']) {
    t.same([top(q).kind === 'other', top(q).changes_state, top(q).dynamic], [false, false, undefined], q);
  }
  t.same(shape("select set_config('standard_conforming_strings', 'off', false)"), ['top:select', 'subquery:other']);
  t.same(shape("select set_config('client_encoding', 'sjis', false)"), ['top:select', 'subquery:other']);
  t.same(shape("select set_config('client_encoding', 'utf8', false)"), ['top:select']);
  t.same(shape('select set_config(n, v, false) from cfg'), ['top:select', 'subquery:other']);
  // pg_settings' update rule calls set_config(name, setting).
  const upd = (w: string) => all(`update pg_settings set setting = 'off' where ${w}`);
  t.same(upd("name = 'standard_conforming_strings'").map((s) => s.kind), ['update', 'other']);
  t.same(upd("name = 'work_mem'").map((s) => [s.kind, s.set_role, s.dynamic]), [['update', undefined, undefined]]);
  t.same(upd("name = 'role'").map((s) => [s.kind, s.set_role]), [['update', true]]);
  t.same(upd("name in ('role', 'client_encoding')")[0]!.set_role, true);
  t.same(upd("name like 's%'").map((s) => [s.kind, s.set_role, s.dynamic]),
    [['update', true, true], ['other', undefined, true]]);
});

t.test('transaction control', async (t) => {
  const cases: [string, string, boolean][] = [
    ['begin', 'begin', false], ['begin read only', 'begin', false], ['begin read write', 'begin', true],
    ['begin isolation level serializable, read write', 'begin', true],
    ['start transaction', 'start_transaction', false], ['start transaction read write', 'start_transaction', true],
    ['commit', 'commit', false], ['end', 'commit', false], ['rollback', 'rollback', false],
    ['abort', 'rollback', false], ['savepoint a', 'savepoint', false], ['release a', 'release', false],
    ['rollback to savepoint a', 'rollback', false], ["prepare transaction 'x'", 'prepare_transaction', true],
    ["commit prepared 'x'", 'commit_prepared', true], ["rollback prepared 'x'", 'rollback_prepared', true],
  ];
  for (const [q, kind, changes] of cases) t.same([top(q).kind, top(q).changes_state], [kind, changes], q);
});

t.test('DDL kinds and targets', async (t) => {
  const cases: [string, string, string[]][] = [
    ['create table t (a int references p(id))', 'create_table', ['t']],
    ['create table part partition of parent for values in (1)', 'create_table', ['part', 'parent']],
    ['create foreign table ft (a int) server s', 'create_table', ['ft']],
    ['create index i on t (a)', 'create_index', ['t']],
    ['create trigger tr before insert on t for each row execute function f()', 'create_trigger', ['t']],
    ['create schema s', 'create_schema', []],
    ['create sequence sq', 'create_sequence', ['sq']],
    ['create extension dblink', 'create_extension', []],
    ["create type mood as enum ('a')", 'create_type', []],
    ['create type pt as (x int)', 'create_type', []],
    ['create role r', 'create_role', []],
    ['create user u', 'create_role', []],
    ['create group g', 'create_role', []],
    ['create database d', 'create_database', []],
    ['create policy p on t using (true)', 'create_other', ['t']],
    ['alter table t add column c int', 'alter_table', ['t']],
    ['alter table t rename to u', 'alter_table', ['t']],
    ['alter table t set schema s', 'alter_table', ['t']],
    ['alter index i rename to j', 'alter_other', []],
    ['alter sequence sq restart', 'alter_other', ['sq']],
    ['alter role r superuser', 'alter_role', []],
    ['alter user u set search_path = x', 'alter_role', []],
    ['alter role r rename to s', 'alter_role', []],
    ['alter system set work_mem = 1', 'alter_system', []],
    ['alter database d set work_mem = 1', 'alter_database', []],
    ['alter database d owner to x', 'alter_database', []],
    ['alter function f() owner to x', 'alter_other', []],
    ['drop table a, s.B cascade', 'drop', ['a', 's.b']],
    ['drop view v', 'drop', ['v']],
    ['drop function f(int)', 'drop', []],
    ['drop role r', 'drop', []],
    ['drop database d', 'drop', []],
    ['drop owned by x', 'drop_owned', []],
    ['reassign owned by a to b', 'reassign_owned', []],
    ['truncate a, only b', 'truncate', ['a', 'b']],
    ['grant select on t to x', 'grant', ['t']],
    ['revoke all on t from x', 'revoke', ['t']],
    ['grant r to u', 'grant_role', []],
    ['revoke r from u', 'revoke', []],
    ['vacuum full t', 'vacuum', ['t']],
    ['analyze t', 'analyze', ['t']],
    ['cluster t using i', 'cluster', ['t']],
    ['reindex table t', 'reindex', ['t']],
    ['lock t in exclusive mode', 'lock', ['t']],
    ["comment on table t is 'x'", 'comment', ['t']],
    ["security label on table t is 'x'", 'security_label', ['t']],
    ['import foreign schema x from server s into y', 'import_foreign_schema', []],
    ['create publication p for all tables', 'create_other', []],
  ];
  for (const [q, kind, written] of cases) {
    const s = top(q);
    t.same([s.kind, s.tables_written, s.changes_state], [kind, written, true], q);
  }
  t.same(top('create table c (like src)').tables_read, ['src']);
  t.same(top('create table t (a int references p(id))').tables_read, ['p']);
  const schema = top('create schema s create table a (i int) create view v as select * from b');
  t.same([schema.kind, schema.tables_written, schema.tables_read], ['create_schema', ['a', 'v'], ['b']]);
});

t.test('other statement kinds', async (t) => {
  const cases: [string, string, boolean][] = [
    ['listen x', 'listen', false], ['unlisten *', 'unlisten', false], ["notify x, 'y'", 'notify', true],
    ['discard all', 'discard', false], ['checkpoint', 'checkpoint', true], ["load 'auto_explain'", 'load', true],
    ['call p(1)', 'call', true], ['show work_mem', 'show', false],
  ];
  for (const [q, kind, changes] of cases) t.same([top(q).kind, top(q).changes_state], [kind, changes], q);
  t.same(top('call p(nextval(\'s\'))').functions, ['p', 'nextval']);
});

t.test('DO blocks', async (t) => {
  const sql = `DO $$
    DECLARE r record; x int; c refcursor;
    BEGIN
      x := (select count(*) from t1);
      PERFORM pg_sleep(0);
      INSERT INTO log VALUES (1);
      FOR r IN SELECT * FROM t2 LOOP RAISE NOTICE '%', r; END LOOP;
      IF exists(select 1 from t3) THEN NULL; END IF;
      OPEN c FOR SELECT * FROM t4;
      RETURN;
    END $$`;
  const f = all(sql);
  const d = f[0]!;
  t.same([d.kind, d.via, d.changes_state, d.dynamic], ['do', 'top', true, undefined]);
  t.same(d.tables_read, ['t1', 't2', 't3', 't4']);
  t.same(d.tables_written, ['log']);
  t.same(d.functions, ['count', 'pg_sleep']);
  t.ok(f.slice(1).every((s) => s.via === 'do' || s.via === 'subquery'));
  t.ok(find(sql, 'insert'), 'the write inside the block is a statement');
});

t.test('DO: dynamic EXECUTE', async (t) => {
  const dyn = all("DO $$ BEGIN EXECUTE 'drop table ' || quote_ident('x'); END $$");
  t.equal(dyn[0]!.dynamic, true);
  const opaque = dyn.find((s) => s.kind === 'other');
  t.same(opaque && [opaque.dynamic, opaque.changes_state, opaque.via], [true, true, 'do']);
  t.ok(dyn[0]!.functions.includes('quote_ident'), 'the string-building expression is analysed');
  // A constant string is parsed and analysed.
  const k = all("DO $$ BEGIN EXECUTE 'delete from konst'; END $$");
  t.same(k.map((s) => `${s.via}:${s.kind}`), ['top:do', 'do:delete']);
  t.equal(k[0]!.dynamic, undefined);
  t.same(shape("do $$ declare r record; begin for r in execute 'select ' || 1 loop end loop; end $$").at(-1), 'do:other');
  t.same(shape("create function f() returns setof int language plpgsql as $f$ begin return query execute $q$select 1$q$; end $f$"),
    ['top:create_function', 'function_body:select']);
});

t.test('DO: other languages, nested DO, bad bodies, assignments', async (t) => {
  t.same([top("do language plperl 'system(1)'").dynamic, top("do language plperl 'system(1)'").changes_state], [true, true]);
  t.same(shape("DO $$ BEGIN EXECUTE 'DO $x$ BEGIN DELETE FROM deep; END $x$'; END $$"), ['top:do', 'do:do', 'do:delete']);
  // The PL/pgSQL compiler rejects this (undeclared variable): the body is opaque.
  const bad = all("do 'begin y := 1; end'");
  t.same([bad[0]!.dynamic, bad[1]?.kind], [true, 'other']);
  // Array subscripts on an assignment target can hide SQL.
  t.ok(top('do $$ declare a int[]; begin a[(select nextval(\'s\'))] := 1; end $$').functions.includes('nextval'));
  // "x := col FROM t" reads t.
  t.same(top('do $$ declare x int; begin x := a from hidden; end $$').tables_read, ['hidden']);
  // Declarations: cursor queries and defaults.
  const decl = top('do $$ declare c cursor for select * from cur; x int := (select 1 from dflt); begin null; end $$');
  t.same(decl.tables_read, ['cur', 'dflt']);
  // Exception handlers.
  t.same(top('do $$ begin null; exception when others then delete from exc; end $$').tables_written, ['exc']);
  // A body containing the quoting tag used to rebuild the DO statement.
  t.same(top("do 'begin perform ''$sluice$''; delete from z; end'").tables_written, ['z']);
});

t.test('CREATE FUNCTION bodies', async (t) => {
  const plpgsql = 'create function k(a int) returns int language plpgsql as $f$ ' +
    'begin a := a + (select max(id) from big); update t set x = a; return a; end $f$';
  const k = all(plpgsql);
  t.same([k[0]!.kind, k[0]!.tables_read, k[0]!.tables_written], ['create_function', ['big'], ['t']]);
  t.ok(k.some((s) => s.via === 'function_body' && s.kind === 'update'));
  const sqlFn = all("create function f(a int) returns int language sql as 'select a + count(*) from t'");
  t.same(sqlFn.map((s) => `${s.via}:${s.kind}`), ['top:create_function', 'function_body:select']);
  const atomic = 'create function g() returns int language sql begin atomic; insert into t values (1); select 1; end';
  t.same(shape(atomic), ['top:create_function', 'function_body:insert', 'function_body:select']);
  t.same(shape('create function r() returns int return (select 1 from rt)'),
    ['top:create_function', 'function_body:select', 'subquery:select']);
  const py = top('create function h() returns int as $$ return 1 $$ language plpythonu');
  t.same([py.dynamic, py.changes_state], [true, true]);
  t.equal(top("create function c() returns int as 'lib', 'sym' language c").dynamic, true);
  const proc = all('create procedure p() language plpgsql as $$ begin commit; call q(1); end $$');
  t.same(proc.map((s) => `${s.via}:${s.kind}`), ['top:create_function', 'function_body:call']);
  // Trigger functions use NEW/OLD.
  t.same(shape('create function trg() returns trigger language plpgsql as $$ begin new.x := 1; insert into audit values (new.id); return new; end $$').at(-1),
    'function_body:insert');
  // A plpgsql function created inside a DO block is analysed too.
  t.same(shape("do $$ begin create function z() returns void language plpgsql as $f$ begin delete from inner_t; end $f$; end $$"),
    ['top:do', 'do:create_function', 'function_body:delete']);
});

t.test('nesting depth is bounded', async (t) => {
  const deep = 'select ' + '(select '.repeat(70) + '1' + ')'.repeat(70);
  const f = analyzeSql(deep);
  t.equal(f.parse_error, undefined);
  const opaque = f.statements.filter((s) => s.kind === 'other');
  t.ok(opaque.length >= 1);
  t.same([opaque[0]!.dynamic, opaque[0]!.changes_state], [true, true]);
  t.equal(f.statements[0]!.dynamic, true);
  t.ok(f.statements.length <= 66);
  // A very deep expression is cut off and flagged, not crashed on or passed silently.
  const wide = analyzeSql('select ' + Array(3000).fill('1').join('+') + ' from t');
  t.same(wide.statements.map((s) => [s.kind, s.dynamic, s.changes_state]), [['select', true, true], ['other', true, true]]);
  t.same(wide.statements[0]!.tables_read, ['t']);
  const ok = analyzeSql('select ' + Array(200).fill('a').join('+') + ' from t');
  t.same([ok.statements[0]!.tables_read, ok.statements[0]!.dynamic], [['t'], undefined]);
});

t.test('analyzeSqlCached returns the same frozen object', async (t) => {
  const sql = 'select * from cached_t where id = 1';
  const a = analyzeSqlCached(sql);
  const b = analyzeSqlCached(sql);
  t.equal(a, b);
  t.ok(Object.isFrozen(a) && Object.isFrozen(a.statements) && Object.isFrozen(a.statements[0]));
  t.ok(Object.isFrozen(a.statements[0]!.tables_read));
  t.equal(a.fingerprint, analyzeSql(sql).fingerprint, 'lazy getters work on the frozen object');
  t.not(analyzeSqlCached(sql + ' '), a);
});

t.test('LRU cache', async (t) => {
  const lru = new LruCache<string, number>({ maxEntries: 3 });
  lru.set('a', 1);
  lru.set('b', 2);
  lru.set('c', 3);
  t.equal(lru.get('a'), 1); // a is now most recent
  lru.set('d', 4); // evicts b
  t.same([lru.has('a'), lru.has('b'), lru.has('c'), lru.has('d'), lru.size], [true, false, true, true, 3]);
  lru.set('c', 30); // replace keeps size
  t.same([lru.get('c'), lru.size], [30, 3]);

  const w = new LruCache<string, string>({ maxEntries: 100, maxWeight: 10, weigh: (k, v) => k.length + v.length });
  w.set('a', 'xxxx'); // 5
  w.set('b', 'xxxx'); // 10
  t.same([w.size, w.weight], [2, 10]);
  w.set('c', 'xx'); // 13 > 10: evicts a
  t.same([w.has('a'), w.has('b'), w.has('c'), w.weight], [false, true, true, 8]);
  w.set('huge', 'x'.repeat(20)); // heavier than the bound: not stored, nothing evicted
  t.same([w.has('huge'), w.size, w.weight], [false, 2, 8]);
  t.equal(w.delete('b'), true);
  t.same([w.size, w.weight], [1, 3]);
  w.clear();
  t.same([w.size, w.weight, w.get('c')], [0, 0, undefined]);
  t.throws(() => new LruCache({ maxEntries: 0 }));
});
