/**
 * Extracts the SQL embedded in a PL/pgSQL body (a DO block or a
 * CREATE FUNCTION/PROCEDURE ... LANGUAGE plpgsql statement), so that
 * sql-facts.ts can analyse each piece like any other statement.
 * Pure; requires libpg-query's loadModule() to have completed.
 */
import { pgQuery } from './pgquery.js';

export interface EmbeddedSql {
  /** A complete SQL statement (expressions are wrapped as `SELECT <expr>`). */
  sql: string;
  /** The text is an expression whose value is executed as SQL (EXECUTE, FOR … IN EXECUTE, RETURN QUERY EXECUTE, OPEN … FOR EXECUTE). */
  dynamic?: true;
}

type Json = Record<string, unknown>;

/** Statements whose named field holds a string expression that is then executed. */
const DYNAMIC_FIELD: Record<string, string> = {
  PLpgSQL_stmt_dynexecute: 'query',
  PLpgSQL_stmt_dynfors: 'query',
  PLpgSQL_stmt_return_query: 'dynquery',
  PLpgSQL_stmt_open: 'dynquery',
};

// PLpgSQL_expr.parseMode values (RawParseMode in Postgres).
const MODE_DEFAULT = 0;
const MODE_EXPR = 2;
const MODE_ASSIGN1 = 3;
const MODE_ASSIGN3 = 5;

/** Throws the PL/pgSQL compiler's error when the body does not compile. */
export function extractPlpgsqlSql(text: string): EmbeddedSql[] {
  const tree = pgQuery().parsePlPgSQLSync(text) as unknown;
  const out: EmbeddedSql[] = [];
  walk(tree, out);
  return out;
}

function walk(v: unknown, out: EmbeddedSql[]): void {
  if (Array.isArray(v)) {
    for (const x of v) walk(x, out);
    return;
  }
  if (v === null || typeof v !== 'object') return;
  const o = v as Json;
  for (const key in o) {
    const child = o[key];
    if (child === null || typeof child !== 'object') continue;
    if (key === 'PLpgSQL_expr') {
      exprSql(child as Json, out);
      continue;
    }
    const dynField = DYNAMIC_FIELD[key];
    if (dynField === undefined) {
      walk(child, out);
      continue;
    }
    const body = child as Json;
    for (const k in body) {
      const expr = (body[k] as Json | undefined)?.['PLpgSQL_expr'] as Json | undefined;
      if (k === dynField && expr) out.push({ sql: `SELECT ${String(expr['query'] ?? '')}`, dynamic: true });
      else walk(body[k], out);
    }
  }
}

function exprSql(e: Json, out: EmbeddedSql[]): void {
  const q = String(e['query'] ?? '');
  const mode = (e['parseMode'] as number | undefined) ?? MODE_DEFAULT;
  if (mode === MODE_DEFAULT) out.push({ sql: q });
  else if (mode === MODE_EXPR) out.push({ sql: `SELECT ${q}` });
  else if (mode >= MODE_ASSIGN1 && mode <= MODE_ASSIGN3) {
    // "target := expr [FROM ...]": the right side is a SELECT list; the
    // target can only hide SQL inside array subscripts.
    const split = splitAssignment(q);
    if (split === undefined) out.push({ sql: `SELECT ${q}` });
    else {
      out.push({ sql: `SELECT ${split.rhs}` });
      if (split.lhs.includes('[')) out.push({ sql: `SELECT ${split.lhs}` });
    }
  }
  // Other modes are type names: no SQL.
}

/** Splits at the first `:=` or `=` outside brackets, using the real SQL scanner. */
function splitAssignment(q: string): { lhs: string; rhs: string } | undefined {
  const bytes = Buffer.from(q, 'utf8');
  let depth = 0;
  for (const t of pgQuery().scanSync(q).tokens) {
    const s = t.text;
    if (s === '(' || s === '[') depth++;
    else if (s === ')' || s === ']') depth--;
    else if (depth === 0 && (s === ':=' || s === '=')) {
      // Scanner offsets are byte offsets.
      return {
        lhs: bytes.subarray(0, t.start).toString('utf8'),
        rhs: bytes.subarray(t.end).toString('utf8'),
      };
    }
  }
  return undefined;
}
