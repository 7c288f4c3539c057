// The `http` rule conditions: methods, paths, query, headers, body.
//
// A request may be read more than one way by the server behind Sluice, and a
// rule must hold for the reading that hurts. So a condition is evaluated in one
// of two modes, by the rule's action:
//
//   deny / review (loose): the condition holds when SOME reading of the request
//     meets it;
//   allow (strict): only when EVERY reading meets it.
//
// The readings:
//   - methods: the method; the value of a method-override header
//     (X-HTTP-Method-Override & co.); HEAD counts as GET (servers route HEAD to
//     GET handlers). Strict: the method (HEAD passing as GET) and the override,
//     if any, must both be listed.
//   - paths: the normalised path exactly; loose also compares it
//     case-insensitively with runs of '/' merged and a trailing '/' dropped
//     (`//Admin/` meets a deny on `/admin`), for servers that read it so.
//   - query / headers / body: every value of a repeated parameter or header and
//     every value a `[*]` path reaches. Loose: some value matches a glob;
//     strict: there is a value and every one matches (`?acct=me&acct=you` does
//     not pass an allow on `acct: me`, whichever one the server takes). Loose
//     also compares query names case-insensitively.
//   - body, when the body could not be read as JSON (body_error): holds for
//     deny/review, never for allow.
//
// Globs: paths use `*` within one segment and `**` across segments (a trailing
// `/**` also matches the directory itself: `/v1/charges/**` meets
// `/v1/charges`). Values use `*` for any characters and `?` for one.

import type { RuleCondition } from '../../config/types.js';
import type { HttpFacts } from './facts.js';
import { anyCharsRe, pathGlobSource } from '../glob.js';
import { jsonPathValues, jsonValueText, parseJsonPath, type JsonStep } from './json-path.js';

export const HTTP_CONDITIONS = ['methods', 'paths', 'query', 'headers', 'body'] as const;

export type HttpMatcher = (s: HttpFacts, loose: boolean) => boolean;

/** Runs of '/' merged, a trailing '/' dropped (the root stays '/'). */
function loosePath(p: string): string {
  const m = p.replace(/\/{2,}/g, '/');
  return m.length > 1 && m.endsWith('/') ? m.slice(0, -1) : m;
}

/** Why a `paths` glob is not acceptable, or undefined. */
export function checkPathGlob(g: string): string | undefined {
  if (g[0] !== '/') return `a path glob starts with '/', got ${JSON.stringify(g)}`;
  if (/[?#]/.test(g)) return `a path glob matches the path only (use query: for parameters), got ${JSON.stringify(g)}`;
  return undefined;
}

export function compilePathGlobs(globs: readonly string[]): (path: string, loose: boolean) => boolean {
  const exact = globs.map((g) => new RegExp(pathGlobSource(g)));
  const relaxed = globs.map((g) => {
    // keep a trailing '/**' whole: loosePath must not eat its '/'
    const tree = g.endsWith('/**');
    const base = loosePath(tree ? g.slice(0, -3) : g);
    return new RegExp(pathGlobSource(tree ? (base === '/' ? '' : base) + '/**' : base), 'i');
  });
  return (path, loose) => exact.some((re) => re.test(path)) || (loose && relaxed.some((re) => re.test(loosePath(path))));
}

function valuesMeet(values: readonly string[] | undefined, res: readonly RegExp[], loose: boolean): boolean {
  if (!values || values.length === 0) return false;
  return loose ? values.some((v) => res.some((re) => re.test(v))) : values.every((v) => res.some((re) => re.test(v)));
}

/** Compiles the http conditions of a rule, or undefined when it has none. */
export function compileHttpCondition(w: RuleCondition): HttpMatcher | undefined {
  const checks: HttpMatcher[] = [];
  if (w.methods) {
    const set = new Set(w.methods.map((m) => m.toUpperCase()));
    const has = (m: string) => set.has(m) || (m === 'HEAD' && set.has('GET'));
    checks.push((s, loose) =>
      loose ? has(s.method) || (s.method_override !== undefined && has(s.method_override)) : has(s.method) && (s.method_override === undefined || has(s.method_override)),
    );
  }
  if (w.paths) {
    const m = compilePathGlobs(w.paths);
    checks.push((s, loose) => m(s.path, loose));
  }
  if (w.query) {
    const conds = Object.entries(w.query).map(([name, globs]) => ({ name, lower: name.toLowerCase(), res: globs.map((g) => anyCharsRe(g)) }));
    checks.push((s, loose) =>
      conds.every((c) => {
        if (!loose) return valuesMeet(s.query[c.name], c.res, false);
        const values: string[] = [];
        for (const k in s.query) if (k.toLowerCase() === c.lower) values.push(...s.query[k]!);
        return valuesMeet(values, c.res, true);
      }),
    );
  }
  if (w.headers) {
    const conds = Object.entries(w.headers).map(([name, globs]) => ({ name: name.toLowerCase(), res: globs.map((g) => anyCharsRe(g)) }));
    checks.push((s, loose) => conds.every((c) => valuesMeet(s.headers[c.name], c.res, loose)));
  }
  if (w.body) {
    const conds = Object.entries(w.body).map(([path, globs]) => ({ steps: jsonPath(path), res: globs.map((g) => anyCharsRe(g)) }));
    checks.push((s, loose) => {
      if (s.body_error !== undefined) return loose;
      if (s.body === undefined) return false;
      return conds.every((c) => valuesMeet(jsonPathValues(s.body, c.steps).map(jsonValueText), c.res, loose));
    });
  }
  if (!checks.length) return undefined;
  return (s, loose) => checks.every((c) => c(s, loose));
}

function jsonPath(p: string): JsonStep[] {
  const r = parseJsonPath(p);
  if ('error' in r) throw new Error(`body: ${r.error}`); // the config loader checked it
  return r;
}

/** Header names and body paths the rules read (lower-case names; paths as written). */
export function httpInputsOf(conditions: readonly RuleCondition[]): { headers: string[]; bodyPaths: string[] } {
  const headers = new Set<string>();
  const bodyPaths = new Set<string>();
  for (const w of conditions) {
    for (const h of Object.keys(w.headers ?? {})) headers.add(h.toLowerCase());
    for (const p of Object.keys(w.body ?? {})) bodyPaths.add(p);
  }
  return { headers: [...headers].sort(), bodyPaths: [...bodyPaths].sort() };
}
