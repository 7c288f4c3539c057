// The JSON paths of `body:` conditions: `$`, `.name`, `['name']` / `["name"]`,
// `[3]`, `[*]` and `.*` (every member or element). No filters, no recursive
// descent: a rule names the fields it means.

export type JsonStep = { key: string } | { index: number } | { any: true };

const NAME = /^[A-Za-z_$][\w$-]*/;

export function parseJsonPath(p: string): JsonStep[] | { error: string } {
  if (p[0] !== '$') return { error: `a JSON path starts with '$' (e.g. '$.amount'), got ${JSON.stringify(p)}` };
  const steps: JsonStep[] = [];
  let i = 1;
  while (i < p.length) {
    const rest = p.slice(i);
    if (rest.startsWith('.*')) {
      steps.push({ any: true });
      i += 2;
    } else if (rest[0] === '.') {
      const m = NAME.exec(rest.slice(1));
      if (!m) return { error: `expected a member name after '.' at offset ${i} of ${JSON.stringify(p)} (quote others: $['a b'])` };
      steps.push({ key: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith('[*]')) {
      steps.push({ any: true });
      i += 3;
    } else if (/^\[\d+\]/.test(rest)) {
      const m = /^\[(\d+)\]/.exec(rest)!;
      steps.push({ index: Number(m[1]) });
      i += m[0].length;
    } else if (rest[0] === '[' && (rest[1] === "'" || rest[1] === '"')) {
      const q = rest[1];
      const end = rest.indexOf(q + ']', 2);
      if (end < 0) return { error: `unterminated ${q}…${q}] at offset ${i} of ${JSON.stringify(p)}` };
      steps.push({ key: rest.slice(2, end) });
      i += end + 2;
    } else return { error: `unexpected ${JSON.stringify(rest[0])} at offset ${i} of ${JSON.stringify(p)}; use .name, ['name'], [n] or [*]` };
  }
  return steps;
}

/** Every value the path reaches (none when it is absent). */
export function jsonPathValues(root: unknown, steps: readonly JsonStep[]): unknown[] {
  let cur: unknown[] = [root];
  for (const s of steps) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (v === null || typeof v !== 'object') continue;
      if ('any' in s) next.push(...(Array.isArray(v) ? v : Object.values(v)));
      else if ('index' in s) {
        if (Array.isArray(v) && s.index < v.length) next.push(v[s.index]);
      } else if (!Array.isArray(v) && Object.hasOwn(v, s.key)) next.push((v as Record<string, unknown>)[s.key]);
    }
    cur = next;
    if (!cur.length) break;
  }
  return cur;
}

/** A value as rules compare it: strings raw, anything else as JSON text. */
export function jsonValueText(v: unknown): string {
  return typeof v === 'string' ? v : (JSON.stringify(v) ?? 'null');
}

/**
 * A copy of `root` holding only what the paths reach (arrays keep their
 * indexes), so a cached decision's facts do not pin a whole request body and
 * the paths read the same values from the copy as from the original.
 */
export function projectJson(root: unknown, paths: readonly (readonly JsonStep[])[]): unknown {
  let out: unknown = undefined;
  for (const steps of paths) out = graft(out, root, steps, 0);
  return out;
}

function graft(into: unknown, v: unknown, steps: readonly JsonStep[], i: number): unknown {
  if (i === steps.length || into === v) return v;
  if (v === null || typeof v !== 'object') return into;
  const s = steps[i]!;
  const arr = Array.isArray(v);
  const target = (into ?? (arr ? [] : Object.create(null))) as Record<string | number, unknown>;
  const keys: (string | number)[] = 'any' in s ? (arr ? v.map((_, k) => k) : Object.keys(v)) : 'index' in s ? (arr && s.index < v.length ? [s.index] : []) : !arr && Object.hasOwn(v, s.key) ? [s.key] : [];
  for (const k of keys) target[k] = graft(target[k], (v as Record<string | number, unknown>)[k], steps, i + 1);
  return target;
}
