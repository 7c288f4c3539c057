// The HTTP tests' real upstreams and clients, checked on their own (no Sluice):
// nginx static files (gzip, keep-alive) and as a keep-alive reverse proxy,
// json-server with and without its API key, the websocket echo server, and
// the clients (curl, Python requests, raw sockets). If these fail, the HTTP
// gateway tests that use them cannot be trusted either.
import t from 'tap';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { luhnValid, type FakeCustomer } from './helpers/fake-pii.js';
import { curl, pyRequest, pyRequests, rawHttp } from './helpers/http-clients.js';
import { JSON_API_KEY, startJsonApi } from './helpers/json-api.js';
import { startNginx } from './helpers/nginx.js';
import { startWsEcho } from './helpers/ws-echo.js';

const nginx = await startNginx(t);
const proxy = await startNginx(t, { proxyTo: nginx.port, proxyBuffers: '16 16k' });
const api = await startJsonApi(t);
const ws = await startWsEcho(t);
const base = `http://127.0.0.1:${nginx.port}`;

t.test('nginx: static JSON of fake customers with PII', async (t) => {
  const small = await curl([`${base}/small.json`]);
  t.equal(small.code, 0, small.stderr);
  t.equal(small.status, 200);
  t.equal(small.header('content-type'), 'application/json');
  t.ok(small.body.equals(nginx.files['small.json']!), 'body is the file');
  t.ok(small.body.length > 700 && small.body.length <= 1024, `small.json is ~1 KiB (${small.body.length} B)`);
  const c = small.json<{ customers: FakeCustomer[] }>().customers[0]!;
  t.match(c.email, /@example\.com$/);
  t.ok(luhnValid(c.card.number), 'card numbers pass Luhn');
  const large = await curl([`${base}/large.json`]);
  t.equal(large.status, 200);
  t.ok(large.body.length > 90 * 1024 && large.body.length <= 100 * 1024, `large.json is ~100 KiB (${large.body.length} B)`);
  t.equal((await curl([`${base}/nope.json`])).status, 404);
});

t.test('nginx: gzip (pre-compressed big file, on the fly for JSON) only when asked', async (t) => {
  const plain = await curl([`${base}/big.json`]);
  t.equal(plain.header('content-encoding'), undefined);
  t.equal(plain.body.length, nginx.files['big.json']!.length);
  const gz = await curl(['-H', 'Accept-Encoding: gzip', `${base}/big.json`]);
  t.equal(gz.header('content-encoding'), 'gzip');
  t.equal(gz.body.length, nginx.files['big.json.gz']!.length, 'gzip_static serves big.json.gz');
  t.ok(zlib.gunzipSync(gz.body).equals(nginx.files['big.json']!));
  const decoded = await curl(['--compressed', `${base}/large.json`]);
  t.equal(decoded.header('content-encoding'), 'gzip', 'large.json compressed on the fly');
  t.ok(decoded.body.equals(nginx.files['large.json']!), 'curl --compressed decodes it');
  const py = await pyRequest({ url: `${base}/big.json` });
  t.equal(py.status, 200, py.error ?? py.stderr);
  t.equal(py.header('content-encoding'), 'gzip', 'requests asks for gzip by default');
  t.ok(py.body.equals(nginx.files['big.json']!), 'and decodes it');
});

t.test('nginx: keep-alive (two pipelined requests, one connection, still open)', async (t) => {
  const req = (p: string) => `GET ${p} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
  const r = await rawHttp(nginx.port, req('/small.json') + req('/hello.txt'), { idleMs: 300 });
  t.equal(r.responses.length, 2, r.text.slice(0, 300));
  t.same(
    r.responses.map((x) => x.status),
    [200, 200],
  );
  t.ok(r.responses[0]!.body.equals(nginx.files['small.json']!));
  t.equal(r.responses[1]!.body.toString(), 'hello from nginx\n');
  t.notOk(r.closedByServer, 'the connection stays open');
});

t.test('nginx: malformed framing comes back as raw bytes', async (t) => {
  // Both Content-Length and Transfer-Encoding: nginx refuses the request (400) or serves it as chunked, never hangs.
  const r = await rawHttp(nginx.port, 'GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', { idleMs: 500 });
  t.ok(r.responses.length >= 1, r.text.slice(0, 300));
  t.match(String(r.responses[0]!.status), /^(200|400)$/);
  const bad = await rawHttp(nginx.port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', { idleMs: 500 });
  t.equal(bad.responses[0]?.status, 400);
  // The same request split across segments still works.
  const split = await rawHttp(nginx.port, ['GET /hello.', 'txt HTTP/1.1\r\nHo', 'st: x\r\n\r\n'], { idleMs: 300 });
  t.equal(split.responses[0]?.status, 200);
});

t.test('nginx as a keep-alive reverse proxy (the benchmark peer)', async (t) => {
  const r = await curl([`http://127.0.0.1:${proxy.port}/small.json`]);
  t.equal(r.status, 200, r.stderr + proxy.errorLog());
  t.ok(r.body.equals(nginx.files['small.json']!));
  const gz = await curl(['--compressed', `http://127.0.0.1:${proxy.port}/large.json`]);
  t.equal(gz.header('content-encoding'), 'gzip', 'encoding passes through');
  t.ok(gz.body.equals(nginx.files['large.json']!));
});

t.test('json-server: 401 without the key, data and records with it', async (t) => {
  api.reset();
  const no = await curl(['-H', 'Authorization: Bearer caller-token', `${api.url}/customers`]);
  t.equal(no.status, 401);
  t.same(no.json(), { error: 'missing or wrong API credential' });
  const wrong = await curl(['-H', 'X-API-Key: nope', `${api.url}/customers`]);
  t.equal(wrong.status, 401);
  const ok = await curl(['-H', `X-API-Key: ${JSON_API_KEY}`, `${api.url}/customers`]);
  t.equal(ok.status, 200, ok.stderr);
  const list = ok.json<FakeCustomer[]>();
  t.equal(list.length, 50);
  t.same(list[0], api.data.customers[0]);
  t.equal(list[0]!.card.number, '4111111111111111');
  t.ok(list.every((c) => luhnValid(c.card.number)));
  const one = await curl(['-H', `X-API-Key: ${JSON_API_KEY}`, `${api.url}/customers/7`]);
  t.equal(one.json<FakeCustomer>().id, 7);
  t.equal(api.received.length, 4, 'every request recorded, refused ones too');
  t.equal(api.received[0]!.headers.authorization, 'Bearer caller-token');
  t.equal(api.received[0]!.url, '/customers');
  t.equal(api.received[2]!.headers['x-api-key'], JSON_API_KEY);
  t.ok(api.received[2]!.rawHeaders.some(([k]) => k === 'X-API-Key'), 'raw header names keep their case');
  t.equal(api.sawSecret('caller-token').length, 1, 'sawSecret finds the token in a header');
  t.same(api.sawSecret('never-sent'), []);
});

t.test('json-server: writes, query filters, gzip, Python requests', async (t) => {
  api.reset();
  const key = { 'X-API-Key': JSON_API_KEY };
  const created = await pyRequest({ method: 'POST', url: `${api.url}/orders`, headers: key, json: { customerId: 3, total: 9.5, status: 'open' } });
  t.equal(created.status, 201, created.error ?? created.stderr);
  t.match(created.json(), { customerId: 3, total: 9.5 });
  t.same(api.received.at(-1)!.body, { customerId: 3, total: 9.5, status: 'open' }, 'the body is recorded');
  t.equal(api.data.orders.length, 100, 'the start data is not changed by writes');
  const q = await pyRequest({ url: `${api.url}/customers?email=${encodeURIComponent(api.data.customers[4]!.email)}`, headers: key, repeat: 3 });
  t.same(q.json<FakeCustomer[]>().map((c) => c.id), [5]);
  const all = await pyRequest({ url: `${api.url}/customers`, headers: key });
  t.equal(all.header('content-encoding'), 'gzip', 'express compresses bodies over 1 KiB when asked (requests asks)');
  t.equal(all.json<unknown[]>().length, 50);
  const bearer = await startJsonApi(t, { auth: { bearer: 'upstream-bearer' }, customers: 3 });
  t.equal((await curl([`${bearer.url}/customers`])).status, 401);
  t.equal((await curl(['-H', 'Authorization: Bearer upstream-bearer', `${bearer.url}/customers`])).json<unknown[]>().length, 3);
  const script = await pyRequests('import requests,sys; print(requests.get(sys.argv[1]).status_code)', [`${api.url}/customers`]);
  t.equal(script.stdout.trim(), '401', script.stderr);
});

t.test('websocket echo: text and binary come back; the server records them', async (t) => {
  ws.reset();
  const c = new WebSocket(`${ws.url}/chat?room=1`, { headers: { 'X-API-Key': 'k1' } });
  await new Promise((r, j) => (c.once('open', r), c.once('error', j)));
  const got: { data: Buffer; binary: boolean }[] = [];
  const two = new Promise<void>((r) =>
    c.on('message', (data, binary) => {
      got.push({ data: data as Buffer, binary });
      if (got.length === 2) r();
    }),
  );
  c.send('hello 4111111111111111');
  c.send(Buffer.from([0, 1, 2, 255]));
  await two;
  t.same(
    got.map((g) => [g.data.toString('hex'), g.binary]),
    [
      [Buffer.from('hello 4111111111111111').toString('hex'), false],
      ['000102ff', true],
    ],
  );
  c.close(4001, 'bye');
  await new Promise((r) => c.once('close', r));
  t.equal(ws.upgrades[0]!.url, '/chat?room=1');
  t.equal(ws.upgrades[0]!.headers['x-api-key'], 'k1');
  t.same(
    ws.messages.map((m) => m.binary),
    [false, true],
  );
  await t.resolves(async () => {
    for (let i = 0; i < 50 && !ws.closes.length; i++) await new Promise((r) => setTimeout(r, 20));
  });
  t.same(ws.closes[0], { conn: 0, code: 4001, reason: 'bye' });
  t.ok(ws.sawSecret('4111111111111111') && ws.sawSecret('k1'));
  t.notOk(ws.sawSecret('never-sent'));
  const plain = await curl([`http://127.0.0.1:${ws.port}/`]);
  t.equal(plain.status, 426, 'plain HTTP gets 426');
});
