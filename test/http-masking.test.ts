// In-stream masking of HTTP responses with real upstreams and real clients:
// json-server (an API with PII behind an API key), nginx (static JSON, gzip),
// curl over HTTP/1.1 and HTTP/2, Python requests, Node fetch. Also: request
// bodies reach the upstream as sent but are masked in the recording; a body
// type Sluice cannot mask is refused, not passed through.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BIN, startSluice } from './helpers/sluice.js';
import { startJsonApi, JSON_API_KEY } from './helpers/json-api.js';
import { startNginx } from './helpers/nginx.js';
import { curl, pyRequest } from './helpers/http-clients.js';

const exec = promisify(execFile);
const api = await startJsonApi(t);
const nginx = await startNginx(t, { bigBytes: 3 << 20 });
fs.writeFileSync(path.join(nginx.root, 'blob.bin'), Buffer.from([0, 1, 2, 3, 0xff]));

const gw = await startSluice(t, {
  http: 'tls',
  env: { CRM_KEY: JSON_API_KEY },
  config: {
    targets: {
      crm: { protocol: 'http', url: api.url, allow: ['group:ci'], inject: { headers: { 'X-API-Key': { secret: { env: 'CRM_KEY' } } } } },
      files: { protocol: 'http', url: `http://127.0.0.1:${nginx.port}`, allow: ['group:ci'] },
    },
    masking: [
      {
        name: 'pii',
        match: { targets: ['crm', 'files'] },
        columns: [{ column: 'ssn', strategy: 'redact' }],
        fields: [{ path: '$[*].phone', strategy: 'partial' }],
        detectors: [
          { name: 'email', strategy: 'partial' },
          { name: 'credit_card', strategy: 'partial' },
        ],
      },
    ],
  },
});
const base = `https://localhost:${gw.httpPort}`;
const ca = gw.ca!.cert;
const token = await gw.mint('ci-report', ['ci']);
const auth = ['-H', `Authorization: Bearer ${token}`];

/** No raw PII value of the fake customers appears in `text`. */
function leaks(text: string): string[] {
  const out: string[] = [];
  for (const c of api.data.customers) {
    if (text.includes(c.email)) out.push(c.email);
    if (text.includes(c.card.number)) out.push(c.card.number);
    if (text.includes(c.ssn)) out.push(c.ssn);
  }
  return out;
}

t.test('JSON API: field rules, bare column rules and detectors, over HTTP/1.1 and HTTP/2 (curl)', async (t) => {
  for (const v of ['--http1.1', '--http2']) {
    const r = await curl([v, '--cacert', ca, ...auth, `${base}/crm/customers?_limit=10`]);
    t.equal(r.status, 200, v);
    t.equal(r.httpVersion, v === '--http2' ? '2' : '1.1');
    t.notOk(r.header('content-length'), 'no Content-Length once masking may change the body');
    const list = r.json<{ id: number; email: string; phone: string; ssn: string; card: { number: string }; name: string }[]>();
    t.equal(list.length, 10, 'the whole list arrives, shape intact');
    const c1 = list[0]!;
    const src = api.data.customers[0]!;
    t.equal(c1.name, src.name, 'unmasked fields are untouched');
    t.equal(c1.email, `****@${src.email.split('@')[1]}`, 'email detector, partial');
    t.equal(c1.card.number, '************1111', 'credit card detector, partial');
    t.equal(c1.ssn, '****', 'bare column rule ssn, redact');
    t.match(c1.phone, /^\+\*-\*\*\*-\*\*\*-\d{4}$/, 'field rule $[*].phone, partial: every digit but the last 4');
    t.same(leaks(r.text()), [], 'no raw PII anywhere in the body');
  }
});

t.test('Python requests and Node fetch see the same masked JSON', async (t) => {
  const py = await pyRequest({ url: `${base}/crm/customers/5`, headers: { authorization: `Bearer ${token}` }, verify: ca });
  t.equal(py.status, 200, py.error ?? '');
  const c5 = py.json<{ email: string; note: string }>();
  t.match(c5.email, /^\*\*\*\*@example\.com$/);
  t.notMatch(c5.note, /\d{16}/, 'a card inside free text is masked by the detector');
  t.same(leaks(py.text()), []);

  const { Agent, fetch } = await import('undici');
  const agent = new Agent({ connect: { ca: fs.readFileSync(ca) } });
  const r = await fetch(`${base}/files/large.json`, { headers: { authorization: `Bearer ${token}` }, dispatcher: agent });
  const text = await r.text();
  await agent.close();
  t.equal(r.status, 200);
  t.ok(JSON.parse(text).customers.length > 50, 'valid JSON');
  t.same(leaks(text), []);
});

t.test('gzip from nginx: decoded, masked, re-encoded; Content-Length dropped', async (t) => {
  const r = await curl(['--http1.1', '--cacert', ca, ...auth, '-H', 'Accept-Encoding: gzip', `${base}/files/big.json`]);
  t.equal(r.status, 200);
  t.equal(r.header('content-encoding'), 'gzip');
  t.notOk(r.header('content-length'), 'no Content-Length once the body changed');
  const plain = zlib.gunzipSync(r.body).toString('utf8');
  const doc = JSON.parse(plain);
  t.ok(doc.customers.length > 1000, `${doc.customers.length} customers, valid JSON after re-encoding`);
  t.same(leaks(plain), []);
  t.ok(plain.length > 2_500_000);
});

t.test('a body type Sluice cannot mask is refused (502), not passed through', async (t) => {
  const r = await curl(['--cacert', ca, ...auth, `${base}/files/blob.bin`]);
  t.equal(r.status, 502);
  t.match(r.text(), /cannot be masked/);
  t.match(r.text(), /allow_binary_copy/);
});

t.test('request bodies go up as sent, and are masked in the recording', async (t) => {
  const sub = 'ci-writer';
  const tok = await gw.mint(sub, ['ci']);
  const secretEmail = 'new.person.7781@example.net';
  const r = await curl(['--http1.1', '--cacert', ca, '-H', `Authorization: Bearer ${tok}`, '-H', 'Cookie: sid=SECRETCOOKIE123', '-H', 'content-type: application/json', '--data-binary', JSON.stringify({ name: 'New Person', email: secretEmail }), `${base}/crm/customers`]);
  t.equal(r.status, 201);
  const got = api.received.find((q) => q.method === 'POST');
  t.equal((got?.body as { email: string }).email, secretEmail, 'the upstream received the body as sent');
  t.equal(got?.headers['x-api-key'], JSON_API_KEY);
  t.same(api.sawSecret(tok), [], 'the caller token never reached the upstream');
  // The response echoes the new customer: masked on its way down.
  t.notMatch(r.text(), new RegExp(secretEmail.replace(/\./g, '\\.')));

  let id: string | undefined;
  for (let i = 0; i < 100 && !id; i++) {
    const l = await exec(process.execPath, [BIN, 'sessions', 'list', '--identity', sub, '--config', gw.configPath, '--json']);
    id = (JSON.parse(l.stdout) as { id: string }[])[0]?.id;
    if (!id) await new Promise((res) => setTimeout(res, 100));
  }
  t.ok(id, 'the session is recorded');
  const out = path.join(os.tmpdir(), `sluice-mask-${process.pid}.har`);
  await exec(process.execPath, [BIN, 'export', id!, '--format', 'har', '--out', out, '--config', gw.configPath]);
  const har = fs.readFileSync(out, 'utf8');
  fs.rmSync(out, { force: true });
  const entry = JSON.parse(har).log.entries[0];
  t.equal(entry.request.method, 'POST');
  t.match(entry.request.postData.text, /"email":"\*\*\*\*@example\.net"/, 'the recorded request body is masked');
  t.notOk(har.includes(secretEmail), 'the raw value is nowhere in the recording');
  t.notOk(har.includes(tok), 'nor is the token');
  t.notOk(har.includes('SECRETCOOKIE123'), 'nor a cookie the client sent');
});
