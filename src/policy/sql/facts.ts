/**
 * SQL text → facts for the policy engine, using the real Postgres parser
 * (libpg-query 18). Pure: no I/O, no catalog; only what the text says.
 *
 * Statement kinds (StatementFacts.kind):
 *   select, insert, update, delete, merge, copy, values,
 *   create_table (also CREATE FOREIGN TABLE), create_table_as, select_into,
 *   create_index, create_view, create_matview, refresh_matview,
 *   create_function (functions and procedures), create_trigger, create_schema,
 *   create_sequence, create_extension, create_type (composite, enum, range,
 *   base types, domains), create_role (CREATE ROLE/USER/GROUP), create_database,
 *   create_other (any other CREATE, including CREATE RULE),
 *   alter_table (ALTER TABLE / FOREIGN TABLE, incl. RENAME and SET SCHEMA),
 *   alter_role, alter_system, alter_database, alter_other,
 *   drop (any DROP), drop_owned, reassign_owned, truncate,
 *   grant, revoke (REVOKE privileges and REVOKE role), grant_role,
 *   set, reset, show, set_role (SET/RESET ROLE and SESSION AUTHORIZATION),
 *   begin, start_transaction, commit (also END), rollback (also ABORT and
 *   ROLLBACK TO SAVEPOINT), savepoint, release, prepare_transaction,
 *   commit_prepared, rollback_prepared, prepare, execute, deallocate, explain,
 *   do, call, vacuum, analyze, cluster, reindex, lock, listen, notify, unlisten,
 *   discard, declare_cursor, fetch, move, close_cursor, checkpoint, load,
 *   comment, security_label, import_foreign_schema,
 *   other (anything else, and SQL that cannot be seen; changes_state true).
 *   SET standard_conforming_strings to off and SET client_encoding / NAMES to
 *   a client-only multibyte encoding (SJIS, BIG5, GBK, GB18030, UHC, JOHAB)
 *   are kind other with dynamic: true: after them the server splits SQL text
 *   differently from this parser. The same through set_config(), with an
 *   unknown setting name, or by writing pg_settings adds a nested
 *   {kind: 'other', dynamic: true, changes_state: true} statement.
 *
 * changes_state is false only for: select, values, show, explain, fetch, move,
 * close_cursor, declare_cursor, begin, start_transaction, commit, rollback,
 * savepoint, release, listen, unlisten, discard, prepare, deallocate, set,
 * reset, and COPY … TO STDOUT — and even those turn true when:
 *   - a statement nested in them that runs (CTE, subquery, the query of
 *     DECLARE/PREPARE/COPY, the statement under EXPLAIN ANALYZE) changes state;
 *   - a SELECT has SELECT INTO, or any FOR UPDATE / NO KEY UPDATE / SHARE /
 *     KEY SHARE clause (all take row locks, which write tuple headers, and
 *     Postgres rejects all four in a read-only transaction);
 *   - it calls a built-in with side effects (SIDE_EFFECT_* below, matched
 *     unqualified or pg_catalog-qualified). Other functions are listed in
 *     `functions` but cannot be judged from text, so they change nothing here;
 *   - it is SET/RESET of transaction_read_only or default_transaction_read_only
 *     to anything but a true value (RESET and DEFAULT included), SET
 *     TRANSACTION / SESSION CHARACTERISTICS … READ WRITE, or BEGIN/START … READ WRITE.
 * RESET ALL and DISCARD ALL stay false: they restore default_transaction_read_only
 * to its reset value, so the gateway must set it as a startup parameter.
 *
 * Nested statements: QueryFacts.statements lists the top-level statements,
 * then every nested one (pre-order). Each nested entry describes its statement
 * as if it ran on its own (conservative: the INSERT under a plain EXPLAIN is
 * still listed with changes_state true). A parent also carries the union of
 * its children's tables_read and functions and, unless the child does not run
 * (only the statement under EXPLAIN without ANALYZE), their tables_written,
 * changes_state, dynamic and set_role; so a top-level entry describes all it
 * does. Bodies that run later (PREPARE, CREATE FUNCTION/VIEW/RULE, DECLARE)
 * count as running: they are what a later EXECUTE/call/FETCH does.
 * Set-operation arms (UNION …) and INSERT … VALUES lists are part of their
 * statement; elements of CREATE SCHEMA … CREATE … are merged into it.
 *
 * dynamic marks SQL that cannot be seen: PL/pgSQL EXECUTE of a built string
 * (a constant string is parsed instead), EXECUTE of a prepared statement,
 * DO/function bodies in other languages or that do not compile, the
 * query_to_xml/table_to_xml/…/dblink families, and trees cut off by the
 * nesting limits (such places also add a {kind: 'other', dynamic: true,
 * changes_state: true} statement).
 *
 * tables_read never holds a name that refers to a CTE in scope (a CTE without
 * RECURSIVE does not see itself: `WITH t AS (SELECT * FROM t)` reads table t).
 * tables_written for DDL holds relations (tables, views, materialized views,
 * foreign tables, sequences) that are created, altered, dropped, truncated,
 * locked, vacuumed/analyzed/clustered/reindexed, granted on, commented on, or
 * given an index, trigger, rule or policy; also INHERITS / PARTITION OF parents.
 */
import { loadPgQuery, pgQuery } from './pgquery.js';

const parseSync = (sql: string): unknown => pgQuery().parseSync(sql);
const fingerprintSync = (sql: string): string => pgQuery().fingerprintSync(sql);
const normalizeSync = (sql: string): string => pgQuery().normalizeSync(sql);
import { LruCache } from '../lru.js';
import { extractPlpgsqlSql } from './plpgsql-facts.js';

export type AccessKind = 'read' | 'write';

export type Via =
  | 'top' | 'cte' | 'subquery' | 'explain' | 'prepare' | 'do'
  | 'function_body' | 'create_as' | 'rule' | 'copy_query';

export interface StatementFacts {
  kind: string;
  /**
   * Relation names as Postgres folds them: "customers", "public.customers",
   * "MixedCase"; a part containing '.' or '"' is written quoted: '"public.customers"'.
   */
  tables_read: string[];
  tables_written: string[];
  /** Every FuncCall, folded, schema-qualified if written so. */
  functions: string[];
  /** update/delete only: a WHERE clause is present (WHERE CURRENT OF counts). */
  where?: boolean;
  copy?: { direction: 'from' | 'to'; target: 'stdin' | 'stdout' | 'file' | 'program' };
  /** explain only: ANALYZE is on, so the inner statement runs. */
  explain_analyze?: boolean;
  set_role?: boolean;
  dynamic?: boolean;
  changes_state: boolean;
  /** Where the statement was found (DECLARE … CURSOR FOR queries count as 'subquery'). */
  via: Via;
  /** Top-level statements only: the statement's own text. */
  text?: string;
}

export interface QueryFacts {
  statements: StatementFacts[];
  parse_error?: string;
  fingerprint?: string;
  normalized?: string;
}

// ---------------------------------------------------------------- tables

const READ_ONLY_KINDS = new Set([
  'select', 'values', 'show', 'explain', 'fetch', 'move', 'close_cursor', 'declare_cursor',
  'begin', 'start_transaction', 'commit', 'rollback', 'savepoint', 'release', 'listen',
  'unlisten', 'discard', 'prepare', 'deallocate', 'set', 'reset',
]);

const KINDS: Record<string, string> = {
  InsertStmt: 'insert', UpdateStmt: 'update', DeleteStmt: 'delete', MergeStmt: 'merge',
  CopyStmt: 'copy', CreateStmt: 'create_table', CreateForeignTableStmt: 'create_table',
  IndexStmt: 'create_index', ViewStmt: 'create_view', RefreshMatViewStmt: 'refresh_matview',
  CreateFunctionStmt: 'create_function', CreateTrigStmt: 'create_trigger',
  CreateSchemaStmt: 'create_schema', CreateSeqStmt: 'create_sequence',
  CreateExtensionStmt: 'create_extension', CompositeTypeStmt: 'create_type',
  CreateEnumStmt: 'create_type', CreateRangeStmt: 'create_type', CreateDomainStmt: 'create_type',
  CreateRoleStmt: 'create_role', CreatedbStmt: 'create_database', AlterRoleStmt: 'alter_role',
  AlterRoleSetStmt: 'alter_role', AlterSystemStmt: 'alter_system',
  AlterDatabaseStmt: 'alter_database', AlterDatabaseSetStmt: 'alter_database',
  AlterDatabaseRefreshCollStmt: 'alter_database', DropOwnedStmt: 'drop_owned',
  ReassignOwnedStmt: 'reassign_owned', TruncateStmt: 'truncate', VariableShowStmt: 'show',
  ConstraintsSetStmt: 'set', PrepareStmt: 'prepare', ExecuteStmt: 'execute',
  DeallocateStmt: 'deallocate', ExplainStmt: 'explain', DoStmt: 'do', CallStmt: 'call',
  ClusterStmt: 'cluster', ReindexStmt: 'reindex', LockStmt: 'lock', ListenStmt: 'listen',
  NotifyStmt: 'notify', UnlistenStmt: 'unlisten', DiscardStmt: 'discard',
  DeclareCursorStmt: 'declare_cursor', ClosePortalStmt: 'close_cursor',
  CheckPointStmt: 'checkpoint', LoadStmt: 'load', CommentStmt: 'comment',
  SecLabelStmt: 'security_label', ImportForeignSchemaStmt: 'import_foreign_schema',
  RuleStmt: 'create_other',
  ReturnStmt: 'select', // `RETURN expr` body of a SQL function
};

const TXN_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'start_transaction', TRANS_STMT_COMMIT: 'commit',
  TRANS_STMT_ROLLBACK: 'rollback', TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback',
  TRANS_STMT_PREPARE: 'prepare_transaction', TRANS_STMT_COMMIT_PREPARED: 'commit_prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
};

const REL_OBJTYPES = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE',
]);
const TABLE_OBJTYPES = new Set(['OBJECT_TABLE', 'OBJECT_FOREIGN_TABLE']);

const ROLE_GUCS = new Set(['role', 'session_authorization']);
const READ_ONLY_GUCS = new Set(['transaction_read_only', 'default_transaction_read_only']);
/**
 * Client-only encodings (names as Postgres cleans them: lower case, letters
 * and digits only) whose multibyte characters can end in an ASCII byte such as
 * a backslash; the gateway reads text as UTF-8 and would split it differently.
 */
const CLIENT_ONLY_ENCODINGS = new Set([
  'big5', 'gb18030', 'gbk', 'johab', 'mskanji', 'shiftjis', 'shiftjis2004', 'sjis', 'uhc',
  'win932', 'win936', 'win949', 'win950', 'windows932', 'windows936', 'windows949', 'windows950',
]);

/** Built-ins with side effects, matched unqualified or pg_catalog-qualified. */
const SIDE_EFFECT_FUNCTIONS = new Set([
  'nextval', 'setval', 'lo_import', 'lo_export', 'lo_unlink', 'lo_create', 'lo_creat', 'lo_put',
  'lo_from_bytea', 'lowrite', 'lo_open', 'lo_truncate', 'lo_truncate64', 'pg_read_file',
  'pg_read_binary_file', 'pg_stat_file', 'pg_terminate_backend', 'pg_cancel_backend',
  'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal', 'pg_create_restore_point', 'pg_promote',
  'set_config', 'pg_notify', 'dblink', 'pg_file_write', 'pg_file_unlink', 'pg_file_rename',
  'txid_current', 'pg_current_xact_id', 'pg_logical_emit_message', 'pg_drop_replication_slot',
  'pg_backup_start', 'pg_backup_stop', 'pg_start_backup', 'pg_stop_backup',
  'pg_wal_replay_pause', 'pg_wal_replay_resume', 'pg_log_backend_memory_contexts',
  'pg_import_system_collations',
]);
const SIDE_EFFECT_PREFIXES = [
  'pg_advisory_', 'pg_try_advisory_', 'dblink_', 'pg_replication_', 'pg_ls_', 'pg_stat_reset',
  'query_to_xml', 'table_to_xml', 'cursor_to_xml', 'database_to_xml', 'schema_to_xml',
];
const SIDE_EFFECT_PATTERN = /^pg_(create|copy)_\w+_replication_slot$/;
/** These run SQL (or read tables) named only by a string argument. */
const DYNAMIC_PREFIXES = [
  'query_to_xml', 'table_to_xml', 'cursor_to_xml', 'database_to_xml', 'schema_to_xml', 'dblink',
];

const MAX_STMT_DEPTH = 64;
const MAX_NODE_DEPTH = 2000; // objects along one path (~1000 chained operators)

// ---------------------------------------------------------------- walker state

/** The raw parse tree is JSON whose shape libpg-query only loosely types. */
type J = any;

interface Scope { names: readonly string[]; up: Scope | undefined }

interface Ctx { nested: StatementFacts[]; nodeDepth: number }

interface Frame {
  f: StatementFacts;
  ctx: Ctx;
  depth: number;
  /** Source text of this statement, when it came from a statement list. */
  text: string | undefined;
  writes: boolean;
  childChanges: boolean;
  truncated: boolean;
}

let ready: Promise<void> | undefined;
let loaded = false;

export async function initSqlAnalysis(): Promise<void> {
  ready ??= loadPgQuery().then(() => {
    loaded = true;
  });
  return ready;
}

// ---------------------------------------------------------------- entry points

export function analyzeSql(sql: string): QueryFacts {
  if (!loaded) throw new Error('analyzeSql: await initSqlAnalysis() first');
  if (sql.trim() === '') return { statements: [] };
  let tree: J;
  try {
    tree = parseSync(sql);
  } catch (e) {
    return { statements: [], parse_error: e instanceof Error ? e.message : String(e) };
  }
  const ctx: Ctx = { nested: [], nodeDepth: 0 };
  const tops: StatementFacts[] = [];
  try {
    for (const { type, body, text } of statementsOf(tree, sql)) {
      const f = statementFacts(type, body, 'top', undefined, text, ctx);
      f.text = text;
      tops.push(f);
    }
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    // Stack exhausted by a pathological tree: report one opaque statement.
    return new Facts([opaqueFacts('top', sql.trim())], sql);
  }
  return new Facts(ctx.nested.length ? tops.concat(ctx.nested) : tops, sql);
}

/**
 * fingerprint and normalized each cost another full parse (about as much as
 * the analysis itself), so they are getters computed on first read; toJSON
 * includes them.
 */
class Facts implements QueryFacts {
  readonly #sql: string;
  #fingerprint: string | null | undefined = null; // null: not computed yet
  #normalized: string | null | undefined = null;
  constructor(readonly statements: StatementFacts[], sql: string) {
    this.#sql = sql;
  }
  get fingerprint(): string | undefined {
    if (this.#fingerprint === null) this.#fingerprint = safe(fingerprintSync, this.#sql);
    return this.#fingerprint;
  }
  get normalized(): string | undefined {
    if (this.#normalized === null) this.#normalized = safe(normalizeSync, this.#sql);
    return this.#normalized;
  }
  toJSON(): QueryFacts {
    return { statements: this.statements, fingerprint: this.fingerprint, normalized: this.normalized };
  }
}

const cache = new LruCache<string, QueryFacts>({
  maxEntries: 10_000,
  maxWeight: 32 * 1024 * 1024,
  weigh: (sql) => sql.length * 2, // UTF-16 bytes of the text, as a proxy for the entry's size
});

/** Cached by exact SQL text; repeated text returns the same deeply frozen object. */
export function analyzeSqlCached(sql: string): QueryFacts {
  let facts = cache.get(sql);
  if (facts === undefined) {
    facts = freezeFacts(analyzeSql(sql));
    cache.set(sql, facts);
  }
  return facts;
}

// ---------------------------------------------------------------- statements

/** Facts of one statement; nested ones (parent given) are also appended to ctx.nested. */
function statementFacts(
  type: string, body: J, via: Via, scope: Scope | undefined, text: string | undefined,
  ctx: Ctx, parent?: Frame,
): StatementFacts {
  const depth = parent ? parent.depth + 1 : 0;
  if (depth > MAX_STMT_DEPTH) {
    const f = opaqueFacts(via);
    if (parent) ctx.nested.push(f);
    return f;
  }
  const f: StatementFacts = {
    kind: kindOf(type, body), tables_read: [], tables_written: [], functions: [],
    changes_state: false, via,
  };
  if (parent) ctx.nested.push(f); // before children: pre-order
  const fr: Frame = { f, ctx, depth, text, writes: false, childChanges: false, truncated: false };
  fill(type, body, fr, scope);
  if (!READ_ONLY_KINDS.has(f.kind) && f.kind !== 'copy') fr.writes = true;
  f.changes_state = fr.writes || fr.childChanges;
  return f;
}

function kindOf(type: string, n: J): string {
  switch (type) {
    case 'SelectStmt':
      return hasInto(n) ? 'select_into' : n.valuesLists ? 'values' : 'select';
    case 'CreateTableAsStmt':
      return n.objtype === 'OBJECT_MATVIEW' ? 'create_matview' : 'create_table_as';
    case 'VariableSetStmt': {
      const name = String(n.name ?? '').toLowerCase();
      if (ROLE_GUCS.has(name)) return 'set_role';
      if (n.kind === 'VAR_SET_VALUE' && desyncsParser(name, n.args?.[0])) return 'other';
      return n.kind === 'VAR_RESET' || n.kind === 'VAR_RESET_ALL' ? 'reset' : 'set';
    }
    case 'TransactionStmt':
      return TXN_KINDS[n.kind] ?? 'other';
    case 'GrantStmt':
      return n.is_grant ? 'grant' : 'revoke';
    case 'GrantRoleStmt':
      return n.is_grant ? 'grant_role' : 'revoke';
    case 'VacuumStmt':
      return n.is_vacuumcmd ? 'vacuum' : 'analyze';
    case 'FetchStmt':
      return n.ismove ? 'move' : 'fetch';
    case 'DefineStmt':
      return n.kind === 'OBJECT_TYPE' ? 'create_type' : 'create_other';
    case 'AlterTableStmt':
      return TABLE_OBJTYPES.has(n.objtype) ? 'alter_table' : 'alter_other';
    case 'RenameStmt':
    case 'AlterObjectSchemaStmt':
    case 'AlterOwnerStmt': {
      const t = n.renameType === 'OBJECT_COLUMN' || n.renameType === 'OBJECT_TABCONSTRAINT'
        ? n.relationType : n.renameType ?? n.objectType;
      if (TABLE_OBJTYPES.has(t) || n.renameType === 'OBJECT_TABCONSTRAINT') return 'alter_table';
      if (t === 'OBJECT_ROLE') return 'alter_role';
      if (t === 'OBJECT_DATABASE') return 'alter_database';
      return 'alter_other';
    }
  }
  const k = KINDS[type];
  if (k !== undefined) return k;
  if (type.startsWith('Create')) return 'create_other';
  if (type.startsWith('Alter')) return 'alter_other';
  if (type.startsWith('Drop')) return 'drop';
  return 'other';
}

/** Fills facts for one statement node (kind already set). */
function fill(type: string, n: J, fr: Frame, scope: Scope | undefined): void {
  const f = fr.f;
  switch (type) {
    case 'SelectStmt':
      return select(n, fr, scope);
    case 'InsertStmt': {
      const inner = withClause(n.withClause, fr, scope);
      addWrite(fr, n.relation);
      const sel = n.selectStmt?.SelectStmt;
      if (sel?.valuesLists && !sel.withClause) select(sel, fr, inner);
      else nested(fr, 'subquery', n.selectStmt, inner);
      return walkExcept(n, fr, inner, ['withClause', 'relation', 'selectStmt']);
    }
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt': {
      if (type !== 'MergeStmt') f.where = n.whereClause !== undefined;
      const inner = withClause(n.withClause, fr, scope);
      addWrite(fr, n.relation);
      if (type === 'UpdateStmt' && isPgSettings(n.relation)) pgSettingsUpdate(n, fr);
      return walkExcept(n, fr, inner, ['withClause', 'relation']);
    }
    case 'CreateTableAsStmt':
      addWrite(fr, n.into?.rel);
      nested(fr, 'create_as', n.query, scope);
      return;
    case 'ViewStmt':
      addWrite(fr, n.view);
      nested(fr, 'create_as', n.query, scope);
      return walkExcept(n, fr, scope, ['view', 'query']);
    case 'ExplainStmt': {
      const opt = (n.options as J[] | undefined)?.find((o) => o.DefElem?.defname === 'analyze');
      f.explain_analyze = opt !== undefined && truth(opt.DefElem.arg) !== false;
      nested(fr, 'explain', n.query, scope, f.explain_analyze);
      return;
    }
    case 'PrepareStmt':
      nested(fr, 'prepare', n.query, scope);
      return;
    case 'DeclareCursorStmt':
      nested(fr, 'subquery', n.query, scope);
      return;
    case 'ExecuteStmt':
      f.dynamic = true; // the prepared text is not in this string
      return walk(n.params, fr, scope);
    case 'CopyStmt': {
      const from = n.is_from === true;
      f.copy = {
        direction: from ? 'from' : 'to',
        target: n.is_program ? 'program' : n.filename !== undefined ? 'file' : from ? 'stdin' : 'stdout',
      };
      if (from) addWrite(fr, n.relation);
      else if (n.relation) addRead(fr, n.relation, scope);
      nested(fr, 'copy_query', n.query, scope);
      if (f.copy.target !== 'stdout') fr.writes = true;
      return walkExcept(n, fr, scope, ['relation', 'query']);
    }
    case 'RuleStmt':
      addWrite(fr, n.relation);
      for (const a of n.actions ?? []) nested(fr, 'rule', a, scope);
      return walk(n.whereClause, fr, scope);
    case 'DoStmt':
      return doBlock(n, fr);
    case 'CreateFunctionStmt':
      return createFunction(n, fr, scope);
    case 'CallStmt':
      if (n.funccall) addFunc(fr, n.funccall);
      return walk(n.funccall?.args, fr, scope);
    case 'VariableSetStmt':
      return variableSet(n, fr);
    case 'TransactionStmt':
      if (readWriteRequested(n.options)) fr.writes = true;
      return;
    case 'DropStmt':
      if (REL_OBJTYPES.has(n.removeType)) for (const o of n.objects ?? []) addWriteName(fr, o);
      return;
    case 'CommentStmt':
    case 'SecLabelStmt':
      if (REL_OBJTYPES.has(n.objtype)) addWriteName(fr, n.object);
      return;
    case 'GrantStmt':
      if (n.targtype === 'ACL_TARGET_OBJECT' && REL_OBJTYPES.has(n.objtype)) {
        for (const o of n.objects ?? []) addWrite(fr, o.RangeVar);
      }
      return;
    case 'TruncateStmt':
    case 'LockStmt':
      for (const r of n.relations ?? []) addWrite(fr, r.RangeVar);
      return;
    case 'VacuumStmt':
      for (const r of n.rels ?? []) addWrite(fr, r.VacuumRelation?.relation);
      return;
    case 'CreateStmt':
      addWrite(fr, n.relation);
      for (const r of n.inhRelations ?? []) addWrite(fr, r.RangeVar);
      return walkExcept(n, fr, scope, ['relation', 'inhRelations']);
    case 'CreateForeignTableStmt':
      return fill('CreateStmt', n.base ?? {}, fr, scope);
    case 'CreateSchemaStmt':
      for (const el of n.schemaElts ?? []) {
        const t = firstKey(el);
        if (t !== undefined) fill(t, el[t], fr, scope);
      }
      return;
    case 'IndexStmt':
    case 'ReindexStmt':
    case 'AlterTableStmt':
    case 'RenameStmt':
    case 'AlterObjectSchemaStmt':
      if (n.objtype !== 'OBJECT_INDEX' && n.renameType !== 'OBJECT_INDEX' &&
          n.objectType !== 'OBJECT_INDEX' && n.kind !== 'REINDEX_OBJECT_INDEX') {
        addWrite(fr, n.relation);
      }
      return walkExcept(n, fr, scope, ['relation']);
  }
  // Other statements: their own relation (trigger, rule, policy, sequence,
  // cluster, refresh …) is the object being changed; the rest is read.
  const target = n.relation ?? n.table ?? n.sequence;
  if (target?.relname !== undefined) {
    addWrite(fr, target);
    return walkExcept(n, fr, scope, ['relation', 'table', 'sequence']);
  }
  walk(n, fr, scope);
}

function select(n: J, fr: Frame, scope: Scope | undefined): void {
  const inner = withClause(n.withClause, fr, scope);
  if (n.larg) select(n.larg, fr, inner);
  if (n.rarg) select(n.rarg, fr, inner);
  if (n.intoClause) {
    addWrite(fr, n.intoClause.rel);
    fr.writes = true;
  }
  if (n.lockingClause) fr.writes = true;
  walkExcept(n, fr, inner, ['withClause', 'larg', 'rarg', 'intoClause']);
}

/** Analyses the CTEs and returns the scope in which their names hide tables. */
function withClause(w: J, fr: Frame, scope: Scope | undefined): Scope | undefined {
  const ctes: J[] | undefined = w?.ctes;
  if (!ctes?.length) return scope;
  const all: string[] = [];
  for (const c of ctes) if (c.CommonTableExpr) all.push(c.CommonTableExpr.ctename);
  const full: Scope = { names: all, up: scope };
  // Without RECURSIVE a CTE sees only the CTEs before it, so
  // `WITH t AS (SELECT * FROM t)` reads the real table t.
  let seen = 0;
  for (const c of ctes) {
    const cte = c.CommonTableExpr;
    if (!cte) continue;
    const visible = w.recursive ? full : seen ? { names: all.slice(0, seen), up: scope } : scope;
    nested(fr, 'cte', cte.ctequery, visible);
    seen++;
  }
  return full;
}

function variableSet(n: J, fr: Frame): void {
  const name = String(n.name ?? '').toLowerCase();
  if (fr.f.kind === 'other') {
    fr.f.dynamic = true; // see desyncsParser
  } else if (ROLE_GUCS.has(name)) {
    fr.f.set_role = true;
  } else if (READ_ONLY_GUCS.has(name)) {
    const on = n.kind === 'VAR_SET_VALUE' && n.args?.length === 1 && truth(n.args[0]) === true;
    if (!on) fr.writes = true;
  } else if (name === 'transaction' || name === 'session characteristics') {
    if (readWriteRequested(n.args)) fr.writes = true;
  }
}

/**
 * Settings after which the server splits later SQL text differently from this
 * parser, which assumes standard_conforming_strings on and UTF-8 text: with
 * them, 'x\' ; drop table t; --' hides a statement. RESET/DEFAULT go back to
 * the session's startup value, which the gateway controls.
 */
function desyncsParser(name: string, value: J): boolean {
  if (name === 'standard_conforming_strings') return truth(value) !== true;
  if (name !== 'client_encoding') return false;
  const s: unknown = value?.A_Const?.sval?.sval ?? value?.String?.sval;
  return typeof s !== 'string' || CLIENT_ONLY_ENCODINGS.has(s.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

function readWriteRequested(options: J[] | undefined): boolean {
  return (options ?? []).some(
    (o) => o.DefElem?.defname === 'transaction_read_only' && truth(o.DefElem.arg) !== true,
  );
}

// ---------------------------------------------------------------- procedural code

function doBlock(n: J, fr: Frame): void {
  let lang = 'plpgsql';
  let body = '';
  for (const a of n.args ?? []) {
    const d = a.DefElem;
    if (d?.defname === 'language') lang = String(d.arg?.String?.sval ?? '').toLowerCase();
    else if (d?.defname === 'as') body = String(d.arg?.String?.sval ?? '');
  }
  if (lang !== 'plpgsql') {
    fr.f.dynamic = true;
    return;
  }
  let tag = 'sluice';
  while (body.includes(`$${tag}$`)) tag += '_';
  plpgsql(fr, `DO $${tag}$${body}$${tag}$`, 'do');
}

function createFunction(n: J, fr: Frame, scope: Scope | undefined): void {
  let lang: string | undefined;
  const bodies: string[] = [];
  for (const o of n.options ?? []) {
    const d = o.DefElem;
    if (d?.defname === 'language') lang = String(d.arg?.String?.sval ?? '').toLowerCase();
    else if (d?.defname === 'as') {
      for (const s of d.arg?.List?.items ?? [d.arg]) bodies.push(String(s?.String?.sval ?? ''));
    }
  }
  if (n.sql_body) {
    sqlBody(n.sql_body, fr); // BEGIN ATOMIC / RETURN: already parsed
  } else if ((lang ?? 'sql') === 'sql') {
    for (const b of bodies) analyzeText(fr, b, 'function_body');
  } else if (lang === 'plpgsql' && fr.text !== undefined) {
    plpgsql(fr, fr.text, 'function_body');
  } else {
    fr.f.dynamic = true; // C, internal, plpython, …: cannot be seen
  }
  walkExcept(n, fr, scope, ['options', 'sql_body']);
}

function sqlBody(v: J, fr: Frame): void {
  if (v?.List) {
    for (const item of v.List.items ?? []) sqlBody(item, fr);
  } else if (v) {
    nested(fr, 'function_body', v, undefined);
  }
}

function plpgsql(fr: Frame, text: string, via: Via): void {
  let items;
  try {
    items = extractPlpgsqlSql(text);
  } catch {
    return opaque(fr, via); // does not compile: treat as unseen code
  }
  for (const it of items) {
    if (!it.dynamic) {
      analyzeText(fr, it.sql, via);
      continue;
    }
    let tree: J;
    try {
      tree = parseSync(it.sql);
    } catch {
      opaque(fr, via);
      continue;
    }
    const literal = constantString(tree);
    if (literal !== undefined) {
      analyzeText(fr, literal, via); // EXECUTE 'constant SQL'
    } else {
      analyzeTree(fr, tree, it.sql, via); // the expression that builds the string
      opaque(fr, via);
    }
  }
}

/** `SELECT 'text'` → 'text'; anything else → undefined. */
function constantString(tree: J): string | undefined {
  const s = tree.stmts?.length === 1 ? tree.stmts[0].stmt?.SelectStmt : undefined;
  if (!s || s.fromClause || s.targetList?.length !== 1) return undefined;
  return s.targetList[0].ResTarget?.val?.A_Const?.sval?.sval;
}

function analyzeText(fr: Frame, sql: string, via: Via): void {
  let tree: J;
  try {
    tree = parseSync(sql);
  } catch {
    return opaque(fr, via);
  }
  analyzeTree(fr, tree, sql, via);
}

function analyzeTree(fr: Frame, tree: J, sql: string, via: Via): void {
  for (const { type, body, text } of statementsOf(tree, sql)) {
    merge(fr, statementFacts(type, body, via, undefined, text, fr.ctx, fr), true);
  }
}

// ---------------------------------------------------------------- generic walk

function nested(fr: Frame, via: Via, wrapper: J, scope: Scope | undefined, runs = true): void {
  const type = firstKey(wrapper);
  if (type === undefined) return;
  merge(fr, statementFacts(type, wrapper[type], via, scope, undefined, fr.ctx, fr), runs);
}

function merge(fr: Frame, c: StatementFacts, runs: boolean): void {
  const f = fr.f;
  for (const t of c.tables_read) addUnique(f.tables_read, t);
  for (const fn of c.functions) addUnique(f.functions, fn);
  if (!runs) return;
  for (const t of c.tables_written) addUnique(f.tables_written, t);
  if (c.changes_state) fr.childChanges = true;
  if (c.dynamic) f.dynamic = true;
  if (c.set_role) f.set_role = true;
}

function opaque(fr: Frame, via: Via): void {
  const f = opaqueFacts(via);
  fr.ctx.nested.push(f);
  merge(fr, f, true);
}

function opaqueFacts(via: Via, text?: string): StatementFacts {
  const f: StatementFacts = {
    kind: 'other', tables_read: [], tables_written: [], functions: [],
    dynamic: true, changes_state: true, via,
  };
  if (text !== undefined) f.text = text;
  return f;
}

/**
 * Visits a parse-tree value. Nodes are `{TypeName: {...}}` wrappers (keys
 * start upper-case); fields typed as a concrete node (e.g. DeleteStmt.relation,
 * SelectStmt.larg) are inlined without the wrapper.
 */
function walk(v: J, fr: Frame, scope: Scope | undefined): void {
  if (v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    for (const x of v) walk(x, fr, scope);
    return;
  }
  if (typeof v.relname === 'string') return addRead(fr, v, scope); // unwrapped RangeVar
  const ctx = fr.ctx;
  if (++ctx.nodeDepth > MAX_NODE_DEPTH) {
    ctx.nodeDepth--;
    if (!fr.truncated) opaque(fr, 'subquery'); // the rest of this tree is not seen
    fr.truncated = true;
    return;
  }
  for (const key in v) {
    const c = v[key];
    if (c === null || typeof c !== 'object') continue;
    const k0 = key.charCodeAt(0);
    if (k0 >= 65 && k0 <= 90) visitNode(key, c, fr, scope);
    else walk(c, fr, scope);
  }
  ctx.nodeDepth--;
}

function walkExcept(n: J, fr: Frame, scope: Scope | undefined, skip: readonly string[]): void {
  for (const key in n) {
    const c = n[key];
    if (c !== null && typeof c === 'object' && !skip.includes(key)) walk(c, fr, scope);
  }
}

function visitNode(type: string, n: J, fr: Frame, scope: Scope | undefined): void {
  switch (type) {
    case 'RangeVar':
      return addRead(fr, n, scope);
    case 'FuncCall':
      addFunc(fr, n);
      break;
    case 'A_Const': case 'String': case 'Integer': case 'Float': case 'Boolean':
    case 'ColumnRef': case 'ParamRef': case 'A_Star':
      return; // leaves
    case 'CommonTableExpr': // a WITH not handled by its statement: names stay visible as tables
      return nested(fr, 'cte', n.ctequery, scope);
    default:
      if (type.endsWith('Stmt')) return nested(fr, 'subquery', { [type]: n }, scope);
  }
  walk(n, fr, scope);
}

// ---------------------------------------------------------------- facts helpers

function addRead(fr: Frame, rv: J, scope: Scope | undefined): void {
  if (rv.schemaname === undefined && rv.catalogname === undefined) {
    for (let s = scope; s; s = s.up) if (s.names.includes(rv.relname)) return; // CTE reference
  }
  addUnique(fr.f.tables_read, relName(rv));
}

function addWrite(fr: Frame, rv: J): void {
  if (rv?.relname === undefined) return;
  addUnique(fr.f.tables_written, relName(rv));
}

function isPgSettings(rv: J): boolean {
  return rv?.relname === 'pg_settings' && (rv.schemaname ?? 'pg_catalog') === 'pg_catalog';
}

/** pg_settings' update rule runs set_config(name, setting) for each row hit. */
function pgSettingsUpdate(n: J, fr: Frame): void {
  const names = settingNames(n.whereClause);
  const value = (n.targetList as J[] | undefined)?.find((t) => t.ResTarget?.name === 'setting')?.ResTarget?.val;
  if (names === undefined || names.some((s) => ROLE_GUCS.has(s))) fr.f.set_role = true;
  if (names === undefined || names.some((s) => desyncsParser(s, value))) opaque(fr, 'subquery');
}

/** The setting names a WHERE pins with `name = 'x'` or `name IN (…)` (possibly under AND); undefined if it does not. */
function settingNames(w: J): string[] | undefined {
  if (w?.BoolExpr?.boolop === 'AND_EXPR') {
    for (const arg of w.BoolExpr.args ?? []) {
      const r = settingNames(arg);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  const e = w?.A_Expr;
  if (e?.lexpr?.ColumnRef?.fields?.at(-1)?.String?.sval !== 'name') return undefined;
  if (e.name?.[0]?.String?.sval !== '=') return undefined;
  const consts: J[] = e.kind === 'AEXPR_IN' ? e.rexpr?.List?.items ?? [] : e.kind === 'AEXPR_OP' ? [e.rexpr] : [];
  const names = consts.map((c) => c?.A_Const?.sval?.sval);
  if (names.length === 0 || names.some((x) => typeof x !== 'string')) return undefined;
  return names.map((x: string) => x.toLowerCase());
}

/** DROP/COMMENT name lists: List of String, or a bare String. */
function addWriteName(fr: Frame, o: J): void {
  const parts: J[] = o?.List?.items ?? (o?.String ? [o] : []);
  const name = parts.map((p) => ident(String(p.String?.sval ?? ''))).join('.');
  if (name) addUnique(fr.f.tables_written, name);
}

function relName(rv: J): string {
  const rel = ident(rv.relname);
  if (rv.schemaname === undefined) return rel;
  return rv.catalogname === undefined
    ? `${ident(rv.schemaname)}.${rel}` : `${ident(rv.catalogname)}.${ident(rv.schemaname)}.${rel}`;
}

/** A name part as written in facts: quoted only if it contains '.' or '"', so `"a.b"` ≠ `a.b`. */
function ident(part: string): string {
  return part.includes('.') || part.includes('"') ? `"${part.replace(/"/g, '""')}"` : part;
}

function addFunc(fr: Frame, fc: J): void {
  const parts: string[] = (fc.funcname ?? []).map((p: J) => String(p.String?.sval ?? ''));
  const f = fr.f;
  addUnique(f.functions, parts.map(ident).join('.'));
  if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'pg_catalog')) return;
  const base = parts[parts.length - 1] ?? '';
  if (SIDE_EFFECT_FUNCTIONS.has(base) || SIDE_EFFECT_PATTERN.test(base) ||
      SIDE_EFFECT_PREFIXES.some((p) => base.startsWith(p))) {
    fr.writes = true;
  } else {
    return;
  }
  if (DYNAMIC_PREFIXES.some((p) => base.startsWith(p))) f.dynamic = true;
  if (base === 'set_config') {
    const guc: unknown = fc.args?.[0]?.A_Const?.sval?.sval;
    const name = typeof guc === 'string' ? guc.toLowerCase() : undefined;
    if (name === undefined || ROLE_GUCS.has(name)) f.set_role = true;
    // Later SQL can no longer be seen as the server sees it: like an EXECUTE of a built string.
    if (name === undefined || desyncsParser(name, fc.args?.[1])) opaque(fr, 'subquery');
  }
}

/** Postgres boolean reading of a constant (A_Const, String, Integer, Boolean); undefined if unknown. */
function truth(v: J): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  const c = v.A_Const ?? v;
  if (c.ival !== undefined) return (c.ival.ival ?? 0) !== 0;
  if (c.Integer !== undefined) return (c.Integer.ival ?? 0) !== 0;
  if (c.boolval !== undefined) return c.boolval.boolval === true;
  if (c.Boolean !== undefined) return c.Boolean.boolval === true;
  const s: unknown = c.sval?.sval ?? c.String?.sval;
  if (typeof s !== 'string') return undefined;
  const t = s.trim().toLowerCase();
  if (t === 'on' || t === '1' || (t.length > 0 && ('true'.startsWith(t) || 'yes'.startsWith(t)))) return true;
  if (t === 'off' || t === 'of' || t === '0' || (t.length > 0 && ('false'.startsWith(t) || 'no'.startsWith(t)))) return false;
  return undefined;
}

function hasInto(n: J): boolean {
  for (let s = n; s; s = s.larg) if (s.intoClause) return true;
  return false;
}

function addUnique(list: string[], s: string): void {
  if (!list.includes(s)) list.push(s);
}

function firstKey(o: J): string | undefined {
  if (o === null || typeof o !== 'object') return undefined;
  for (const k in o) return k;
  return undefined;
}

/** Top-level statements with their source text (stmt_location/len are byte offsets). */
function statementsOf(tree: J, sql: string): { type: string; body: J; text: string }[] {
  const raw: J[] = tree.stmts ?? [];
  const ascii = !/[^\x00-\x7f]/.test(sql);
  const bytes = ascii ? undefined : Buffer.from(sql, 'utf8');
  const out: { type: string; body: J; text: string }[] = [];
  for (const r of raw) {
    const type = firstKey(r.stmt);
    if (type === undefined) continue;
    const start: number = r.stmt_location ?? 0;
    const len: number = r.stmt_len ?? 0; // 0: up to the end
    const end = len > 0 ? start + len : undefined;
    const text = bytes ? bytes.subarray(start, end ?? bytes.length).toString('utf8') : sql.slice(start, end);
    out.push({ type, body: r.stmt[type], text: text.trim() });
  }
  return out;
}

function safe(fn: (s: string) => string, sql: string): string | undefined {
  try {
    return fn(sql);
  } catch {
    return undefined;
  }
}

/** Deep-freezes facts (the lazy getters keep working: they use private fields). */
function freezeFacts(q: QueryFacts): QueryFacts {
  for (const s of q.statements) {
    Object.freeze(s.tables_read);
    Object.freeze(s.tables_written);
    Object.freeze(s.functions);
    if (s.copy) Object.freeze(s.copy);
    Object.freeze(s);
  }
  Object.freeze(q.statements);
  return Object.freeze(q);
}
