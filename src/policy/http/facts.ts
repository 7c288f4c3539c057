// An HTTP request → facts for the policy engine (the `http` domain). Every
// request is one statement of kind 'http'; the shape is analyzeSql's, so
// PolicySet.decide and the governance pipeline work unchanged.
//
// changes_state is false only for GET, HEAD and OPTIONS, and true for those too
// when a method-override header (X-HTTP-Method-Override, X-HTTP-Method,
// X-Method-Override) names another method: frameworks that honour it would
// run the overriding method, so `read_only: true` must see it.

import type { QueryFacts, StatementFacts } from '../sql/facts.js';
import { encodePath } from './path.js';

export interface HttpFacts extends StatementFacts {
  kind: 'http';
  /** Upper-case. */
  method: string;
  /** Upper-case value of a method-override header, when the request has one. */
  method_override?: string;
  /** The normalised, decoded path (normalizePath's `decoded`). */
  path: string;
  /** Decoded query parameters (`+` is a space), every value of a repeated name, in order. */
  query: Record<string, string[]>;
  /** Lower-case names; every value of a repeated header, in order. */
  headers: Record<string, string[]>;
  /** The parsed JSON body, when the request had one and it was read. */
  body?: unknown;
  /** The body exists but could not be read or parsed as JSON (too large, not JSON, duplicate keys, …). */
  body_error?: string;
}

export function isHttpFacts(s: StatementFacts): s is HttpFacts {
  return s.kind === 'http';
}

/** Headers in any shape Node gives them: IncomingHttpHeaders, or [name, value] pairs (rawHeaders paired up). */
export type HeaderInput = Record<string, string | string[] | undefined> | readonly (readonly [string, string])[];

export interface HttpInput {
  method: string;
  /** normalizePath's result: its decoded path (a string), or its error. */
  path: string | { error: string };
  /** The raw query string (without '?'), or parameters already decoded. */
  query?: string | Record<string, string[]>;
  headers?: HeaderInput;
  body?: unknown;
  body_error?: string;
}

export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Headers some frameworks read as the real method (lower-case). */
export const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/** Decodes a raw query string; null when its percent-encoding is invalid. */
export function parseQuery(q: string): Record<string, string[]> | null {
  const out: Record<string, string[]> = Object.create(null);
  if (q === '') return out;
  for (const part of q.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = decodeQueryPart(eq < 0 ? part : part.slice(0, eq));
    const v = decodeQueryPart(eq < 0 ? '' : part.slice(eq + 1));
    if (k === null || v === null) return null;
    (out[k] ??= []).push(v);
  }
  return out;
}

function decodeQueryPart(s: string): string | null {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

/** Lower-case names, every value kept (a multi-valued Node header stays several values). */
export function collectHeaders(h: HeaderInput | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null);
  if (!h) return out;
  const entries: Iterable<readonly [string, string | string[] | undefined]> = Array.isArray(h) ? (h as readonly (readonly [string, string])[]) : Object.entries(h);
  for (const [name, v] of entries) {
    if (v === undefined) continue;
    const list = (out[name.toLowerCase()] ??= []);
    if (Array.isArray(v)) list.push(...v);
    else list.push(v);
  }
  return out;
}

/** The decision text: `GET /v1/charges?limit=3` (canonical path, raw query). */
export function httpText(method: string, path: string, query: string): string {
  return `${method.toUpperCase()} ${path}${query ? '?' + query : ''}`;
}

/** The facts of one request: one 'http' statement; a path or query error is a parse_error. */
export function httpFacts(input: HttpInput): QueryFacts {
  const method = input.method.toUpperCase();
  if (typeof input.path !== 'string') return { statements: [], parse_error: input.path.error };
  const query = typeof input.query === 'string' ? parseQuery(input.query) : (input.query ?? Object.create(null));
  if (query === null) return { statements: [], parse_error: 'invalid percent-encoding in the query string' };
  const headers = collectHeaders(input.headers);
  let override: string | undefined;
  for (const h of METHOD_OVERRIDE_HEADERS) {
    const v = headers[h]?.find((x) => x.trim() !== '');
    if (v !== undefined && override === undefined) override = v.trim().toUpperCase();
  }
  const normalized = `${method} ${encodePath(input.path)}`;
  const facts: HttpFacts = {
    kind: 'http',
    method,
    path: input.path,
    query,
    headers,
    ...(override !== undefined && { method_override: override }),
    ...(input.body !== undefined && { body: input.body }),
    ...(input.body_error !== undefined && { body_error: input.body_error }),
    changes_state: !SAFE_METHODS.has(method) || (override !== undefined && !SAFE_METHODS.has(override)),
    tables_read: [],
    tables_written: [],
    functions: [],
    via: 'top',
    text: normalized,
  };
  return { statements: [facts], normalized };
}
