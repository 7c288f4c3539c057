// The HTTP gateway end to end with real clients (Node fetch, curl) against a
// real upstream on loopback: identity, injected credentials, routing, policy
// (deny, review with approval, retry grant), framing attacks, upstream failures,
// the kill switch, HTTP/2, websockets, recording, replay and HAR export.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import https from 'node:https';
import { BIN, startSluice, type Sluice } from './helpers/sluice.js';
import { issueCert, makeCA } from './helpers/certs.js';
import { startJsonApi } from './helpers/json-api.js';

const exec = promisify(execFile);

// ---- the upstream: a JSON API that checks its API key and remembers what it received
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}
const seen: Seen[] = [];
const API_KEY = 'sk_live_4242SECRETKEY';
const upstream = http.createServer((req, res) => {
  if (req.url === '/api/v1/die-upload') {
    // The upstream goes away while the client is still sending the body.
    req.once('data', () => req.socket.destroy());
    return;
  }
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    if (req.headers['x-api-key'] !== API_KEY) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end('{"error":"bad api key"}');
    }
    const u = new URL(req.url!, 'http://x');
    if (u.pathname === '/api/v1/echo-key') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-debug-key': `key=${req.headers['x-api-key']}` });
      return res.end('{}');
    }
    if (u.pathname === '/api/v1/slow') {
      // Streams for 20 s unless the request is ended.
      res.writeHead(200, { 'content-type': 'text/plain' });
      const iv = setInterval(() => res.write('tick\n'), 50);
      res.on('close', () => clearInterval(iv));
      setTimeout(() => (clearInterval(iv), res.end()), 20_000).unref();
      return;
    }
    if (u.pathname === '/api/v1/die') {
      // Headers and half a body, then the connection goes away.
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"partial":');
      setTimeout(() => req.socket.destroy(), 50);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, path: u.pathname, query: u.search, body }));
  });
});
// A websocket echo behind the same port.
const wss = new WebSocketServer({ server: upstream });
wss.on('connection', (ws, req) => {
  seen.push({ method: 'WS', url: req.url!, headers: req.headers, body: '' });
  ws.on('message', (m, bin) => ws.send(bin ? m : `echo: ${m}`, { binary: bin }));
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
t.teardown(() => {
  upstream.closeAllConnections();
  upstream.close();
});
const upPort = (upstream.address() as net.AddressInfo).port;
// A port nothing listens on: the target that is down.
const downPort = await new Promise<number>((r) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as net.AddressInfo).port;
    s.close(() => r(p));
  });
});

// An https upstream with its own CA that requires a client certificate (mTLS), and answers who it saw.
const pki = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-http-pki-'));
t.teardown(() => fs.rmSync(pki, { recursive: true, force: true }));
const upCA = makeCA(pki, 'Upstream CA');
const upCert = issueCert(upCA, pki, 'upstream', { dns: ['api.internal'], ip: ['127.0.0.1'] });
const clientCert = issueCert(upCA, pki, 'sluice-client', { dns: ['sluice-client'] });
const secure = https.createServer({ cert: fs.readFileSync(upCert.cert), key: fs.readFileSync(upCert.key), ca: fs.readFileSync(upCA.cert), requestCert: true, rejectUnauthorized: true }, (req, res) => {
  const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ tls: true, client: peer.subject?.CN, url: req.url }));
});
await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
t.teardown(() => {
  secure.closeAllConnections();
  secure.close();
});
const securePort = (secure.address() as net.AddressInfo).port;
// json-server checking Basic credentials, and one checking a query parameter.
const basicApi = await startJsonApi(t, { auth: { basic: { user: 'svc', password: 'basic-pw-123' } }, customers: 3 });
const queryApi = await startJsonApi(t, { auth: { query: ['api_key', 'q-key-456'] }, customers: 3 });

const gw: Sluice = await startSluice(t, {
  http: { tls: true, token_header: 'X-Sluice-Token', approval_wait: '2s', domain: 'gw.test' },
  admin: true,
  env: { PAY_KEY: API_KEY, BASIC_PW: 'basic-pw-123', Q_KEY: 'q-key-456' },
  config: {
    targets: {
      down: { protocol: 'http', url: `http://127.0.0.1:${downPort}`, allow: ['group:ci'] },
      secure: { protocol: 'http', url: `https://127.0.0.1:${securePort}/v2`, allow: ['group:ci'], tls: { ca: upCA.cert, servername: 'api.internal' }, inject: { client_cert: { cert: clientCert.cert, key: { file: clientCert.key } } } },
      unverified: { protocol: 'http', url: `https://127.0.0.1:${securePort}`, allow: ['group:ci'] },
      basic: { protocol: 'http', url: basicApi.url, allow: ['group:ci'], inject: { basic: { user: 'svc', password: { env: 'BASIC_PW' } } } },
      query: { protocol: 'http', url: queryApi.url, allow: ['group:ci'], inject: { query: { api_key: { secret: { env: 'Q_KEY' } } } } },
      pay: { protocol: 'http', url: `http://127.0.0.1:${upPort}/api`, allow: ['group:ci'], inject: { headers: { 'X-API-Key': { secret: { env: 'PAY_KEY' } } } } },
      other: { protocol: 'http', url: `http://127.0.0.1:${upPort}/api`, allow: ['group:other'], inject: { headers: { 'X-API-Key': { secret: { env: 'PAY_KEY' } } } } },
    },
    approvals: { approvers: ['leads'], timeout: '60s' },
    identity: { clock_skew: 0 },
    policies: [
      {
        name: 'payments',
        match: { targets: ['pay', 'down', 'secure', 'unverified', 'basic', 'query'] },
        rules: [
          { deny: { methods: ['DELETE'], message: 'deleting is not allowed through Sluice' } },
          { review: { paths: ['/v1/refunds/**'] } },
          { review: { paths: ['/v1/payouts/**'] } },
          { deny: { body: { '$.amount': '1?????*' }, message: 'amounts of 100000 and more go through finance' } },
          { allow: {} },
        ],
      },
    ],
  },
});
const base = `https://localhost:${gw.httpPort}`;
const caFile = gw.ca!.cert;
const token = await gw.mint('ci-nightly', ['ci']);
const lead = await gw.mint('lead-1', ['leads']);
const admin = await gw.mint('admin-1', ['sluice-admins']);

/** fetch through the gateway (TLS with the test CA, via undici's Agent). */
const { Agent, fetch: ufetch } = await import('undici');
const agent = new Agent({ connect: { ca: fs.readFileSync(caFile) } });
t.teardown(() => agent.close());
async function get(p: string, init: RequestInit & { token?: string | null } = {}): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const headers = new Headers(init.headers);
  if (init.token !== null) headers.set('authorization', `Bearer ${init.token ?? token}`);
  const r = await ufetch(`${base}${p}`, { ...init, headers, dispatcher: agent } as never);
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers as unknown as Headers, text, json };
}

async function api(method: string, p: string, tok: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`${gw.adminUrl}${p}`, { method, headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

t.test('identity: the caller token is verified and stripped; the real key is injected', async (t) => {
  seen.length = 0;
  const r = await get('/pay/v1/charges?limit=3');
  t.equal(r.status, 200);
  t.same(r.json, { method: 'GET', path: '/api/v1/charges', query: '?limit=3', body: '' });
  t.equal(seen.length, 1);
  t.equal(seen[0]!.headers['x-api-key'], API_KEY, 'the target key was injected');
  t.notOk(seen[0]!.headers.authorization, 'the caller token never reaches the upstream');
  t.notOk(JSON.stringify(seen[0]!.headers).includes(token), 'the token is nowhere in the upstream request');

  // Basic auth with the token as password (tools that only do Basic).
  const b = await get('/pay/v1/charges', { token: null, headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } });
  t.equal(b.status, 200);
  t.notOk(seen[1]!.headers.authorization);
});

t.test('identity: missing, bad, expired tokens and a token for another target are refused, nothing forwarded', async (t) => {
  seen.length = 0;
  const none = await get('/pay/v1/charges', { token: null });
  t.equal(none.status, 401);
  t.match(none.headers.get('www-authenticate'), /Bearer/);
  t.equal(none.headers.get('content-type'), 'application/problem+json');
  const bad = await get('/pay/v1/charges', { token: 'not.a.jwt' });
  t.equal(bad.status, 401);
  t.equal(bad.json.code, 'token_malformed');
  const expired = await gw.mint('ci-nightly', ['ci'], '1s');
  await new Promise((r) => setTimeout(r, 2100));
  const exp = await get('/pay/v1/charges', { token: expired });
  t.equal(exp.status, 401);
  t.equal(exp.json.code, 'token_expired');
  const other = await get('/other/v1/charges');
  t.equal(other.status, 403);
  t.match(other.json.detail, /not allowed to use target "other"/);
  const unknown = await get('/nope/v1/charges');
  t.equal(unknown.status, 404);
  t.equal(seen.length, 0, 'the upstream saw none of them');
});

t.test('a response header that echoes the injected secret is masked', async (t) => {
  const r = await get('/pay/v1/echo-key');
  t.equal(r.status, 200);
  t.equal(r.headers.get('x-debug-key'), 'key=[redacted]');
});

t.test('policy: deny answers 403 problem+json naming policy and rule; nothing forwarded', async (t) => {
  seen.length = 0;
  const r = await get('/pay/v1/charges/ch_1', { method: 'DELETE' });
  t.equal(r.status, 403);
  t.equal(r.headers.get('content-type'), 'application/problem+json');
  t.equal(r.json.policy, 'payments');
  t.equal(r.json.rule, 'payments#1');
  t.match(r.json.detail, /deleting is not allowed through Sluice/);
  t.equal(seen.length, 0);
});

t.test('policy: review holds the request until an approver decides; it then runs once', async (t) => {
  seen.length = 0;
  const pending = get('/pay/v1/refunds/r_1', { method: 'POST', body: '{"amount":5}', headers: { 'content-type': 'application/json' } });
  let id: string | undefined;
  for (let i = 0; i < 100 && !id; i++) {
    const list = await api('GET', '/api/approvals', lead);
    id = (list.body.approvals as { id: string; protocol: string; status: string }[]).find((a) => a.protocol === 'http' && a.status === 'pending')?.id;
    if (!id) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(id, 'the request waits as an approval');
  t.equal(seen.length, 0, 'nothing forwarded while held');
  t.equal((await api('POST', `/api/approvals/${id}/approve`, lead, { reason: 'ok' })).status, 200);
  const r = await pending;
  t.equal(r.status, 200);
  t.same(r.json, { method: 'POST', path: '/api/v1/refunds/r_1', query: '', body: '{"amount":5}' });
  t.equal(seen.length, 1, 'forwarded exactly once');
});

t.test('identity revoked: in-flight requests end within 1 s, a bystander goes on', async (t) => {
  const victim = await gw.mint('victim', ['ci']);
  const bystander = await gw.mint('bystander', ['ci']);
  const { request } = await import('node:https');
  const open = (tok: string) =>
    new Promise<{ ended: Promise<number>; bytes: () => number }>((resolve, reject) => {
      let n = 0;
      const req = request(`${base}/pay/v1/slow`, { ca: fs.readFileSync(caFile), headers: { authorization: `Bearer ${tok}` } }, (res) => {
        const ended = new Promise<number>((done) => {
          res.on('data', (d: Buffer) => (n += d.length));
          res.on('close', () => done(Date.now()));
          res.on('error', () => done(Date.now()));
        });
        resolve({ ended, bytes: () => n });
      });
      req.on('error', reject);
      req.end();
    });
  const v = await open(victim);
  const b = await open(bystander);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  const rv = await api('POST', '/api/revocations', admin, { sub: 'victim', issuer: 'any', reason: 'offboarded' });
  t.equal(rv.status, 201);
  const endedAt = await v.ended;
  t.ok(endedAt - t0 < 1000, `victim's request ended in ${endedAt - t0} ms`);
  const before = b.bytes();
  await new Promise((r) => setTimeout(r, 300));
  t.ok(b.bytes() > before, 'the bystander still streams');
  const again = await get('/pay/v1/charges', { token: victim });
  t.equal(again.status, 403);
  t.equal(again.json.code, 'token_revoked');
});

t.test('upstream failures: a clean 502, and a truncated body is never complete-looking', async (t) => {
  const down = await get('/down/v1/x');
  t.equal(down.status, 502);
  t.match(down.json.detail, /target "down" .* failed: .*ECONNREFUSED/);

  // Dying while the client uploads: nothing was answered yet, so the client gets a clean 502.
  // Under 1 MiB: a rule reads JSON bodies, so bodies are read whole up to listeners.http.max_policy_body first.
  const big = JSON.stringify({ pad: 'x'.repeat(512 << 10) });
  const up = await get('/pay/v1/die-upload', { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
  t.equal(up.status, 502);
  t.equal(up.headers.get('content-type'), 'application/problem+json');

  // Dying mid-response: the head is out, so the client must see the body cut short (fetch rejects).
  await t.rejects(get('/pay/v1/die'));
  const log = await gw.waitForLog((l) => l.event === 'http.request' && l.path === '/v1/die');
  t.equal(log.outcome, 'upstream_error');
  t.equal(log.status, 200);
});

t.test('HTTP/2 and HTTP/1.1 over TLS with curl', async (t) => {
  for (const v of ['--http2', '--http1.1']) {
    const r = await exec('curl', ['-sS', v, '--cacert', caFile, '-H', `Authorization: Bearer ${token}`, '-w', '\\n%{http_version} %{http_code}', `${base}/pay/v1/charges?x=1`]);
    const [body, last] = r.stdout.split('\n');
    t.same(JSON.parse(body!), { method: 'GET', path: '/api/v1/charges', query: '?x=1', body: '' }, v);
    t.equal(last, v === '--http2' ? '2 200' : '1.1 200');
  }
});

t.test('websocket: relayed after the policy allows the path', async (t) => {
  const ws = new WebSocket(`wss://localhost:${gw.httpPort}/pay/v1/stream`, { ca: fs.readFileSync(caFile), headers: { authorization: `Bearer ${token}` } });
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const got = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
  ws.send('hello');
  t.equal(await got, 'echo: hello');
  ws.close();
  const up = seen.find((s) => s.method === 'WS');
  t.equal(up?.headers['x-api-key'], API_KEY);
  t.notOk(up?.headers.authorization);
});

t.test('recording: replay lists the requests; HAR export is valid JSON', async (t) => {
  const sub = 'recorded-job';
  const tok = await gw.mint(sub, ['ci']);
  await get('/pay/v1/charges?limit=1', { token: tok });
  await get('/pay/v1/charges/1', { token: tok, method: 'DELETE' });
  // The session ends with its connection: undici's agent keeps it; a fresh agent per test session would be cleaner.
  let id: string | undefined;
  for (let i = 0; i < 100 && !id; i++) {
    const r = await exec(process.execPath, [BIN, 'sessions', 'list', '--identity', sub, '--config', gw.configPath, '--json']);
    id = (JSON.parse(r.stdout) as { id: string }[])[0]?.id;
    if (!id) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(id);
  const replay = await exec(process.execPath, [BIN, 'replay', id!, '--no-wait', '--config', gw.configPath]);
  t.match(replay.stdout, /GET \/v1\/charges\?limit=1.*200/);
  t.match(replay.stdout, /DELETE \/v1\/charges\/1.*403/);
  const out = path.join(os.tmpdir(), `sluice-har-${process.pid}.har`);
  await exec(process.execPath, [BIN, 'export', id!, '--format', 'har', '--out', out, '--config', gw.configPath]);
  const har = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  t.equal(har.log.version, '1.2');
  t.ok(har.log.entries.length >= 2);
  t.notOk(JSON.stringify(har).includes(tok), 'the token is not in the recording');
});

t.test('routing by Host (<target>.<domain>), and the token in the configured header', async (t) => {
  seen.length = 0;
  const r = await exec('curl', ['-sS', '--cacert', caFile, '--connect-to', `pay.gw.test:${gw.httpPort}:127.0.0.1:${gw.httpPort}`, '-k', '-H', `X-Sluice-Token: ${token}`, `https://pay.gw.test:${gw.httpPort}/v1/charges`]);
  t.same(JSON.parse(r.stdout), { method: 'GET', path: '/api/v1/charges', query: '', body: '' });
  t.notOk(seen[0]!.headers['x-sluice-token'], 'the token header is stripped');
});

t.test('https upstream: verified with its CA and servername, client certificate injected (mTLS)', async (t) => {
  const ok = await get('/secure/who?x=1');
  t.equal(ok.status, 200);
  t.same(ok.json, { tls: true, client: 'sluice-client', url: '/v2/who?x=1' });
  const bad = await get('/unverified/who');
  t.equal(bad.status, 502, 'an upstream certificate Sluice cannot verify is refused');
  t.match(bad.json.detail, /certificate|self-signed|issuer/i);
});

t.test('injected Basic credentials and query parameters', async (t) => {
  const b = await get('/basic/customers/1');
  t.equal(b.status, 200);
  t.equal(b.json.id, 1);
  t.same(basicApi.sawSecret(token), []);
  const q = await get('/query/customers/2?_embed=orders');
  t.equal(q.status, 200);
  t.equal(q.json.id, 2);
  const got = queryApi.received.at(-1)!;
  t.match(got.url, /_embed=orders&api_key=q-key-456$/);
});

t.test('policy on JSON body fields', async (t) => {
  seen.length = 0;
  const big = await get('/pay/v1/transfers', { method: 'POST', body: '{"amount":150000}', headers: { 'content-type': 'application/json' } });
  t.equal(big.status, 403);
  t.match(big.json.detail, /go through finance/);
  const small = await get('/pay/v1/transfers', { method: 'POST', body: '{"amount":25}', headers: { 'content-type': 'application/json' } });
  t.equal(small.status, 200);
  t.equal(seen.length, 1, 'only the allowed one was forwarded');
});

t.test('approval past the wait: 403 with the id, then one retry with Sluice-Approval goes through', async (t) => {
  seen.length = 0;
  const body = '{"payout":7}';
  const first = await get('/pay/v1/payouts/p_9', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  t.equal(first.status, 403);
  const id = first.json.approval as string;
  t.ok(id, 'the problem names the approval');
  t.equal(first.headers.get('sluice-approval'), id);
  t.equal(seen.length, 0);
  const early = await get('/pay/v1/payouts/p_9', { method: 'POST', body, headers: { 'content-type': 'application/json', 'sluice-approval': id } });
  t.equal(early.status, 403, 'not approved yet');
  t.equal((await api('POST', `/api/approvals/${id}/approve`, lead, { reason: 'payout ok' })).status, 200);
  const changed = await get('/pay/v1/payouts/p_9', { method: 'POST', body: '{"payout":7000}', headers: { 'content-type': 'application/json', 'sluice-approval': id } });
  t.equal(changed.status, 403, 'a different body does not match the approval');
  const retry = await get('/pay/v1/payouts/p_9', { method: 'POST', body, headers: { 'content-type': 'application/json', 'sluice-approval': id } });
  t.equal(retry.status, 200);
  t.equal(seen.length, 1, 'forwarded once');
  const again = await get('/pay/v1/payouts/p_9', { method: 'POST', body, headers: { 'content-type': 'application/json', 'sluice-approval': id } });
  t.equal(again.status, 403);
  t.match(again.json.detail, /already used/);
});

t.test("a revoked identity's websocket closes within 1 s", async (t) => {
  const victim = await gw.mint('ws-victim', ['ci']);
  const ws = new WebSocket(`wss://localhost:${gw.httpPort}/pay/v1/stream`, { ca: fs.readFileSync(caFile), headers: { authorization: `Bearer ${victim}` } });
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
  const t0 = Date.now();
  t.equal((await api('POST', '/api/revocations', admin, { sub: 'ws-victim', issuer: 'any', reason: 'test' })).status, 201);
  const at = await closed;
  t.ok(at - t0 < 1000, `closed ${at - t0} ms after the revocation`);
});

t.test('metrics carry HTTP labels', async (t) => {
  const r = await fetch(`${gw.adminUrl}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
  const text = await r.text();
  t.match(text, /sluice_http_requests_total\{target="pay",method="GET",status="200"\} \d+/);
  t.match(text, /sluice_http_requests_total\{target="pay",method="DELETE",status="403"\} \d+/);
});
