// Statement kinds, as rules name them (`kind: [drop, truncate]`). The analysis
// (sql-facts.ts) maps every parse-tree node to one of these; README lists them.
export const STATEMENT_KINDS: readonly string[] = [
  'select', 'select_into', 'values', 'insert', 'update', 'delete', 'merge', 'copy',
  'create_table', 'create_table_as', 'create_index', 'create_view', 'create_matview', 'refresh_matview',
  'create_function', 'create_trigger', 'create_schema', 'create_sequence', 'create_extension', 'create_type',
  'create_role', 'create_database', 'create_other',
  'alter_table', 'alter_role', 'alter_system', 'alter_database', 'alter_other',
  'drop', 'drop_owned', 'reassign_owned', 'truncate',
  'grant', 'revoke', 'grant_role',
  'set', 'reset', 'show', 'set_role',
  'begin', 'start_transaction', 'commit', 'rollback', 'savepoint', 'release',
  'prepare_transaction', 'commit_prepared', 'rollback_prepared',
  'prepare', 'execute', 'deallocate', 'explain', 'do', 'call',
  'vacuum', 'analyze', 'cluster', 'reindex', 'lock', 'listen', 'notify', 'unlisten', 'discard',
  'declare_cursor', 'fetch', 'move', 'close_cursor', 'checkpoint', 'load', 'comment', 'security_label',
  'import_foreign_schema',
  // A fast-path FunctionCall message (by OID, no SQL text): libpq's lo_* use it.
  'function_call',
  // A shell command (SSH exec or a shell line): src/policy/shell-facts.ts.
  'command',
  // An HTTP request (the HTTP gateway): src/policy/http/.
  'http',
  'other',
];
