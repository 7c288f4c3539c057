// The `http` policy domain: path normalisation (against the published
// path-confusion tricks), facts, rule conditions, the decision-cache key, and
// the config schema of the conditions.
import t from 'tap';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { ConfigError, parseConfig } from '../src/config/load.js';
import { PolicySet } from '../src/policy/engine.js';
import { httpAction, httpCacheKey, httpFacts, normalizePath, parseJsonPath, type HttpFacts, type HttpRequestInput } from '../src/policy/http/index.js';
import { projectJson, jsonPathValues } from '../src/policy/http/json-path.js';
import { analyzeShell } from '../src/policy/shell/facts.js';

t.test('normalizePath: path-confusion tricks', async (t) => {
  // [raw target, canonical path forwarded, decoded path rules see] or [raw, /error pattern/]
  const ok: [string, string, string][] = [
    ['/a/../b', '/b', '/b'],
    ['/a/%2e%2e/b', '/b', '/b'], // encoded dot-dot is still dot-dot
    ['/a/%2E%2E/b', '/b', '/b'],
    ['/a/.%2e/b', '/b', '/b'], // mixed forms
    ['/a/%2e./b', '/b', '/b'],
    ['/a/%2e/b', '/a/b', '/a/b'],
    ['/a/./b/../c', '/a/c', '/a/c'],
    ['//double', '//double', '//double'], // nothing else collapsed
    ['/a//b/', '/a//b/', '/a//b/'],
    ['/%252e%252e/x', '/%252e%252e/x', '/%2e%2e/x'], // decoded once: a literal "%2e", forwarded re-encoded
    ['/%25', '/%25', '/%'],
    ['/a/b/..', '/a/', '/a/'], // trailing dot segments leave the directory
    ['/a/b/.', '/a/b/', '/a/b/'],
    ['/a/%2e%2e', '/', '/'],
    ['', '/', '/'], // empty path is the root
    ['/', '/', '/'],
    ['/..', '/', '/'], // never above the root
    ['/../../../etc/passwd', '/etc/passwd', '/etc/passwd'],
    ['/a/../../..//b', '//b', '//b'],
    ['/%61dmin', '/admin', '/admin'], // unreserved characters decoded
    ['/v1/%7euser', '/v1/~user', '/v1/~user'],
    ['/caf%C3%A9', '/caf%C3%A9', '/café'], // UTF-8 kept, re-encoded upper-case
    ['/caf%c3%a9', '/caf%C3%A9', '/café'],
    ['/a%20b', '/a%20b', '/a b'],
    ['/a%3Fb', '/a%3Fb', '/a?b'], // an encoded '?' is data, forwarded encoded
    ['/a%23b', '/a%23b', '/a#b'],
    ['/a%22%3C%3E', '/a%22%3C%3E', '/a"<>'],
    ["/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="], // pchar stays raw
  ];
  for (const [raw, path, decoded] of ok) {
    const r = normalizePath(raw);
    t.same(r, { path, decoded, query: '' }, JSON.stringify(raw));
  }
  const bad: [string, RegExp][] = [
    ['/..;/', /';'.*Tomcat/], // Orange Tsai: nginx sees /..;/, Tomcat sees /../
    ['/app/..;/manager/html', /';'/],
    ['/a;jsessionid=1/b', /';'/],
    ['/a/%3b/b', /';'/], // an encoded ';' too
    ['/x;/../admin', /';'/], // even in a segment a later '..' removes
    ['/a%2fb', /encoded '\/'/],
    ['/a%2Fb', /encoded '\/'/],
    ['/a/..%2f..%2fetc', /encoded '\/'/],
    ['/a%5cb', /encoded '\\'/],
    ['/a%5C..%5Cb', /encoded '\\'/],
    ['/a\\..\\b', /a '\\'/],
    ['/a%00b', /control byte/],
    ['/a%0d%0aSet-Cookie:x', /control byte/], // CRLF injection
    ['/a%7f', /control byte/],
    ['/a\tb', /control character/],
    ['/a b', /raw space/],
    ['/ü', /raw non-ASCII/],
    ['/a%zz', /invalid percent-encoding/],
    ['/a%2', /invalid percent-encoding/],
    ['/a%', /invalid percent-encoding/],
    ['/%c0%ae%c0%ae/etc', /not valid UTF-8/], // overlong '.'
    ['/%c0%af', /not valid UTF-8/], // overlong '/'
    ['/%e0%80%ae', /not valid UTF-8/],
    ['/%ff', /not valid UTF-8/],
    ['/%ed%a0%80', /not valid UTF-8/], // a lone surrogate
    ['/a#frag', /fragment/],
    ['/a?x=1#frag', /fragment/],
    ['/a?x=\n', /control character/],
    ['http://evil/a', /does not start with '\/'/],
    ['*', /does not start with '\/'/],
    ['a/b', /does not start with '\/'/],
  ];
  for (const [raw, re] of bad) {
    const r = normalizePath(raw);
    t.ok('error' in r, `${JSON.stringify(raw)} is refused`);
    if ('error' in r) t.match(r.error, re, JSON.stringify(raw));
  }
  t.same(normalizePath('/v1/x?limit=3&a=%2e'), { path: '/v1/x', decoded: '/v1/x', query: 'limit=3&a=%2e' }, 'the query is split at the first ? and kept raw');
  t.same(normalizePath('/v1/x?a?b=/../c'), { path: '/v1/x', decoded: '/v1/x', query: 'a?b=/../c' }, 'no dot-segment processing in the query');
  t.same(normalizePath('/a/../b?'), { path: '/b', decoded: '/b', query: '' });
  // Canonical output is a fixed point: normalising it again changes nothing.
  for (const [raw] of ok) {
    const r = normalizePath(raw);
    if ('error' in r) continue;
    t.same(normalizePath(r.path), r, `idempotent on ${JSON.stringify(raw)}`);
  }
});

t.test('httpFacts', async (t) => {
  const f = httpFacts({
    method: 'post',
    path: '/v1/charges',
    query: 'limit=3&tag=a+b&tag=c%20d&flag',
    headers: [
      ['Content-Type', 'application/json'],
      ['X-Env', 'prod'],
      ['x-env', 'dev'],
    ],
    body: { amount: 10 },
  });
  t.equal(f.parse_error, undefined);
  t.equal(f.normalized, 'POST /v1/charges');
  const s = f.statements[0] as HttpFacts;
  t.match(s, { kind: 'http', method: 'POST', path: '/v1/charges', changes_state: true, tables_read: [], tables_written: [], functions: [], body: { amount: 10 } });
  t.same({ ...s.query }, { limit: ['3'], tag: ['a b', 'c d'], flag: [''] });
  t.same({ ...s.headers }, { 'content-type': ['application/json'], 'x-env': ['prod', 'dev'] });
  for (const m of ['GET', 'head', 'OPTIONS']) t.equal(httpFacts({ method: m, path: '/' }).statements[0]!.changes_state, false, `${m} does not change state`);
  for (const m of ['PUT', 'PATCH', 'DELETE', 'PROPFIND']) t.equal(httpFacts({ method: m, path: '/' }).statements[0]!.changes_state, true, `${m} changes state`);
  const o = httpFacts({ method: 'GET', path: '/x', headers: { 'x-http-method-override': 'delete' } }).statements[0] as HttpFacts;
  t.equal(o.method_override, 'DELETE');
  t.equal(o.changes_state, true, 'GET overridden to DELETE changes state');
  t.same(httpFacts({ method: 'GET', path: { error: 'nope' } }), { statements: [], parse_error: 'nope' });
  t.match(httpFacts({ method: 'GET', path: '/', query: 'a=%zz' }).parse_error, /percent-encoding/);
  t.equal(httpFacts({ method: 'GET', path: '/a b' }).normalized, 'GET /a%20b', 'normalized text is the canonical path');
  t.match(httpFacts({ method: 'GET', path: '/', headers: { 'set-cookie': ['a', 'b'], host: 'x', skip: undefined } }).statements[0]!, { headers: { 'set-cookie': ['a', 'b'], host: ['x'] } } as never, 'IncomingHttpHeaders shape');
});

/** A PolicySet from the YAML of `policies:` (and `policy:`). */
function policySet(yaml: string): PolicySet {
  const cfg = parseConfig(yaml, 'sluice.yaml');
  return new PolicySet(cfg.policies, cfg.policy);
}

function decide(set: PolicySet, req: HttpRequestInput) {
  const a = httpAction(set, req);
  return set.decide(a.text, a.analyze, a.cacheKey);
}

const PAYMENTS = `policies:
  - name: payments
    rules:
      - deny: { methods: [delete], message: "no deletes" }
      - deny: { paths: ['/admin/**'], message: "no admin" }
      - review: { methods: [POST], paths: ['/v1/charges'], body: { '$.amount': ['?????*', '-*'] }, message: "large or negative charge" }
      - deny: { paths: ['/v1/charges'], body: { '$.currency': [xxx, XXX] } }
      - review: { paths: ['/v1/customers/*/export'] }
      - deny: { headers: { X-Env: [prod*] }, methods: [PUT, PATCH] }
      - deny: { query: { debug: ['true', '1'] } }
      - allow: { methods: [GET], paths: ['/v1/**'] }
      - allow: { methods: [POST], paths: ['/v1/charges'], body: { '$.currency': [usd, eur] } }
      - allow: { methods: [put], paths: ['/v1/customers/*'], headers: { x-tenant: acme } }
      - allow: { methods: [GET], paths: ['/v1/search'], query: { account: [me] } }
      - allow: { methods: [POST], paths: ['/v1/batch'], body: { '$.items[*].sku': ['A-*'] } }
`;

t.test('decisions: methods, paths, query, headers, body', async (t) => {
  const set = policySet(PAYMENTS);
  const cases: [HttpRequestInput, string, string?][] = [
    [{ method: 'GET', target: '/v1/charges' }, 'allow', 'payments#8'],
    [{ method: 'get', target: '/v1/charges?limit=3' }, 'allow', 'payments#8'],
    [{ method: 'HEAD', target: '/v1/charges' }, 'allow', 'payments#8'], // HEAD passes as GET
    [{ method: 'GET', target: '/v1' }, 'allow', 'payments#8'], // /v1/** covers /v1
    [{ method: 'GET', target: '/v2/charges' }, 'deny', 'default'],
    [{ method: 'DELETE', target: '/v1/charges/ch_1' }, 'deny', 'payments#1'],
    [{ method: 'GET', target: '/admin/users' }, 'deny', 'payments#2'],
    [{ method: 'GET', target: '/v1/../admin/users' }, 'deny', 'payments#2'],
    [{ method: 'GET', target: '/v1/%2e%2e/admin' }, 'deny', 'payments#2'],
    [{ method: 'GET', target: '//admin//users' }, 'deny', 'payments#2'], // loose: slashes merged
    [{ method: 'GET', target: '/ADMIN/' }, 'deny', 'payments#2'], // loose: case, trailing '/'
    [{ method: 'GET', target: '/v1/..;/admin' }, 'deny', 'on_parse_error'],
    [{ method: 'GET', target: '/v1/a%2f..%2f..%2fadmin' }, 'deny', 'on_parse_error'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: 500, currency: 'usd' } }, 'allow', 'payments#9'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: 50000, currency: 'usd' } }, 'review', 'payments#3'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: -5, currency: 'usd' } }, 'review', 'payments#3'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: '50000', currency: 'usd' } }, 'review', 'payments#3'], // strings raw
    [{ method: 'POST', target: '/v1/charges', body: { amount: 5, currency: 'xxx' } }, 'deny', 'payments#4'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: 5, currency: 'gbp' } }, 'deny', 'default'],
    [{ method: 'POST', target: '/v1/charges', body: { amount: 5 } }, 'deny', 'default'], // absent path meets no allow
    [{ method: 'POST', target: '/v1/charges' }, 'deny', 'default'], // no body
    [{ method: 'POST', target: '/v1/charges', body_error: 'not JSON' }, 'deny', 'payments#4'], // unreadable body: deny rules hold
    [{ method: 'POST', target: '/v1/charges', body: [{ currency: 'usd' }] }, 'deny', 'default'],
    [{ method: 'GET', target: '/v1/customers/cu_1/export' }, 'review', 'payments#5'],
    [{ method: 'GET', target: '/v1/customers/cu_1/x/export' }, 'allow', 'payments#8'], // * is one segment
    [{ method: 'PUT', target: '/v1/customers/cu_1', headers: { 'x-tenant': 'acme' } }, 'allow', 'payments#10'],
    [{ method: 'PUT', target: '/v1/customers/cu_1', headers: { 'X-Tenant': 'acme', 'X-Env': 'production' } }, 'deny', 'payments#6'],
    [{ method: 'PUT', target: '/v1/customers/cu_1', headers: [['X-Env', 'dev'], ['x-env', 'prod-eu'], ['x-tenant', 'acme']] }, 'deny', 'payments#6'], // some value
    [{ method: 'PUT', target: '/v1/customers/cu_1', headers: [['x-tenant', 'acme'], ['x-tenant', 'evil']] }, 'deny', 'default'], // allow: every value
    [{ method: 'PUT', target: '/v1/customers/cu_1' }, 'deny', 'default'],
    [{ method: 'GET', target: '/v1/x?debug=true' }, 'deny', 'payments#7'],
    [{ method: 'GET', target: '/v1/x?debug=0&debug=1' }, 'deny', 'payments#7'],
    [{ method: 'GET', target: '/v1/x?DEBUG=1' }, 'deny', 'payments#7'], // loose: name case
    [{ method: 'GET', target: '/v1/x?debug=%74rue' }, 'deny', 'payments#7'], // decoded values
    [{ method: 'GET', target: '/v1/x?debug=%zz' }, 'deny', 'on_parse_error'],
    [{ method: 'GET', target: '/v1/search?account=me' }, 'allow', 'payments#8'],
    [{ method: 'POST', target: '/v1/batch', body: { items: [{ sku: 'A-1' }, { sku: 'A-2' }] } }, 'allow', 'payments#12'],
    [{ method: 'POST', target: '/v1/batch', body: { items: [{ sku: 'A-1' }, { sku: 'B-2' }] } }, 'deny', 'default'], // allow: every value
    [{ method: 'POST', target: '/v1/batch', body: { items: [] } }, 'deny', 'default'],
    [{ method: 'POST', target: '/v1/x', headers: { 'X-HTTP-Method-Override': 'DELETE' } }, 'deny', 'payments#1'], // override read
    [{ method: 'GET', target: '/v1/x', headers: { 'x-http-method-override': 'PUT' } }, 'deny', 'default'], // allow GET needs the override listed too
  ];
  for (const [req, action, rule] of cases) {
    const { decision } = decide(set, req);
    const name = `${req.method} ${req.target} ${JSON.stringify(req.headers ?? {})} ${JSON.stringify(req.body ?? req.body_error ?? '')}`;
    t.equal(decision.action, action, `${name} -> ${action}`, { decision });
    if (rule) t.equal(decision.rule, rule, `${name}: by ${rule}`, { decision });
  }
  t.equal(decide(set, { method: 'GET', target: '/v2/charges' }).decision.message, 'no policy rule allows GET /v2/charges (policy.default: deny)');
  t.equal(decide(set, { method: 'GET', target: '/v2/x?secret=1' }).decision.message, 'no policy rule allows GET /v2/x (policy.default: deny)', 'the query is not quoted');
  t.match(decide(set, { method: 'GET', target: '/v1/customers/c/export' }).decision.message, /review paths \/v1\/customers\/\*\/export \(policy "payments", rule "payments#5"\)/);
  t.match(decide(set, { method: 'POST', target: '/v1/charges', body: { currency: 'XXX' } }).decision.message, /deny paths \/v1\/charges; body \$\.currency=xxx\|XXX/);
  t.match(decide(set, { method: 'GET', target: '/a/..;/b' }).decision.message, /could not parse.*Tomcat/);
});

t.test('domains stay apart', async (t) => {
  const set = policySet(`policies:
  - name: p
    rules:
      - allow: { kind: [http] }
      - deny: { commands: [rm] }
      - deny: { tables: [secrets] }
      - allow: { methods: [GET] }
policy: { default: deny }
`);
  t.equal(decide(set, { method: 'DELETE', target: '/rm' }).decision.rule, 'p#1', 'kind: [http] matches requests; SQL and shell rules never do');
  const cmd = set.decide('ls', analyzeShell);
  t.equal(cmd.decision.rule, 'default', 'methods never match a shell command');
  const sh = set.decide('rm x', analyzeShell);
  t.equal(sh.decision.rule, 'p#2');
});

t.test('read_only denies what changes state', async (t) => {
  const set = policySet(`policies:
  - name: ro
    read_only: true
`);
  t.equal(decide(set, { method: 'GET', target: '/v1/x' }).decision.action, 'allow');
  t.equal(decide(set, { method: 'OPTIONS', target: '/v1/x' }).decision.action, 'allow');
  const post = decide(set, { method: 'POST', target: '/v1/x' }).decision;
  t.match(post, { action: 'deny', rule: 'ro#read_only', kind: 'http' });
  t.match(post.message, /read-only/);
  t.equal(decide(set, { method: 'DELETE', target: '/v1/x' }).decision.action, 'deny');
  t.equal(decide(set, { method: 'GET', target: '/v1/x', headers: { 'X-HTTP-Method-Override': 'DELETE' } }).decision.action, 'deny', 'a method override is not read-only');
  t.equal(decide(set, { method: 'GET', target: '/v1/x', headers: { 'X-HTTP-Method-Override': 'HEAD' } }).decision.action, 'allow');
});

t.test('decision cache key: referenced inputs only', async (t) => {
  const set = policySet(PAYMENTS);
  t.same(set.httpInputs, { headers: ['x-env', 'x-tenant'], bodyPaths: ['$.amount', '$.currency', '$.items[*].sku'] });
  const key = (r: HttpRequestInput) => httpAction(set, r).cacheKey;
  const base = { method: 'PUT', target: '/v1/customers/c1', headers: { 'x-tenant': 'acme', 'user-agent': 'a', authorization: 'Bearer t1' } };
  t.equal(key(base), key({ ...base, headers: { ...base.headers, 'user-agent': 'b', authorization: 'Bearer t2', 'x-request-id': '9' } }), 'unreferenced headers share the key');
  t.equal(key(base), key({ ...base, headers: { 'X-Tenant': 'acme' } }), 'header name case does not matter');
  t.not(key(base), key({ ...base, headers: { 'x-tenant': 'evil' } }), 'a referenced header value changes it');
  t.not(key(base), key({ ...base, headers: {} }), 'absent differs from present');
  t.not(key(base), key({ ...base, headers: { ...base.headers, 'x-http-method-override': 'DELETE' } }), 'method overrides always count');
  t.not(key(base), key({ ...base, target: '/v1/customers/c1?x=1' }), 'the query counts');
  t.equal(key(base), key({ ...base, target: '/v1/./customers/c1' }), 'the normalised path counts, not the raw one');
  const charge = { method: 'POST', target: '/v1/charges', body: { amount: 5, currency: 'usd', note: 'a', meta: { big: 'x'.repeat(1000) } } };
  t.equal(key(charge), key({ ...charge, body: { amount: 5, currency: 'usd', note: 'b' } }), 'unreferenced body fields share the key');
  t.not(key(charge), key({ ...charge, body: { amount: 6, currency: 'usd' } }), 'a referenced body value changes it');
  t.not(key(charge), key({ ...charge, body: { amount: '5', currency: 'usd' } }), '5 and "5" differ');
  t.not(key(charge), key({ ...charge, body: undefined }), 'no body differs');
  t.not(key(charge), key({ ...charge, body: undefined, body_error: 'x' }), 'an unreadable body differs');
  t.equal(key(charge), httpCacheKey(set, 'POST /v1/charges', { body: charge.body }), 'httpCacheKey agrees with httpAction');
  t.equal(httpAction(set, { method: 'GET', target: '/a;b' }).cacheKey, undefined, 'a refused path is cached under its text');

  // The cache is shared and sound: the second request is a hit (its analyzer never runs).
  const a = httpAction(set, { ...base, headers: { 'x-tenant': 'acme', 'user-agent': 'one' } });
  const r1 = set.decide(a.text, a.analyze, a.cacheKey);
  const b = httpAction(set, { ...base, headers: { 'x-tenant': 'acme', 'user-agent': 'two' } });
  let ran = false;
  const spy = Object.assign((text: string) => ((ran = true), b.analyze(text)), { cacheDomain: 'http' });
  const r2 = set.decide(b.text, spy, b.cacheKey);
  t.equal(ran, false, 'a cache hit');
  t.equal(r2, r1);
  t.same({ ...(r1.facts.statements[0] as HttpFacts).headers }, { 'x-tenant': ['acme'] }, 'cached facts hold only the referenced headers');
  const c = httpAction(set, { ...base, headers: { 'x-tenant': 'evil' } });
  t.equal(set.decide(c.text, c.analyze, c.cacheKey).decision.action, 'deny', 'a different referenced value is decided afresh');
  const big = httpAction(set, charge);
  t.same((set.decide(big.text, big.analyze, big.cacheKey).facts.statements[0] as HttpFacts).body, { amount: 5, currency: 'usd' }, 'cached facts hold only the referenced body values');
  // SQL/shell texts and HTTP texts never share a cache (a different domain).
  t.equal(set.decide('GET /v1/charges', analyzeShell).facts.statements[0]!.kind, 'command');
  t.equal(decide(set, { method: 'GET', target: '/v1/charges' }).facts.statements[0]!.kind, 'http');
});

t.test('JSON paths', async (t) => {
  t.same(parseJsonPath('$'), []);
  t.same(parseJsonPath(`$.a['b c'][2][*].*.d`), [{ key: 'a' }, { key: 'b c' }, { index: 2 }, { any: true }, { any: true }, { key: 'd' }]);
  for (const bad of ['a', '$.', '$[x]', '$..a', "$['a"]) t.ok('error' in (parseJsonPath(bad) as object), `${bad} is refused`);
  const body = { a: [{ b: 1 }, { b: 2, c: 3 }], __proto__x: 1, n: null };
  const steps = parseJsonPath('$.a[*].b') as never;
  t.same(jsonPathValues(body, steps), [1, 2]);
  t.same(jsonPathValues(body, parseJsonPath('$.n') as never), [null]);
  t.same(jsonPathValues(body, parseJsonPath('$.zz') as never), []);
  t.same(JSON.parse(JSON.stringify(projectJson(body, [steps]))), { a: [{ b: 1 }, { b: 2 }] });
  const proto = JSON.parse('{"__proto__": {"x": "1"}}');
  const p = parseJsonPath('$.__proto__.x') as never;
  t.same(jsonPathValues(proto, p), ['1'], 'an own __proto__ member is a member');
  t.same(jsonPathValues(projectJson(proto, [p]), p), ['1'], 'and survives projection');
});

t.test('config: http conditions and errors with lines', async (t) => {
  const cfg = parseConfig(
    `policies:
  - name: h
    rules:
      - allow: { methods: [get, Post], paths: ['/v1/**'], query: { limit: '1*' }, headers: { X-Env: [dev, 'test*'] }, body: { '$.a': x } }
`,
    'sluice.yaml',
  );
  t.same(cfg.policies[0]!.rules[0]!.when, { methods: ['GET', 'POST'], paths: ['/v1/**'], query: { limit: ['1*'] }, headers: { 'x-env': ['dev', 'test*'] }, body: { '$.a': ['x'] } });
  let err: ConfigError | undefined;
  try {
    parseConfig(
      `policies:
  - name: bad
    rules:
      - allow: { methods: [GTE] }
      - allow: { paths: ['v1/x'] }
      - allow: { paths: ['/v1/x?y=1'] }
      - deny: { headers: { 'bad header': x } }
      - deny: { body: { 'amount': x } }
      - deny: { query: {} }
      - deny: { tables: [t], methods: [GET] }
      - deny: { commands: [rm], paths: ['/x'] }
      - deny: { query: { a: [] } }
      - deny: { kind: [select], methods: [GET] }
`,
      'sluice.yaml',
    );
  } catch (e) {
    if (e instanceof ConfigError) err = e;
    else throw e;
  }
  t.ok(err, 'a ConfigError');
  const m = err!.message;
  t.match(m, /line 4: policies\[0\]\.rules\[0\]\.allow\.methods\[0\]: unknown HTTP method "GTE" \(did you mean "GET"\?\)/);
  t.match(m, /line 5: .*paths\[0\]: a path glob starts with '\/'/);
  t.match(m, /line 6: .*paths\[0\]: a path glob matches the path only/);
  t.match(m, /line 7: .*headers\.bad header: "bad header" is not a valid header name/);
  t.match(m, /line 8: .*body\.amount: a JSON path starts with '\$'/);
  t.match(m, /line 9: .*query: must not be empty/);
  t.match(m, /line 10: .*tables \(SQL\) and methods \(HTTP requests\) never hold for the same statement/);
  t.match(m, /line 11: .*commands \(shell commands\) and paths \(HTTP requests\) never hold/);
  t.match(m, /line 12: .*query\.a: must not be empty/);
  t.match(m, /line 13: .*methods matches only HTTP requests, but kind does not list http/);
});
