// The decision-cache key for SQL text: statements that differ only in numeric
// constants ("... WHERE aid = 17" and "... WHERE aid = 42") share one key, so
// simple-protocol traffic with inlined numbers (pgbench -S, ORMs without bind
// parameters) hits the cache instead of paying a full parse per statement.
//
// Sound because the facts of a statement (kinds, tables, functions, flags)
// do not depend on the value of a numeric constant, except in the few places
// where sql-facts reads a constant as a boolean: settings that make a session
// writable or desynchronise the parser (SET transaction_read_only = 0,
// standard_conforming_strings, pg_settings, set_config) and EXPLAIN (ANALYZE 0).
// Texts that mention those keep their own key. The scan is conservative:
// it returns the text itself (no sharing) at anything it does not fully
// understand — dollar quotes, E''/U&''/B''/X'' strings, nested comments, a
// number glued to a word (0x1F, 1_000) — so a lexing difference from Postgres
// can only cost a cache miss, never merge two different statements.
// Hand-written: a regex cannot track strings, identifiers and comments, and a
// full parse is what this avoids.

const enum C {
  Quote = 0x27, // '
  DQuote = 0x22, // "
  Dash = 0x2d, // -
  Slash = 0x2f, // /
  Star = 0x2a, // *
  Dollar = 0x24, // $
  Dot = 0x2e, // .
  NL = 0x0a,
  Zero = 0x30,
  Nine = 0x39,
}

const isDigit = (c: number) => c >= C.Zero && c <= C.Nine;
/** Characters that continue an identifier or keyword (ASCII; any non-ASCII byte counts too). */
const isWordChar = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || isDigit(c) || c === 0x5f || c === C.Dollar || c > 0x7f;

/** NUL never occurs in a Postgres query string, so it cannot collide with real text. */
const MARK = '\0';

/** Words after which a numeric constant can change the facts (see above); matched case-insensitively. */
const VALUE_SENSITIVE = /read_only|standard_conforming|pg_settings|set_config|explain/i;

export function sqlCacheKey(sql: string): string {
  if (VALUE_SENSITIVE.test(sql)) return sql;
  const n = sql.length;
  let out: string | null = null; // built lazily: most keys are the text itself
  let copied = 0; // sql[0, copied) is already in `out`
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === C.Quote) {
      // A prefixed string (E'', U&'', B'', X'', N'') has other escape rules: give up.
      if (i > 0 && (isWordChar(sql.charCodeAt(i - 1)) || sql.charCodeAt(i - 1) === 0x26)) return sql;
      i = skipQuoted(sql, i + 1, C.Quote);
      if (i < 0) return sql;
      continue;
    }
    if (c === C.DQuote) {
      // U&"…" may spell any name with escapes: give up.
      if (i > 0 && sql.charCodeAt(i - 1) === 0x26) return sql;
      i = skipQuoted(sql, i + 1, C.DQuote);
      if (i < 0) return sql;
      continue;
    }
    if (c === C.Dash && sql.charCodeAt(i + 1) === C.Dash) {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (c === C.Slash && sql.charCodeAt(i + 1) === C.Star) {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) return sql;
      // Postgres nests block comments; this scan does not.
      if (sql.indexOf('/*', i + 2) !== -1 && sql.indexOf('/*', i + 2) < end) return sql;
      i = end + 2;
      continue;
    }
    if (c === C.Dollar) {
      // $1 (a parameter) is kept; anything else may open a dollar quote.
      if (!isDigit(sql.charCodeAt(i + 1))) return sql;
      i++;
      while (i < n && isDigit(sql.charCodeAt(i))) i++;
      continue;
    }
    if (isWordChar(c)) {
      if (!isDigit(c)) {
        // A word: skip it whole (its digits are part of a name).
        while (i < n && isWordChar(sql.charCodeAt(i))) i++;
        continue;
      }
    } else if (!(c === C.Dot && isDigit(sql.charCodeAt(i + 1)) && (i === 0 || !isWordChar(sql.charCodeAt(i - 1))))) {
      i++;
      continue;
    }
    // A numeric constant: 12, 1.5, .5, 1e-3, 2.
    const start = i;
    if (i > 0 && sql.charCodeAt(i - 1) === C.Dot) return sql; // t.5: not Postgres' tokens

    while (i < n && isDigit(sql.charCodeAt(i))) i++;
    if (sql.charCodeAt(i) === C.Dot) {
      i++;
      while (i < n && isDigit(sql.charCodeAt(i))) i++;
    }
    const e = sql.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      let j = i + 1;
      const s = sql.charCodeAt(j);
      if (s === 0x2b || s === C.Dash) j++;
      if (!isDigit(sql.charCodeAt(j))) return sql;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      i = j;
    }
    // 0x1F, 1_000, 1abc, 1.2.3: not plain constants.
    if (i < n && (isWordChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === C.Dot)) return sql;
    out = (out ?? '') + sql.slice(copied, start) + MARK;
    copied = i;
  }
  return out === null ? sql : out + sql.slice(copied);
}

/** Index after the closing quote (a doubled quote is part of the text), or -1 when unterminated. */
function skipQuoted(sql: string, i: number, q: number): number {
  for (;;) {
    const k = sql.indexOf(q === C.Quote ? "'" : '"', i);
    if (k < 0) return -1;
    if (sql.charCodeAt(k + 1) === q) {
      i = k + 2;
      continue;
    }
    return k + 1;
  }
}
