// Loading and validating sluice.yaml.
//
// The YAML is parsed into a Document (with a LineCounter, so every node knows
// its line) and walked by a tiny declarative schema below. Defaults are applied,
// paths are resolved relative to the config file's directory, and ALL problems
// are collected into one ConfigError naming the key and the line.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Document, LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Node as YNode } from 'yaml';
import type { IssuerConfig, MaskDetectorRule, PolicyAction, PolicyConfig, PolicyRule, SecretRef, SluiceConfig, TargetConfig } from './types.js';
import { DETECTOR_NAMES } from '../policy/masking/types.js';
import { jsonPathError } from '../policy/masking/json-path.js';
import { STATEMENT_KINDS } from '../policy/sql/kinds.js';
import { parseDuration, parseSize } from './units.js';
import { parseRule } from '../identity/access.js';
import { checkPathGlob } from '../policy/http/match.js';
import { parseJsonPath } from '../policy/http/json-path.js';
import { SLUICE_ISSUER_NAME } from '../identity/types.js';

export interface ConfigIssue {
  /** Dotted key path, e.g. "targets.orders.port" ('' for the whole file). */
  path: string;
  line?: number;
  column?: number;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    const n = issues.length;
    const lines = issues.map(
      (i) => `  ${i.line ? `line ${i.line}: ` : ''}${i.path ? `${i.path}: ` : ''}${i.message}`,
    );
    super(`${source || 'config'}: ${n} problem${n === 1 ? '' : 's'}:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------------------
// A tiny schema DSL over YAML nodes. A Spec checks one node; it returns the
// converted value, or undefined after recording an issue.

export interface Ctx {
  doc: Document;
  lc?: LineCounter;
  baseDir: string;
  issues: ConfigIssue[];
}
type Node = YNode | null; // null: absent or an empty value (`key:`)
export interface Spec<T> {
  (node: Node, path: string, ctx: Ctx, at: YNode | null): T | undefined;
  /** An empty value (`key:`) means "{}" rather than "absent" (maps). */
  nullable?: boolean;
}

function report(ctx: Ctx, node: YNode | null | undefined, path: string, message: string): undefined {
  const pos = node?.range && ctx.lc ? ctx.lc.linePos(node.range[0]) : undefined;
  ctx.issues.push({ path, message, ...(pos && { line: pos.line, column: pos.col }) });
  return undefined;
}

const deref = (ctx: Ctx, n: unknown): Node => {
  const node = isAlias(n) ? n.resolve(ctx.doc) : n;
  if (!node || (isScalar(node) && node.value === null)) return null;
  return node as YNode;
};

function describe(node: Node): string {
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  const v = isScalar(node) ? node.value : null;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return String(v);
}

/** A scalar of the given JS type, converted/checked by `check` (returns a value or an error string). */
function scalar<T>(
  want: string,
  accept: (v: unknown) => boolean,
  check: (v: any, ctx: Ctx) => T | { error: string },
): Spec<T> {
  return (node, path, ctx) => {
    const v = isScalar(node) ? node.value : undefined;
    if (!accept(v)) return report(ctx, node, path, `expected ${want}, got ${describe(node)}`);
    const r = check(v, ctx);
    if (r && typeof r === 'object' && 'error' in r) return report(ctx, node, path, r.error);
    return r as T;
  };
}
const isStr = (v: unknown) => typeof v === 'string';
const isNum = (v: unknown) => typeof v === 'number';

export function str(check: (s: string) => string | undefined = () => undefined): Spec<string> {
  return scalar('a string', (v) => isStr(v) || isNum(v), (v) => {
    const s = String(v);
    const err = s === '' ? 'must not be empty' : check(s);
    return err ? { error: err } : s;
  });
}
/** A file path, resolved relative to the config file's directory. */
export const filePath = (): Spec<string> =>
  scalar('a path', isStr, (v: string, ctx) => (v === '' ? { error: 'must not be empty' } : resolve(ctx.baseDir, v)));
export const bool = (): Spec<boolean> => scalar('true or false', (v) => typeof v === 'boolean', (v) => v);
export const int = (min: number, max: number): Spec<number> =>
  scalar(`an integer from ${min} to ${max}`, (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max, (v) => v);
export function oneOf<const T extends string>(values: readonly T[], why: (s: string) => string | undefined = () => undefined): Spec<T> {
  const want = `one of ${values.join(', ')}`;
  return scalar(want, isStr, (v: string) =>
    values.includes(v as T) ? (v as T) : { error: why(v) ?? `expected ${want}, got ${JSON.stringify(v)}` },
  );
}
/** A duration ("30s", "15m", plain number = seconds), returned in seconds or milliseconds. */
export function duration(unit: 's' | 'ms', min: number): Spec<number> {
  return scalar('a duration', (v) => isStr(v) || isNum(v), (v) => {
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (e) {
      return { error: (e as Error).message };
    }
    const n = unit === 's' ? ms / 1000 : ms;
    if (!Number.isInteger(n)) return { error: `must be a whole number of seconds, got ${JSON.stringify(v)}` };
    return n < min ? { error: `must be at least ${min}${unit}, got ${JSON.stringify(v)}` } : n;
  });
}
export function size(min: number, max: number): Spec<number> {
  return scalar('a size', (v) => isStr(v) || isNum(v), (v) => {
    let n: number;
    try {
      n = parseSize(v);
    } catch (e) {
      return { error: (e as Error).message };
    }
    return n < min || n > max ? { error: `must be from ${min} to ${max} bytes, got ${JSON.stringify(v)}` } : n;
  });
}

export function list<T>(item: Spec<T>, nonEmpty = false): Spec<T[]> {
  return (node, path, ctx) => {
    if (!isSeq(node)) return report(ctx, node, path, `expected a list, got ${describe(node)}`);
    if (nonEmpty && node.items.length === 0) return report(ctx, node, path, 'must not be empty');
    const out: T[] = [];
    let ok = true;
    node.items.forEach((n, i) => {
      const v = deref(ctx, n);
      const r = v ? item(v, `${path}[${i}]`, ctx, v) : report(ctx, node, `${path}[${i}]`, 'must not be empty');
      if (r === undefined) ok = false;
      else out.push(r);
    });
    return ok ? out : undefined;
  };
}

/** Iterate a map's pairs with string keys; non-string keys are reported. */
function* pairs(node: Node, path: string, ctx: Ctx) {
  if (!isMap(node)) return;
  for (const p of node.items) {
    const key = p.key as YNode;
    const k = isScalar(key) && (isStr(key.value) || isNum(key.value)) ? String(key.value) : undefined;
    if (k === undefined) report(ctx, key, path, `keys must be plain strings, got ${describe(key)}`);
    else yield { k, key, value: deref(ctx, p.value) };
  }
}

export function record<T>(item: (key: string) => Spec<T>, keyCheck: (k: string) => string | undefined): Spec<Record<string, T>> {
  const spec: Spec<Record<string, T>> = (node, path, ctx) => {
    if (node && !isMap(node)) return report(ctx, node, path, `expected a map, got ${describe(node)}`);
    const entries: [string, T][] = [];
    let ok = true;
    for (const { k, key, value } of pairs(node, path, ctx)) {
      const p = `${path}.${k}`;
      const bad = keyCheck(k);
      const spec = item(k);
      let r: T | undefined;
      if (bad) r = report(ctx, key, p, bad);
      else if (!value && !spec.nullable) r = report(ctx, key, p, 'must not be empty');
      else r = spec(value, p, ctx, key);
      if (r === undefined) ok = false;
      else entries.push([k, r]);
    }
    return ok ? Object.fromEntries(entries) : undefined;
  };
  spec.nullable = true;
  return spec;
}

// Fields of an object: required, optional, or with a default.
interface Field<T, Opt extends boolean> {
  spec: Spec<T>;
  mode: 'req' | 'opt' | 'def';
  value?: unknown;
  _opt?: Opt;
}
export const req = <T>(spec: Spec<T>): Field<T, false> => ({ spec, mode: 'req' });
export const opt = <T>(spec: Spec<T>): Field<T, true> => ({ spec, mode: 'opt' });
/**
 * With a default, written as in the YAML ("10s", "./.sluice") and run through the
 * spec like any value (so units convert and paths resolve); none: the map spec sees `{}`.
 */
export const def = <T>(spec: Spec<T>, value?: unknown): Field<T, false> => ({ spec, mode: 'def', value });

type Fields = Record<string, Field<any, boolean>>;
type Val<F> = F extends Field<infer T, boolean> ? T : never;
type Out<F extends Fields> = { [K in keyof F as F[K] extends Field<any, false> ? K : never]: Val<F[K]> } & {
  [K in keyof F as F[K] extends Field<any, false> ? never : K]?: Val<F[K]>;
};
/** Cross-field checks once every field is valid; `fail(key, msg)` reports at that key (or the map). */
type Finish<T> = (v: T, fail: (key: string | null, message: string) => void) => void;

export function object<F extends Fields>(fields: F, finish?: Finish<Out<F>>): Spec<Out<F>> {
  const spec: Spec<Out<F>> = (node, path, ctx, at) => {
    if (node && !isMap(node)) return report(ctx, node, path, `expected a map, got ${describe(node)}`);
    const join = (k: string) => (path ? `${path}.${k}` : k);
    const seen = new Map<string, { key: YNode; value: Node }>();
    let ok = true;
    for (const p of pairs(node, path, ctx)) {
      if (Object.hasOwn(fields, p.k)) seen.set(p.k, p);
      else {
        report(ctx, p.key, path, `unknown key ${JSON.stringify(p.k)}${suggest(p.k, Object.keys(fields))}`);
        ok = false;
      }
    }
    const out: Record<string, unknown> = {};
    for (const [name, f] of Object.entries(fields)) {
      const p = seen.get(name);
      let r: unknown;
      if (p?.value || (p && f.spec.nullable)) r = f.spec(p.value, join(name), ctx, p.key);
      else if (f.mode === 'req')
        r = p ? report(ctx, p.key, join(name), 'a value is required') : report(ctx, at ?? node, path, `missing required key "${name}"`);
      else if (f.mode === 'opt') continue;
      else {
        const dflt = f.value === undefined ? null : (ctx.doc.createNode(f.value) as YNode);
        r = f.spec(dflt, join(name), ctx, p?.key ?? at ?? node);
      }
      if (r === undefined) ok = false;
      else out[name] = r;
    }
    if (!ok) return undefined;
    const before = ctx.issues.length;
    finish?.(out as Out<F>, (k, msg) => report(ctx, (k && seen.get(k)?.key) || at || node, k ? join(k) : path, msg));
    return ctx.issues.length === before ? (out as Out<F>) : undefined;
  };
  spec.nullable = true;
  return spec;
}

/** ' (did you mean "x"?)' for the closest candidate within a small edit distance, else ''. */
function suggest(word: string, candidates: string[]): string {
  let best = '';
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best ? ` (did you mean "${best}"?)` : '';
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[a.length]![b.length]!;
}

// ---------------------------------------------------------------------------
// The sluice.yaml schema.

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const httpUrl = (s: string) => {
  try {
    return ['http:', 'https:'].includes(new URL(s).protocol);
  } catch {
    return false;
  }
};


/**
 * Why a URL that keys are fetched from is not acceptable, or undefined when it is: https, or
 * http to a loopback host (tests, a local sidecar). Plain http lets anyone on the network path
 * replace the keys and so mint any identity.
 */
export function insecureKeyUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `not a URL: ${JSON.stringify(url)}`;
  }
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && isLoopbackHost(u.hostname)) return undefined;
  if (u.protocol === 'http:') {
    return `${JSON.stringify(url)} is plain http: anyone on the network path could swap the issuer's keys and mint tokens; use https (http is accepted only for loopback hosts: 127.0.0.1, ::1, localhost)`;
  }
  return `${JSON.stringify(url)} is not an https URL`;
}

/**
 * A target access rule: `[<issuer>/]group:<g> | sub:<s> | claim:<name>=<value> | *`. The issuer
 * prefix can only come before the first ':' (issuer names have no '/', ':' or '@'), so a subject
 * or group containing ':', '/' or '@' never reads as one.
 */
const ALLOW_RULE = /^(?:([a-z0-9][a-z0-9_.-]*)\/)?(\*|group:.+|sub:.+|claim:[^=]+=.+)$/s;

/** identity.issuers[].name: lowercase letters, digits, '.', '_', '-' (no '/', ':' or '@'). */
const ISSUER_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** Names an external issuer may not take: Sluice's own, the revocation wildcard, rule kinds. */
const RESERVED_ISSUER_NAMES = ['sluice', 'any', 'group', 'sub', 'claim'];
const issuerNameCheck = (s: string): string | undefined =>
  !ISSUER_NAME.test(s)
    ? `${JSON.stringify(s)} is not a valid issuer name: use lowercase letters, digits, ".", "_" and "-" (no "/", ":" or "@"), at most 63 characters`
    : RESERVED_ISSUER_NAMES.includes(s)
      ? `"${s}" is reserved${s === 'sluice' ? " (it names Sluice's own issuer)" : ''}; pick another name`
      : undefined;

/** The default name of an external issuer: its URL's host, or the issuer itself when that is a valid name. */
function defaultIssuerName(issuer: string): string | undefined {
  let candidate = issuer.toLowerCase();
  try {
    const u = new URL(issuer);
    if (u.hostname) candidate = u.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  } catch {
    // not a URL: the issuer string itself
  }
  return issuerNameCheck(candidate) === undefined ? candidate : undefined;
}

/** `{ env: VAR } | { file: path } | { command: "..." }`; never echoes a plain-text value. */
const SECRET_FORMS = {
  env: str((s) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? undefined : `not a valid environment variable name: ${JSON.stringify(s)}`)),
  file: filePath(),
  command: str(),
};
export const secretRef: Spec<SecretRef> = (node, path, ctx) => {
  const forms = '{ env: VAR_NAME }, { file: ./path } or { command: "..." }';
  if (!isMap(node))
    return isScalar(node) // never echo it: it may be the password itself
      ? report(ctx, node, path, `plain-text secrets are not allowed in the config; use ${forms}`)
      : report(ctx, node, path, `expected ${forms}, got ${describe(node)}`);
  const items = [...pairs(node, path, ctx)];
  if (items.length !== 1 || node.items.length !== 1)
    return report(ctx, node, path, `expected exactly one of env, file or command, got ${node.items.length} keys`);
  const { k, key, value } = items[0]!;
  if (!Object.hasOwn(SECRET_FORMS, k))
    return report(ctx, key, path, `unknown key ${JSON.stringify(k)}${suggest(k, Object.keys(SECRET_FORMS))}`);
  const form = k as keyof typeof SECRET_FORMS;
  if (!value) return report(ctx, key, `${path}.${k}`, 'a value is required');
  const v = SECRET_FORMS[form](value, `${path}.${k}`, ctx, key);
  return v === undefined ? undefined : ({ [form]: v } as SecretRef);
};

const audience: Spec<string[]> = (node, path, ctx, at) => {
  if (isSeq(node)) return list(str(), true)(node, path, ctx, at);
  const one = str()(node, path, ctx, at);
  return one === undefined ? undefined : [one];
};

const issuerFields = object(
  {
    name: opt(str(issuerNameCheck)), // default: the issuer URL's host
    issuer: req(str()), // required
    audience: req(audience), // required; a string or a list of strings
    jwks_uri: opt(str((s) => (httpUrl(s) ? insecureKeyUrl(s) : `must be an https URL, got ${JSON.stringify(s)}`))),
    jwks_file: opt(filePath()), // resolved
    groups_claim: def(str(), 'groups'), // default "groups"
    algorithms: def(
      list(
        oneOf(ASYMMETRIC_ALGS, (a) =>
          /^(HS\d+|none)$/i.test(a)
            ? `${JSON.stringify(a)} is not accepted: only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are allowed, because a symmetric key would let anyone who can verify tokens also mint them`
            : undefined,
        ),
        true,
      ),
      [...ASYMMETRIC_ALGS],
    ), // default: every asymmetric algorithm
    max_ttl: def(duration('s', 1), '24h'), // longest lifetime (exp - iat) accepted
    admin_groups: def(list(str()), []), // groups of this issuer with admin rights: none by default
    approver_groups: def(list(str()), []), // groups of this issuer that may approve: none by default
  },
  (v, fail) => {
    if (v.jwks_uri && v.jwks_file) fail('jwks_file', 'set at most one of jwks_uri and jwks_file');
    else if (!v.jwks_uri && !v.jwks_file) {
      if (!httpUrl(v.issuer)) fail('issuer', 'must be an https URL for OIDC discovery when neither jwks_uri nor jwks_file is set');
      else {
        const bad = insecureKeyUrl(v.issuer);
        if (bad) fail('issuer', `OIDC discovery (no jwks_uri or jwks_file) fetches the keys from the issuer URL, and ${bad}`);
      }
    }
    if (v.name === undefined && defaultIssuerName(v.issuer) === undefined) {
      fail('issuer', `cannot derive a short name from ${JSON.stringify(v.issuer)}: set name (e.g. name: okta), used in rules such as "okta/group:dba"`);
    }
  },
);
const issuer: Spec<IssuerConfig> = (node, path, ctx, at) => {
  const v = issuerFields(node, path, ctx, at);
  if (!v) return undefined;
  const { name, ...rest } = v;
  return { name: name ?? defaultIssuerName(v.issuer)!, ...rest };
};

/** targets.*.allow: required, non-empty. */
export const allowRules = req(
  list(
    str((s) =>
      ALLOW_RULE.test(s)
        ? undefined
        : `${JSON.stringify(s)} is not a valid rule; expected "group:<name>", "sub:<subject>", "claim:<name>=<value>" or "*", optionally after an issuer name and "/" (e.g. "okta/group:dba")`,
    ),
    true,
  ),
);

/** A host name or address that stays on this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^0*:(0*:){1,6}0*1$/.test(h);
}

// ---------------------------------------------------------------------------
// Targets: each protocol module registers the schema of its targets
// (src/protocols/<name>/config.ts); the loader knows no protocol.

/** The schema of one protocol's targets, given the target's name (for defaults). */
export type TargetSchema = (name: string) => Spec<object>;
const targetSchemas = new Map<string, TargetSchema>();

/** Called by a protocol module when it is loaded: `targets.<name>.protocol: <protocol>` uses `schema`. */
export function registerTargetSchema(protocol: string, schema: TargetSchema): void {
  targetSchemas.set(protocol, schema);
}

/** The protocols whose modules are loaded (their targets can be configured). */
export const targetProtocols = (): string[] => [...targetSchemas.keys()];

/** A target without `protocol:` is a Postgres target. */
const DEFAULT_TARGET_PROTOCOL = 'postgres';

const target = (name: string): Spec<TargetConfig> => {
  return (node, path, ctx, at) => {
    const proto = isMap(node) ? node.get('protocol') : undefined;
    const key = proto === undefined || proto === null ? DEFAULT_TARGET_PROTOCOL : proto;
    const schema = typeof key === 'string' ? targetSchemas.get(key) : undefined;
    if (!schema) {
      const p = isMap(node) ? (node.get('protocol', true) as YNode) : node;
      return report(ctx, p, `${path}.protocol`, `expected one of ${targetProtocols().join(', ')}, got ${describe(p)}`);
    }
    const t = schema(name)(node, path, ctx, at);
    return t && ({ name, ...t } as TargetConfig);
  };
};

/** One of the loaded protocols (read when the config is loaded, after the modules registered). */
const protocolName: Spec<string> = (node, path, ctx, at) => oneOf(targetProtocols())(node, path, ctx, at);

const kindName = str((s) => (STATEMENT_KINDS.includes(s) ? undefined : `unknown statement kind ${JSON.stringify(s)}${suggest(s, [...STATEMENT_KINDS])}`));
// HTTP rule conditions (src/policy/http/match.ts).
const HTTP_METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'SEARCH', 'REPORT', 'QUERY',
];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A method, any case, returned upper-case. */
const methodName: Spec<string> = (node, path, ctx, at) => {
  const m = str((v) => (HTTP_METHODS.includes(v.toUpperCase()) ? undefined : `unknown HTTP method ${JSON.stringify(v)}${suggest(v.toUpperCase(), HTTP_METHODS)}`))(node, path, ctx, at);
  return m?.toUpperCase();
};
/** `glob` or `[glob, …]`. */
const globs: Spec<string[]> = (node, path, ctx, at) => {
  if (isSeq(node)) return list(str(), true)(node, path, ctx, at);
  const g = str()(node, path, ctx, at);
  return g === undefined ? undefined : [g];
};
/** `{ name: glob | [globs] }`, not empty; `fold` merges names that fold together (header case). */
function globMap(example: string, keyCheck: (k: string) => string | undefined, fold?: (k: string) => string): Spec<Record<string, string[]>> {
  const inner = record(() => globs, keyCheck);
  const spec: Spec<Record<string, string[]>> = (node, path, ctx, at) => {
    if (node === null || (isMap(node) && node.items.length === 0)) return report(ctx, node ?? at, path, `must not be empty; e.g. ${example}`);
    const r = inner(node, path, ctx, at);
    if (!r || !fold) return r;
    const out: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(r)) (out[fold(k)] ??= []).push(...v);
    return out;
  };
  spec.nullable = true;
  return spec;
}
const httpQuery = globMap('{ limit: "1*" }', () => undefined);
const httpHeaders = globMap('{ x-env: prod }', (k) => (TOKEN.test(k) ? undefined : `${JSON.stringify(k)} is not a valid header name`), (k) => k.toLowerCase());
const httpBody = globMap(`{ '$.amount': '1*' }`, (k) => {
  const r = parseJsonPath(k);
  return 'error' in r ? r.error : undefined;
});

const condition = {
  kind: opt(list(kindName, true)),
  tables: opt(list(str(), true)),
  functions: opt(list(str(), true)),
  where: opt(oneOf(['absent', 'present'])),
  copy: opt(list(oneOf(['stdin', 'stdout', 'file', 'program']), true)),
  explain_analyze: opt(bool()),
  set_role: opt(bool()),
  dynamic: opt(bool()),
  changes_state: opt(bool()),
  commands: opt(list(str(), true)), // shell commands (SSH): program globs
  args: opt(list(str(), true)), // shell: argument globs
  writes: opt(list(str(), true)), // shell: path globs
  pipe_to_shell: opt(bool()), // shell: `curl … | sh`
  methods: opt(list(methodName, true)), // http: GET, POST, … (any case)
  paths: opt(list(str(checkPathGlob), true)), // http: globs on the normalised path
  query: opt(httpQuery), // http: parameter → value globs
  headers: opt(httpHeaders), // http: header name → value globs
  body: opt(httpBody), // http: JSON path → value globs
  message: opt(str()),
  name: opt(str()),
};
const SQL_ONLY = ['tables', 'functions', 'where', 'copy', 'explain_analyze', 'set_role'] as const;
const SHELL_ONLY = ['commands', 'args', 'writes', 'pipe_to_shell'] as const;
const HTTP_ONLY = ['methods', 'paths', 'query', 'headers', 'body'] as const;
/** SSH session options of a policy; every field optional (an absent one abstains). */
const sshPolicy = object({
  shell: opt(oneOf(['allow', 'deny'])),
  sftp: opt(oneOf(['read_write', 'read_only', 'deny'])),
  forwarding: opt(object({ local: opt(bool()), remote: opt(bool()), agent: opt(bool()), x11: opt(bool()) })),
});
const ACTIONS = ['deny', 'review', 'allow'] as const;

/** Which sessions a policy or masking rule set applies to; every list given must match. */
const matchSpec = def(
  object({
    targets: opt(list(str(), true)),
    issuers: opt(list(str(), true)), // issuer names; absent: any issuer
    groups: opt(list(str(), true)),
    subs: opt(list(str(), true)),
    protocols: opt(list(protocolName, true)),
  }),
);
const ruleBody = object(condition);

/** `- deny: { kind: [drop], message: "..." }`: exactly one of deny, review, allow. */
const rule = (policy: string, index: number): Spec<PolicyRule> => (node, path, ctx, at) => {
  if (!isMap(node)) return report(ctx, node ?? at, path, `expected a rule such as { deny: { kind: [drop] } }, got ${describe(node)}`);
  const items = [...pairs(node, path, ctx)];
  if (items.length !== 1) return report(ctx, node, path, `a rule has exactly one of deny, review or allow, got ${items.length} keys`);
  const { k, key, value } = items[0]!;
  if (!(ACTIONS as readonly string[]).includes(k)) return report(ctx, key, path, `unknown rule action ${JSON.stringify(k)}${suggest(k, [...ACTIONS])}; use deny, review or allow`);
  const body = ruleBody(value, `${path}.${k}`, ctx, key);
  if (!body) return undefined;
  const { message, name, ...when } = body;
  const sql = SQL_ONLY.find((c) => when[c] !== undefined);
  const sh = SHELL_ONLY.find((c) => when[c] !== undefined);
  if (sql && sh) return report(ctx, value, `${path}.${k}`, `${sql} (SQL) and ${sh} (shell commands) never hold for the same statement; write two rules`);
  const http = HTTP_ONLY.find((c) => when[c] !== undefined);
  if (http && (sql || sh)) return report(ctx, value, `${path}.${k}`, `${sql ?? sh} (${sql ? 'SQL' : 'shell commands'}) and ${http} (HTTP requests) never hold for the same statement; write two rules`);
  if (http && when.kind && !when.kind.includes('http')) return report(ctx, value, `${path}.${k}`, `${http} matches only HTTP requests, but kind does not list http`);
  return { action: k as PolicyAction, name: name ?? `${policy}#${index + 1}`, when, ...(message && { message }) };
};

const policyItem: Spec<PolicyConfig> = (node, path, ctx, at) => {
  const nameNode = isMap(node) ? node.get('name') : undefined;
  const pname = typeof nameNode === 'string' ? nameNode : path;
  const rules: Spec<PolicyRule[]> = (n, p, c) => {
    if (!isSeq(n)) return report(c, n, p, `expected a list of rules, got ${describe(n)}`);
    const out: PolicyRule[] = [];
    let ok = true;
    n.items.forEach((item, i) => {
      const v = deref(c, item);
      const r = rule(pname, i)(v, `${p}[${i}]`, c, v);
      if (r) out.push(r);
      else ok = false;
    });
    return ok ? out : undefined;
  };
  return object(
    {
      name: req(str()),
      match: matchSpec, // default {}: every session
      read_only: def(bool(), false),
      rules: def(rules, []),
      ssh: opt(sshPolicy), // SSH session options (shell, sftp, forwarding)
    },
    (v, fail) => {
      if (!v.read_only && v.rules.length === 0 && !v.ssh) fail('rules', 'a policy needs rules, read_only: true or an ssh block');
    },
  )(node, path, ctx, at);
};

const STRATEGIES = ['redact', 'partial', 'hash', 'null'] as const;
/** Default strategy per detector: keep what helps a human recognise the value, drop what is a secret. */
const DETECTOR_DEFAULT: Record<string, (typeof STRATEGIES)[number]> = {
  credit_card: 'partial', email: 'partial', us_ssn: 'partial', phone: 'partial', iban: 'partial',
  aws_access_key: 'redact', jwt: 'redact', private_key: 'redact',
};
const detectorName = oneOf(DETECTOR_NAMES as readonly string[]);
/** `credit_card` or `{ name: credit_card, strategy: hash }`. */
const detectorRule: Spec<MaskDetectorRule> = (node, path, ctx, at) => {
  if (isScalar(node)) {
    const name = detectorName(node, path, ctx, at);
    return name === undefined ? undefined : { name, strategy: DETECTOR_DEFAULT[name] ?? 'redact' };
  }
  const r = object({ name: req(detectorName), strategy: opt(oneOf(STRATEGIES)) })(node, path, ctx, at);
  return r && { name: r.name, strategy: r.strategy ?? DETECTOR_DEFAULT[r.name] ?? 'redact' };
};
const maskingItem = object(
  {
    name: req(str()),
    match: matchSpec, // default {}: every session
    columns: def(list(object({ column: req(str()), strategy: def(oneOf(STRATEGIES), 'redact') })), []),
    fields: def(list(object({ path: req(str(jsonPathError)), strategy: def(oneOf(STRATEGIES), 'redact') })), []), // JSON paths (HTTP bodies)
    detectors: def(list(detectorRule), []),
    custom: def(list(object({ name: req(str()), pattern: req(str()), strategy: def(oneOf(STRATEGIES), 'redact') })), []),
    allow_binary_copy: def(bool(), false),
  },
  (v, fail) => {
    if (!v.columns.length && !v.fields.length && !v.detectors.length && !v.custom.length) {
      fail(null, 'a masking rule set needs columns, fields, detectors or custom patterns');
    }
  },
);

/** One listener: address, optional TLS, and whether tokens may cross plain TCP from non-loopback clients. */
export function listener<F extends Fields = {}>(defaultPort: number, more?: F) {
  return object({
    host: def(str(), '127.0.0.1'), // default 127.0.0.1
    port: def(int(0, 65535), defaultPort), // 0 picks a free port
    tls: opt(object({ cert: req(filePath()), key: req(filePath()) })), // both required if present
    allow_insecure_auth: def(bool(), false), // default false
    ...(more as F),
  });
}

const listenerSchemas = new Map<string, Spec<object>>();

/** Called by a protocol module when it is loaded: `listeners.<protocol>` uses `schema`. */
export function registerListenerSchema(protocol: string, schema: Spec<object>): void {
  listenerSchemas.set(protocol, schema);
}

/** `listeners`: the admin API's, and one per loaded protocol module (read when the config is loaded). */
const listeners: Spec<SluiceConfig['listeners']> = (node, path, ctx, at) => {
  const fields: Fields = { admin: opt(listener(6480)) }; // the admin API (HTTP, HTTPS with tls)
  for (const [protocol, spec] of listenerSchemas) fields[protocol] = opt(spec);
  return object(fields)(node, path, ctx, at) as SluiceConfig['listeners'] | undefined;
};
listeners.nullable = true;

const webhook = object({
  url: req(str((s) => (/^https?:\/\/[^\s]+$/.test(s) ? undefined : `expected an http:// or https:// URL, got ${JSON.stringify(s)}`))),
  secret: opt(secretRef), // HMAC-SHA256 key for the X-Sluice-Signature header
  format: def(oneOf(['json', 'slack']), 'json'), // slack: a Slack-compatible { text, blocks } message
  timeout: def(duration('ms', 100), '5s'),
  retries: def(int(0, 20), 5), // with exponential backoff from 0.5 s
});

const schema = object({
  state_dir: def(filePath(), './.sluice'), // default ./.sluice, relative to the config file's directory
  listeners: def(listeners), // default: no listeners
  admin: def(
    object({
      groups: def(list(str(), true), ['sluice-admins']), // identities in these groups may use the whole admin API
      public_metrics: def(bool(), false), // serve /metrics without a token (for a scraper on a private network)
    }),
  ),
  approvals: def(
    object({
      approvers: def(list(str(), true), ['sluice-approvers']), // groups whose members may approve or deny
      min_approvals: def(int(1, 10), 1), // distinct approvers a held statement needs
      timeout: def(duration('ms', 1000), '10m'), // a request not decided by then fails with a clear error
      fingerprint_window: def(duration('ms', 1000), '30m'), // how long a `fingerprint` approval lasts
      webhooks: def(list(webhook), []),
    }),
  ),
  identity: def(
    object({
      clock_skew: def(duration('s', 0), '30s'), // default 30 s
      sluice_issuer: def(
        object({
          enabled: def(bool(), true), // default true
          issuer: def(str(), 'sluice'), // default "sluice"
          audience: def(str(), 'sluice'), // default "sluice"
          max_ttl: def(duration('s', 1), '24h'), // default 24 h
        }),
      ),
      issuers: def(list(issuer), []), // default []
    }, (v, fail) => {
      const seen = new Map<string, number>();
      v.issuers.forEach((i, n) => {
        const prev = seen.get(i.name);
        if (prev !== undefined) {
          fail('issuers', `identity.issuers[${n}] and identity.issuers[${prev}] are both named "${i.name}" (a name defaults to the issuer URL's host): give each a distinct name`);
        } else if (RESERVED_ISSUER_NAMES.includes(i.name)) {
          fail('issuers', `identity.issuers[${n}]: the name "${i.name}" is reserved; set another name`);
        }
        seen.set(i.name, n);
      });
    }),
  ),
  targets: def(
    record(target, (k) => (/^[A-Za-z0-9_.-]+$/.test(k) ? undefined : `invalid target name ${JSON.stringify(k)}: use letters, digits, "_", "." and "-"`)),
  ), // default {}
  limits: def(
    object({
      max_message_bytes: def(size(1024, 1024 ** 3), '64MiB'), // default 64 MiB
      auth_timeout: def(duration('ms', 1), '15s'), // default 15 s
      startup_timeout: def(duration('ms', 1), '5s'), // default 5 s: first message (Postgres startup packet, SSH key exchange, HTTP request headers)
      max_unauthenticated: def(int(1, 1_000_000), 256), // default 256, across all listeners
      max_unauthenticated_per_source: def(int(1, 1_000_000), 32), // default 32, per client IPv4 address or IPv6 /64
    }),
  ),
  policies: def(list(policyItem), []),
  masking: def(list(maskingItem), []), // default []: no masking
  recording: def(
    object({
      enabled: def(bool(), true), // default true: every session is recorded
      master_key: opt(secretRef), // absent: generated into state_dir/keys/recording.key
      key_id: def(str(), 'k1'),
      old_keys: def(record(() => secretRef, () => undefined)), // default {}
      retention: def(duration('ms', 0), '30d'), // default 30 days; 0 keeps everything
      max_size: def(size(0, 2 ** 50), 0), // default 0: no size budget
      map_size: def(size(1 << 20, 2 ** 50), '8GiB'), // default 8 GiB
      on_failure: def(oneOf(['deny_new', 'continue_unrecorded']), 'deny_new'), // default deny_new
      page_cache: def(oneOf(['drop', 'keep']), 'drop'), // default drop: recordings are read rarely
    }),
  ), // default []: no statement policy
  policy: def(
    object({
      default: def(oneOf(['deny', 'allow']), 'deny'), // default deny: closed
      on_parse_error: def(oneOf(['deny', 'allow']), 'deny'), // default deny
    }),
  ),
  log: def(
    object({
      level: def(oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info'), // default info
      file: opt(filePath()), // absent: stdout
    }),
  ),
});

// ---------------------------------------------------------------------------

function validate(doc: Document, lc: LineCounter | undefined, sourcePath: string): SluiceConfig {
  const source = sourcePath ? resolve(sourcePath) : '';
  const baseDir = source ? dirname(source) : process.cwd();
  const ctx: Ctx = { doc, lc, baseDir, issues: [] };
  for (const e of doc.errors) {
    const pos = lc?.linePos(e.pos[0]);
    ctx.issues.push({ path: '', message: `YAML syntax error: ${e.message}`, ...(pos && { line: pos.line, column: pos.col }) });
  }
  let cfg;
  if (ctx.issues.length === 0) {
    const root = deref(ctx, doc.contents);
    cfg = schema(root, '', ctx, root);
  }
  if (!cfg || ctx.issues.length) {
    const issues = ctx.issues.map((i, n) => [i, n] as const);
    issues.sort(([a, m], [b, n]) => (a.line ?? Infinity) - (b.line ?? Infinity) || m - n);
    throw new ConfigError(sourcePath, issues.map(([i]) => i));
  }
  const result: SluiceConfig = { source, ...cfg };
  crossCheck(result, ctx);
  if (ctx.issues.length) throw new ConfigError(sourcePath, ctx.issues);
  return result;
}

/** Issuer names used in rules and match blocks must be configured (a typo would silently match nothing). */
function crossCheck(cfg: SluiceConfig, ctx: Ctx): void {
  const names = new Set([SLUICE_ISSUER_NAME, ...cfg.identity.issuers.map((i) => i.name)]);
  const known = [...names].map((n) => JSON.stringify(n)).join(', ');
  const nodeAt = (path: (string | number)[]) => (ctx.doc.getIn(path, true) as YNode | undefined) ?? null;
  for (const [tn, t] of Object.entries(cfg.targets)) {
    t.allow.forEach((r, i) => {
      const iss = parseRule(r).issuer;
      if (iss !== undefined && !names.has(iss)) {
        report(ctx, nodeAt(['targets', tn, 'allow', i]), `targets.${tn}.allow[${i}]`, `${JSON.stringify(iss)} in ${JSON.stringify(r)} is not a configured issuer name; the issuers are ${known} (identity.issuers[].name)`);
      }
    });
  }
  for (const [section, sets] of [['policies', cfg.policies], ['masking', cfg.masking]] as const) {
    sets.forEach((p, i) =>
      p.match.issuers?.forEach((n, j) => {
        if (!names.has(n)) report(ctx, nodeAt([section, i, 'match', 'issuers', j]), `${section}[${i}].match.issuers[${j}]`, `${JSON.stringify(n)} is not a configured issuer name; the issuers are ${known} (identity.issuers[].name)`);
      }),
    );
  }
}

/**
 * Things that are valid but probably not what was meant, for `sluice config check` and the
 * start log: rules naming a subject without an issuer when several issuers could issue it.
 */
function ruleWarnings(cfg: SluiceConfig): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  const issuers = [...(cfg.identity.sluice_issuer.enabled ? [SLUICE_ISSUER_NAME] : []), ...cfg.identity.issuers.map((i) => i.name)];
  const list = issuers.join(', ');
  if (issuers.length > 1) {
    for (const [tn, t] of Object.entries(cfg.targets)) {
      t.allow.forEach((r, i) => {
        const p = parseRule(r);
        if (p.issuer === undefined && p.kind === 'sub') {
          out.push({
            path: `targets.${tn}.allow[${i}]`,
            message: `${JSON.stringify(r)} admits that subject from every configured issuer (${list}); write "<issuer>/${r}" (e.g. "${issuers[0]}/${r}") to admit it from one issuer only`,
          });
        }
      });
    }
    for (const [section, sets] of [['policies', cfg.policies], ['masking', cfg.masking]] as const) {
      sets.forEach((p, i) => {
        if (p.match.subs && !p.match.issuers) {
          out.push({
            path: `${section}[${i}].match.subs`,
            message: `matches these subjects from every configured issuer (${list}); add match.issuers to restrict it to one issuer`,
          });
        }
      });
    }
  }
  if (!cfg.identity.sluice_issuer.enabled) {
    for (const [tn, t] of Object.entries(cfg.targets)) {
      t.allow.forEach((r, i) => {
        if (parseRule(r).issuer === SLUICE_ISSUER_NAME) out.push({ path: `targets.${tn}.allow[${i}]`, message: `${JSON.stringify(r)} matches nothing: Sluice's own issuer is disabled (identity.sluice_issuer.enabled: false)` });
      });
    }
  }
  return out;
}

/** Parse and validate sluice.yaml text. Paths resolve relative to dirname(sourcePath). Throws ConfigError. */
export function parseConfig(text: string, sourcePath: string): SluiceConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  return validate(doc, lineCounter, sourcePath);
}

/** Read, parse and validate a config file. Throws ConfigError for content problems. */
export async function loadConfig(path: string): Promise<SluiceConfig> {
  return parseConfig(await readFile(path, 'utf8'), path);
}

/**
 * Validate a config built in memory (plain JS object, same shape as the YAML).
 * Issues carry no line numbers. `sourcePath` ('' for none) anchors relative paths.
 */
export function configFromObject(obj: unknown, sourcePath: string): SluiceConfig {
  return validate(new Document(obj), undefined, sourcePath);
}

/** A setting that is valid but weakens a security default: logged at start and reload, shown by `sluice config check`. */
export interface ConfigWarning {
  path: string;
  target?: string;
  message: string;
}

/**
 * The explicit choices that let an impostor of a target read the session or a
 * credential: TLS to the target that is not verified (disable, prefer, require)
 * and, over such TLS, password methods that hand the server the password (or
 * its md5 hash).
 * Loopback targets are exempt: their traffic never leaves this machine.
 */
function tlsWarnings(cfg: SluiceConfig): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  for (const t of Object.values(cfg.targets)) {
    if (t.protocol !== 'postgres' || isLoopbackHost(t.host)) continue;
    const mode = t.tls.mode;
    const verified = mode === 'verify-ca' || mode === 'verify-full';
    if (!verified) {
      const what =
        mode === 'disable'
          ? 'the connection to the target is not encrypted'
          : mode === 'prefer'
            ? 'the connection to the target may be unencrypted, and its certificate is not verified'
            : "the target's certificate is not verified";
      out.push({
        path: `targets.${t.name}.tls.mode`,
        target: t.name,
        message: `tls.mode is ${mode}: ${what}, so anyone on the network path can read the session or impersonate the target; set tls.mode: verify-full (with tls.ca)`,
      });
    }
    const weak = t.auth.filter((m) => m !== 'scram-sha-256');
    if (weak.length && !verified) {
      const sends = weak.includes('password') ? 'the password itself' : weak.includes('md5') ? "the password's md5 hash" : 'no proof that the server is the target';
      out.push({
        path: `targets.${t.name}.auth`,
        target: t.name,
        message: `auth allows ${weak.join(', ')} over a connection whose server is not verified: an impostor that asks for ${weak.length > 1 ? 'one of them' : 'it'} gets ${sends}; use auth: [scram-sha-256], or tls.mode: verify-full`,
      });
    }
  }
  return out;
}

/** Every warning of a valid config: settings that weaken a security default, and doubtful rules. */
export function configWarnings(cfg: SluiceConfig): ConfigWarning[] {
  return [...tlsWarnings(cfg), ...ruleWarnings(cfg)];
}
