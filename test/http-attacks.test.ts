// Request smuggling and path confusion against the HTTP gateway: every
// ambiguous or malformed request gets 400 (or a policy refusal) and the
// upstream receives not one byte; the gateway keeps serving everyone else.
// Classes from PortSwigger's request-smuggling research and Orange Tsai's
// "Breaking Parser Logic".
import t from 'tap';
import net from 'node:net';
import { startSluice } from './helpers/sluice.js';

// The upstream counts every byte it receives: "nothing forwarded" means zero.
let received = 0;
let last = '';
const upstream = net.createServer((s) => {
  s.on('data', (d) => {
    received += d.length;
    last = d.toString('latin1');
    // A minimal valid answer, so the control requests succeed.
    s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
  });
  s.on('error', () => {});
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
t.teardown(() => upstream.close());
const upPort = (upstream.address() as net.AddressInfo).port;

const gw = await startSluice(t, {
  http: 'plain',
  tls: false,
  config: {
    targets: { api: { protocol: 'http', url: `http://127.0.0.1:${upPort}`, allow: ['*'] } },
    policies: [{ name: 'open', match: { targets: ['api'] }, rules: [{ allow: {} }] }],
  },
});
const token = await gw.mint('attacker', ['ci']);
const auth = `Authorization: Bearer ${token}\r\n`;

/** Sends exact bytes on a fresh connection; resolves with everything the gateway answered. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(gw.httpPort!, '127.0.0.1', () => s.write(bytes));
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    setTimeout(() => s.destroy(), 1500);
  });
}
const status = (out: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);

const FRAMING: Record<string, string> = {
  'CL.TE: Content-Length and Transfer-Encoding': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`,
  'TE.CL: Transfer-Encoding then Content-Length': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n`,
  'duplicate Content-Length': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
  'conflicting Content-Length': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`,
  'Content-Length list': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 3, 3\r\n\r\nabc`,
  'signed Content-Length': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: +3\r\n\r\nabc`,
  'obfuscated TE: xchunked': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
  'obfuscated TE: chunked, identity': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
  'obfuscated TE: identity, chunked': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n`,
  'obfuscated TE: space before colon': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
  'obfuscated TE: twice': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
  'TE on HTTP/1.0': `POST /api/x HTTP/1.0\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
  'bad chunk size': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\n\r\n5x\r\nabcde\r\n0\r\n\r\n`,
  'overflowing chunk size': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabcde\r\n0\r\n\r\n`,
  'chunk lines with bare LF': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\n\r\n5\nabcde\n0\n\n`,
  'obs-fold': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-A: b\r\n c\r\n\r\n`,
  'bare LF line endings': `GET /api/x HTTP/1.1\nHost: a\n${auth.replace('\r\n', '\n')}\n`,
  'bare LF in a header line': `GET /api/x HTTP/1.1\r\nHost: a\n${auth}\r\n`,
  'whitespace before the colon': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-A : b\r\n\r\n`,
  'CR inside a value': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-A: b\rc\r\n\r\n`,
  'NUL inside a value': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-A: b\x00c\r\n\r\n`,
  'two Host headers': `GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n${auth}\r\n`,
  'no Host on HTTP/1.1': `GET /api/x HTTP/1.1\r\n${auth}\r\n`,
  'absolute-form target': `GET http://evil.example/api/x HTTP/1.1\r\nHost: a\r\n${auth}\r\n`,
  'asterisk-form target': `OPTIONS * HTTP/1.1\r\nHost: a\r\n${auth}\r\n`,
  'invalid method': `G@T /api/x HTTP/1.1\r\nHost: a\r\n${auth}\r\n`,
  'X-HTTP-Method-Override': `POST /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n\r\n`,
  'X-Original-URL': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-Original-URL: /admin\r\n\r\n`,
  'X-Rewrite-URL': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-Rewrite-URL: /admin\r\n\r\n`,
  'oversized head': `GET /api/x HTTP/1.1\r\nHost: a\r\n${auth}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
};

for (const [name, bytes] of Object.entries(FRAMING)) {
  t.test(`framing: ${name}`, async (t) => {
    received = 0;
    const out = await raw(bytes);
    const st = status(out);
    t.ok(st === 400 || st === 431, `answered ${st}: ${out.split('\r\n')[0]}`);
    t.match(out, /application\/problem\+json/);
    t.equal(received, 0, 'the upstream received nothing');
  });
}

// Path confusion: the path is normalised once; what stays ambiguous is refused.
const PATHS: Record<string, string> = {
  'encoded slash': '/api/a%2f..%2fadmin',
  'encoded backslash': '/api/a%5c..%5cadmin',
  'raw backslash': '/api/a\\..\\admin',
  'Tomcat ..;/': '/api/..;/admin',
  'path parameter': '/api/a;jsessionid=1/b',
  'invalid percent-encoding': '/api/%zz',
  'overlong UTF-8 dot': '/api/%c0%ae%c0%ae/admin',
};
for (const [name, p] of Object.entries(PATHS)) {
  t.test(`path: ${name} is refused, not forwarded`, async (t) => {
    received = 0;
    const out = await raw(`GET ${p} HTTP/1.1\r\nHost: a\r\n${auth}\r\n`);
    const st = status(out);
    t.ok(st === 400 || st === 403, `answered ${st}`);
    t.equal(received, 0);
  });
}

t.test('dot segments are resolved once and forwarded in that form', async (t) => {
  last = '';
  const out = await raw(`GET /api/a/./b/../c/%2e%2e/d HTTP/1.1\r\nHost: a\r\n${auth}\r\n`);
  t.equal(status(out), 200);
  t.match(last, /^GET \/a\/d HTTP\/1\.1\r\n/);
});

t.test('the gateway keeps serving after all of that', async (t) => {
  const out = await raw(`GET /api/ok HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`);
  t.equal(status(out), 200);
});
