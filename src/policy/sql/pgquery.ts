// libpg-query (the Postgres parser, WASM) is imported only when SQL is analysed:
// importing it costs ~15 MiB of resident memory, which a gateway with no
// Postgres listener (SSH, HTTP) never needs. After loadPgQuery() resolves,
// every call is synchronous.

type PgQuery = typeof import('libpg-query');

let mod: PgQuery | null = null;
let ready: Promise<PgQuery> | undefined;

/** Imports libpg-query and loads its WASM module (once). */
export function loadPgQuery(): Promise<PgQuery> {
  ready ??= import('libpg-query').then(async (m) => {
    await m.loadModule();
    mod = m;
    return m;
  });
  return ready;
}

/** The loaded parser; throws when loadPgQuery() has not completed. */
export function pgQuery(): PgQuery {
  if (mod === null) throw new Error('SQL analysis is not loaded: await initSqlAnalysis() first');
  return mod;
}
