// Matching table and function names the way Postgres reads them.
//
// Names in facts come from the parse tree, already folded: unquoted identifiers
// lowercased, quoted ones kept as written (without quotes), schema-qualified as
// "schema.name" when the SQL qualified them. Patterns in rules are folded the same
// way, so `customers`, `Customers` and `public.CUSTOMERS` all mean customers,
// while `"Customers"` means the mixed-case table. `*` is a wildcard inside a part.
// A pattern with a schema matches a name with the same schema, or an unqualified
// name (it may resolve to that schema through search_path); a pattern without a
// schema matches the name in any schema.

export type NameMatcher = (name: string) => boolean;

/** Splits `a."B c".d` into folded parts: ['a', 'B c', 'd']. */
export function foldIdentifierParts(pattern: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '"') {
      const end = pattern.indexOf('"', i + 1);
      if (end < 0) throw new Error(`unterminated quote in name pattern ${JSON.stringify(pattern)}`);
      cur += pattern.slice(i + 1, end);
      i = end + 1;
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
      i++;
    } else {
      // Postgres folds only ASCII letters in unquoted names (Ärzte stays Ärzte).
      cur += c >= 'A' && c <= 'Z' ? c.toLowerCase() : c;
      i++;
    }
  }
  parts.push(cur);
  return parts;
}

/** Splits a folded name on dots outside double quotes, unquoting parts ("" is a quote). */
function splitQuoted(name: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '"') {
      for (i++; i < name.length; i++) {
        if (name[i] === '"') {
          if (name[i + 1] === '"') {
            cur += '"';
            i++;
          } else break;
        } else cur += name[i];
      }
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

function globPart(p: string): (s: string) => boolean {
  if (!p.includes('*')) return (s) => s === p;
  const re = new RegExp('^' + p.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return (s) => re.test(s);
}

export function compileNamePatterns(patterns: string[]): NameMatcher {
  const compiled = patterns.map((p) => {
    const parts = foldIdentifierParts(p);
    const rel = globPart(parts[parts.length - 1]!);
    const schema = parts.length > 1 ? globPart(parts[parts.length - 2]!) : undefined;
    return { rel, schema };
  });
  return (name: string) => {
    // Fact names are already folded; a part holding "." or '"' comes quoted.
    const parts = name.includes('"') ? splitQuoted(name) : name.split('.');
    const rel = parts[parts.length - 1]!;
    const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
    return compiled.some((c) => c.rel(rel) && (!c.schema || schema === undefined || c.schema(schema)));
  };
}
