// How the HTTP module asks for a decision, and the decision-cache key.
//
// PolicySet.decide caches a decision by key. An HTTP request's decision depends
// on its method, path and query (the decision text, `GET /v1/x?limit=3`) and
// on the values of the headers and body paths that some rule of the set reads
// (PolicySet.httpInputs), nothing else. So the key is the text plus those
// values only:
//   - requests that differ only in headers no rule names (User-Agent, a
//     request id, the caller's token) or in body fields no rule names share
//     one cache entry;
//   - requests that differ in a header or body value a rule reads do not;
//   - the method-override headers (X-HTTP-Method-Override & co.) always count:
//     they change the facts (method_override, changes_state) themselves.
// The facts are built from the same projection (only those headers, a copy of
// the body holding only what the paths reach), so a cached entry's facts are
// exactly what its key says, and the cache never pins a whole body or another
// caller's headers. The key weighs its length in the LRU, which covers the
// projected values too.
//
// The analyzer is made per request (it closes over the headers and body) and
// names its cache `cacheDomain: 'http'`, so all requests share one cache.
//
// Use (the HTTP module):
//   const a = httpAction(set, { method, target: req.url, headers, body, body_error });
//   if ('error' in a.target) → still govern(a): the decision is policy.on_parse_error
//   governor.govern({ text: a.text, analyze: a.analyze, cacheKey: a.cacheKey, noun: 'request' }, …)
//   then forward a.target.path + (a.target.query ? '?' + a.target.query : '') upstream.

import type { Analyzer, PolicySet } from '../engine.js';
import { collectHeaders, httpFacts, httpText, METHOD_OVERRIDE_HEADERS, type HeaderInput, type HttpInput } from './facts.js';
import { jsonPathValues, parseJsonPath, projectJson, type JsonStep } from './json-path.js';
import { normalizePath, type NormalizedPath } from './path.js';

export interface HttpRequestInput {
  method: string;
  /** The request target as received (origin-form: path and query). */
  target: string;
  headers?: HeaderInput;
  /** The parsed JSON body, when one was read. */
  body?: unknown;
  body_error?: string;
}

export interface HttpAction {
  /** The decision text: `GET /v1/x?limit=3` (canonical path), or method and raw target when the path is refused. */
  text: string;
  analyze: Analyzer;
  /** Undefined when the path is refused (the parse error is cached under the text). */
  cacheKey: string | undefined;
  /** What to forward upstream (path and query), or why the target is refused. */
  target: NormalizedPath | { error: string };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The text, analyzer and cache key of one request for PolicySet.decide (or Governor.govern). */
export function httpAction(set: PolicySet, req: HttpRequestInput): HttpAction {
  const method = req.method.toUpperCase();
  const target = TOKEN.test(method) ? normalizePath(req.target) : { error: `invalid method ${JSON.stringify(req.method)}` };
  if ('error' in target) {
    const text = `${method} ${req.target}`;
    const analyze: Analyzer = () => httpFacts({ method, path: target });
    analyze.cacheDomain = 'http';
    return { text, analyze, cacheKey: undefined, target };
  }
  const text = httpText(method, target.path, target.query);
  const input: HttpInput = { method, path: target.decoded, query: target.query, headers: req.headers, body: req.body, body_error: req.body_error };
  const p = project(set, input);
  const analyze: Analyzer = () => httpFacts(p.input);
  analyze.cacheDomain = 'http';
  return { text, analyze, cacheKey: p.key(text), target };
}

/** The decision-cache key of a request whose decision text is `text` (see above). */
export function httpCacheKey(set: PolicySet, text: string, input: Omit<HttpInput, 'path' | 'method'> & Partial<Pick<HttpInput, 'path' | 'method'>>): string {
  return project(set, { method: '', path: '/', ...input }).key(text);
}

const stepsCache = new Map<string, JsonStep[]>();
function steps(p: string): JsonStep[] {
  let s = stepsCache.get(p);
  if (!s) {
    const r = parseJsonPath(p);
    if ('error' in r) throw new Error(r.error); // the config loader checked it
    s = r;
    if (stepsCache.size < 1000) stepsCache.set(p, s);
  }
  return s;
}

/** The input reduced to what the set's rules read, and the key of those values. */
function project(set: PolicySet, input: HttpInput): { input: HttpInput; key: (text: string) => string } {
  const all = collectHeaders(input.headers);
  const headers: [string, string][] = [];
  const headerVals: (string[] | null)[] = [];
  for (const name of [...METHOD_OVERRIDE_HEADERS, ...set.httpInputs.headers]) {
    const v = all[name];
    headerVals.push(v ?? null);
    if (v && !headers.some(([n]) => n === name)) for (const x of v) headers.push([name, x]);
  }
  const paths = set.httpInputs.bodyPaths;
  let body: unknown;
  let bodyVals: unknown = null;
  if (paths.length) {
    if (input.body_error !== undefined) bodyVals = { error: true };
    else if (input.body !== undefined) {
      const ss = paths.map(steps);
      bodyVals = ss.map((s) => jsonPathValues(input.body, s)); // as JSON: 5 and "5" keep their own facts
      body = projectJson(input.body, ss);
      body ??= {}; // a body no path reaches is still a body
    }
  }
  return {
    input: {
      method: input.method,
      path: input.path,
      query: input.query,
      headers,
      ...(body !== undefined && { body }),
      ...(paths.length && input.body_error !== undefined && { body_error: input.body_error }),
    },
    // A leading NUL: no decision text (which starts with the method) can equal a key.
    key: (text) => '\0' + JSON.stringify([text, headerVals, bodyVals]),
  };
}
