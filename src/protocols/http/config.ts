// The config schema of HTTP targets (`targets.<name>` with `protocol: http`) and of `listeners.http`.
import {
  allowRules,
  bool,
  def,
  duration,
  filePath,
  int,
  listener,
  object,
  oneOf,
  opt,
  record,
  registerListenerSchema,
  registerTargetSchema,
  req,
  secretRef,
  size,
  str,
} from '../../config/load.js';
import type { HttpTargetConfig } from '../../config/types.js';

/** RFC 9110 token: what a header name may be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const headerName = (k: string) => (TOKEN.test(k) ? undefined : `${JSON.stringify(k)} is not a valid header name`);
/** Headers Sluice owns on the way up: injecting them would desync the framing or the routing. */
const RESERVED = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection']);

const injected = object({
  secret: req(secretRef), // required: where the value comes from
  prefix: opt(str()), // e.g. "Bearer "
});

function upstreamUrl(s: string): string | undefined {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return `not a URL: ${JSON.stringify(s)}; expected e.g. https://payments.internal:8443/api`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `must be an http:// or https:// URL, got ${u.protocol}`;
  if (u.username || u.password) return 'must not carry a user or password: put the credential in inject (basic, headers) so it stays a secret reference';
  if (u.search || u.hash) return 'must not have a query or fragment: the caller supplies the query; inject.query adds parameters';
  return undefined;
}

const httpTargetFields = object(
  {
    protocol: req(oneOf(['http'])), // required
    url: req(str(upstreamUrl)), // required: upstream base URL
    tls: def(
      object({
        ca: opt(filePath()), // absent: system CAs
        servername: opt(str()), // absent: the URL's host
        insecure_skip_verify: def(bool(), false), // never verify-less by default
      }),
    ),
    timeout: def(duration('ms', 1), '30s'), // upstream response headers, and the longest pause in a body
    connect_timeout: def(duration('ms', 1), '10s'),
    allow: allowRules,
    inject: def(
      object({
        headers: def(record(() => injected, (k) => headerName(k) ?? (RESERVED.has(k.toLowerCase()) ? `${k} cannot be injected: Sluice sets it` : undefined))),
        query: def(record(() => injected, (k) => (k === '' ? 'must not be empty' : undefined))),
        basic: opt(object({ user: req(str()), password: req(secretRef) })),
        client_cert: opt(object({ cert: req(filePath()), key: req(secretRef) })),
      }),
    ),
  },
  (v, fail) => {
    const hasAuth = Object.keys(v.inject.headers).some((h) => h.toLowerCase() === 'authorization');
    if (v.inject.basic && hasAuth) fail('inject', 'set at most one of inject.basic and an injected Authorization header');
    if (v.inject.client_cert && v.url.startsWith('http:')) fail('inject', 'client_cert needs an https:// upstream url');
  },
);

/** The schema of an HTTP target; host, port, user and the URL's parts are derived from `url`. */
export const httpTarget = (name: string) => {
  const spec: typeof httpTargetFields = (node, path, ctx, at) => {
    const v = httpTargetFields(node, path, ctx, at);
    if (!v) return undefined;
    const u = new URL(v.url);
    const scheme = u.protocol === 'https:' ? 'https' : 'http';
    const t: HttpTargetConfig = {
      ...(v as Omit<HttpTargetConfig, 'name' | 'host' | 'port' | 'user' | 'base_path' | 'scheme'>),
      name,
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : scheme === 'https' ? 443 : 80,
      user: v.inject.basic?.user ?? '',
      base_path: u.pathname.replace(/\/+$/, ''),
      scheme,
    };
    return t as typeof v;
  };
  spec.nullable = true;
  return spec;
};

const domainName = (s: string) => (/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(s) ? undefined : `not a DNS name: ${JSON.stringify(s)}`);

registerTargetSchema('http', httpTarget);
registerListenerSchema(
  'http',
  listener(8443, {
    domain: opt(str(domainName)), // Host routing: <target>.<domain>
    token_header: opt(str(headerName)), // another header carrying the caller's token
    approval_wait: def(duration('ms', 0), '25s'), // a held request waits this long, then 403 with the approval id
    idle_timeout: def(duration('ms', 1000), '60s'),
    max_header_bytes: def(size(1024, 1 << 20), '16KiB'),
    max_policy_body: def(size(0, 64 << 20), '1MiB'), // bodies read whole when a rule looks into JSON bodies
  }),
);
