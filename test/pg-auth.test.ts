// Authentication and authorization as a psql / node-postgres user sees them:
// the exact FATAL message and SQLSTATE for every way a token can be refused,
// claim rules, an external issuer (jwks_file), client TLS, hot reload of the
// allow list, and the token never reaching the logs.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { createPrivateKey } from 'node:crypto';
import pg from 'pg';
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from 'jose';
import { withPostgres } from './helpers/pg-cluster.js';
import { execFile, spawn } from 'node:child_process';
import { BIN, ordersTarget, prepareOrders, psql, startSluice, TARGET_PASSWORD, type Sluice } from './helpers/sluice.js';
import { isLoopback } from '../src/gateway/listen.js';

const pgc = await withPostgres(t);
await prepareOrders(pgc);
await pgc.sql(`create table items (id int primary key, name text); insert into items values (1, 'one'), (2, 'two'); alter table items owner to app;`, 'orders');

// An external OIDC-style issuer whose keys Sluice reads from a JWKS file.
const EXT_ISS = 'https://idp.sluice-test.invalid';
const EXT_AUD = 'sluice-pg';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-auth-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const extKeys = await generateKeyPair('RS256', { extractable: true });
const jwksFile = path.join(tmp, 'jwks.json');
fs.writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(extKeys.publicKey)), kid: 'ext-1', alg: 'RS256', use: 'sig' }] }));

// clock_skew 0 so that a token minted with `--ttl 1s` is expired 2 s later.
const baseConfig = {
  identity: { clock_skew: '0s', issuers: [{ issuer: EXT_ISS, audience: EXT_AUD, jwks_file: jwksFile, algorithms: ['RS256'] }] },
  targets: { claimed: ordersTarget(pgc, { allow: ['claim:repository=org/app'] }) },
};
const gw = await startSluice(t, { cluster: pgc, config: baseConfig });
// `sluice token mint` is a node process each time: mint what the tests need up front, in parallel.
const [ciToken, ciToken2, internsToken, intruderToken, claimAppToken, claimOtherToken, dbaToken] = await Promise.all([
  gw.mint('ci', ['ci']),
  gw.mint('ci', ['ci']),
  gw.mint('ci', ['interns']),
  gw.mint('intruder', ['interns']),
  gw.mint('deploy-bot', [], '5m', ['--claim', 'repository=org/app']),
  gw.mint('deploy-bot', ['ci'], '5m', ['--claim', 'repository=org/other']),
  gw.mint('dba-person', ['dba']),
]);

/** Every token (good or bad) the tests hand to the gateway, for the log check at the end. */
const usedTokens: string[] = [ciToken, ciToken2, internsToken, intruderToken, claimAppToken, claimOtherToken, dbaToken];
const use = (tok: string) => (usedTokens.push(tok), tok);

const now = () => Math.floor(Date.now() / 1000);
const sluiceKey = () => createPrivateKey(fs.readFileSync(path.join(gw.dir, 'state', 'keys', 'signing-key.pem')));

/** Signs a token with Sluice's own key (so only the claim under test is wrong). */
async function sluiceSigned(claims: JWTPayload & { iss?: string; aud?: string | string[] }): Promise<string> {
  const c: JWTPayload = { iss: 'sluice', aud: 'sluice', sub: 'ci', groups: ['ci'], iat: now(), exp: now() + 300, ...claims };
  return use(await new SignJWT(c).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).sign(sluiceKey()));
}

async function externalToken(claims: JWTPayload): Promise<string> {
  const c: JWTPayload = { iss: EXT_ISS, aud: EXT_AUD, iat: now(), exp: now() + 300, ...claims };
  return use(await new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: 'ext-1', typ: 'JWT' }).sign(extKeys.privateKey));
}

/** Tries to connect with node-postgres; resolves with the error (or null if it connected). */
async function pgConnect(g: Sluice, password: string | (() => string), database = 'orders'): Promise<(Error & { code?: string; severity?: string; detail?: string }) | null> {
  const c = new pg.Client({
    host: g.host,
    port: g.port,
    user: 'ci',
    database,
    password: typeof password === 'function' ? async () => password() : password,
    ssl: g.ca ? { ca: fs.readFileSync(g.ca.cert), servername: 'localhost' } : false,
    connectionTimeoutMillis: 10_000,
  });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('select 1');
    await c.end();
    return null;
  } catch (err) {
    await c.end().catch(() => {});
    return err as Error & { code?: string };
  }
}

/**
 * The refusal as psql prints it, and the SQLSTATE node-postgres gets.
 * `fatal` is matched against the text after "FATAL:  " on psql's error line.
 */
async function assertRefused(
  t: Test,
  token: string,
  fatal: RegExp,
  sqlstate: string,
  opts: { db?: string; g?: Sluice } = {},
): Promise<void> {
  const g = opts.g ?? gw;
  const r = await psql(g, token, ['-Atc', 'select 1'], { conn: { dbname: opts.db ?? 'orders' } });
  t.equal(r.code, 2, 'psql exits with 2 (connection failed)');
  t.equal(r.stdout, '', 'no query ran');
  const line = r.stderr.split('\n').find((l) => l.includes('FATAL:'));
  t.ok(line, `psql prints a FATAL line: ${r.stderr.trim()}`);
  const m = /FATAL:  (.*)$/.exec(line ?? '');
  t.match(m?.[1] ?? '', fatal, 'psql FATAL message');
  const err = await pgConnect(g, token, opts.db ?? 'orders');
  t.ok(err, 'node-postgres is refused too');
  t.equal(err?.code, sqlstate, `SQLSTATE ${sqlstate}`);
  t.equal(err?.severity, 'FATAL');
  t.match(err?.message ?? '', fatal, 'node-postgres message');
}

// ---- raw wire helpers (protocol versions, direct TLS) -----------------------

interface BackendMsg {
  type: string;
  body: Buffer;
  fields?: Record<string, string>;
}

function parseBackend(buf: Buffer): BackendMsg[] {
  const out: BackendMsg[] = [];
  for (let i = 0; i + 5 <= buf.length; ) {
    const len = buf.readInt32BE(i + 1);
    if (i + 1 + len > buf.length) break;
    const msg: BackendMsg = { type: String.fromCharCode(buf[i]!), body: buf.subarray(i + 5, i + 1 + len) };
    if (msg.type === 'E' || msg.type === 'N') {
      msg.fields = {};
      for (let j = 0; j < msg.body.length && msg.body[j] !== 0; ) {
        const z = msg.body.indexOf(0, j + 1);
        msg.fields[String.fromCharCode(msg.body[j]!)] = msg.body.toString('utf8', j + 1, z);
        j = z + 1;
      }
    }
    out.push(msg);
    i += 1 + len;
  }
  return out;
}

function startupPacket(version: number, params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(version, 4);
  body.copy(out, 8);
  return out;
}

function typed(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
const passwordMessage = (pw: string) => typed('p', Buffer.from(pw + '\0'));
const queryMessage = (sql: string) => typed('Q', Buffer.from(sql + '\0'));

/** NegotiateProtocolVersion's body: the newest version (major << 16 | minor), then the unsupported options. */
function parseNpv(body: Buffer): { version: number; options: string[] } {
  const n = body.readInt32BE(4);
  const options = body.toString('utf8', 8).split('\0').slice(0, n);
  return { version: body.readInt32BE(0), options };
}

/** A raw client: reads whole backend messages in order. */
async function raw(g: Sluice) {
  const socket = net.connect({ host: g.host, port: g.port });
  await new Promise<void>((resolve, reject) => (socket.once('connect', resolve), socket.once('error', reject)));
  let buf = Buffer.alloc(0);
  const queue: BackendMsg[] = [];
  let wake: (() => void) | null = null;
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    for (const m of parseBackend(buf)) {
      queue.push(m);
      buf = buf.subarray(5 + m.body.length);
    }
    wake?.();
  });
  socket.on('error', () => {});
  socket.on('close', () => wake?.());
  const next = async (): Promise<BackendMsg> => {
    const deadline = Date.now() + 10_000;
    while (!queue.length) {
      if (socket.destroyed || Date.now() > deadline) throw new Error('no message from the gateway');
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
    return queue.shift()!;
  };
  const until = async (type: string): Promise<BackendMsg[]> => {
    const got: BackendMsg[] = [];
    for (;;) {
      const m = await next();
      got.push(m);
      if (m.type === type) return got;
    }
  };
  return {
    socket,
    write: (b: Buffer) => socket.write(b),
    next,
    until,
    /** Runs a simple query; the first column of each row. */
    async query(sql: string): Promise<string[]> {
      socket.write(queryMessage(sql));
      return (await until('Z')).filter((m) => m.type === 'D').map((m) => m.body.toString('utf8', 6, 6 + m.body.readInt32BE(2)));
    },
  };
}

/** A CancelRequest with a key of any length (4 bytes in protocol 3.0, up to 256 in 3.2). */
function cancelRequest(g: Sluice, pid: number, key: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const pkt = Buffer.alloc(12 + key.length);
    pkt.writeInt32BE(pkt.length, 0);
    pkt.writeInt32BE(80877102, 4);
    pkt.writeInt32BE(pid, 8);
    key.copy(pkt, 12);
    const s = net.connect({ host: g.host, port: g.port }, () => s.write(pkt));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

async function activeCount(app: string): Promise<number> {
  return Number((await pgc.sql(`select count(*) from pg_stat_activity where application_name = '${app}' and state = 'active'`)).trim());
}
async function waitActive(app: string): Promise<void> {
  for (let i = 0; i < 100 && (await activeCount(app)) !== 1; i++) await new Promise((r) => setTimeout(r, 100));
}

/** A TLS connection started directly (no SSLRequest), as sslnegotiation=direct does. */
function tlsConnect(g: Sluice, opts: tls.ConnectionOptions): Promise<{ socket: tls.TLSSocket; error?: Error }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: g.host, port: g.port, ...opts });
    socket.once('secureConnect', () => resolve({ socket }));
    socket.once('error', (error) => resolve({ socket, error }));
  });
}

function untilClosed(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.once('close', () => (clearTimeout(timer), resolve(Buffer.concat(chunks))));
  });
}

/** node-postgres with sslnegotiation=direct; resolves with the error, or null if a query ran. */
async function pgConnectDirect(g: Sluice, password: string, ssl: tls.ConnectionOptions): Promise<Error | null> {
  const c = new pg.Client({ host: g.host, port: g.port, user: 'ci', database: 'orders', password, ssl, sslnegotiation: 'direct', connectionTimeoutMillis: 10_000 } as pg.ClientConfig);
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('select 1');
    await c.end();
    return null;
  } catch (err) {
    return err as Error;
  }
}

const ISO = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`;

/** The real CLI; resolves with its exit code and output. */
function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** `sluice serve` until these listeners are up (then SIGTERM) or it exits on its own. */
function serveOnce(configPath: string, listeners = ['postgres', 'ssh']): Promise<{ started: boolean; code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'serve', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let started = false;
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    const onData = (c: Buffer) => {
      output += c;
      if (!started && listeners.every((l) => output.includes(`"event":"listener.start","protocol":"${l}"`))) {
        started = true;
        p.kill('SIGTERM');
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ started, code, output });
    });
  });
}

t.test('baseline: a minted token for an allowed group connects', async (t) => {
  const r = await psql(gw, ciToken, ['-Atc', 'select current_user, count(*) from items']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'app|2');
});

t.test('expired token', async (t) => {
  const tok = await sluiceSigned({ iat: now() - 3600, exp: now() - 600 });
  await assertRefused(t, tok, new RegExp(`^token expired at ${ISO} \\(now ${ISO}\\)$`), '28P01');
});

t.test('expired token minted by `sluice token mint --ttl 1s`', async (t) => {
  const tok = use(await gw.mint('ci', ['ci'], '1s'));
  await new Promise((r) => setTimeout(r, 2100));
  await assertRefused(t, tok, new RegExp(`^token expired at ${ISO} \\(now ${ISO}\\)$`), '28P01');
});

t.test('wrong audience', async (t) => {
  const tok = await sluiceSigned({ aud: 'some-other-service' });
  await assertRefused(t, tok, /^token audience some-other-service is not accepted by issuer "sluice" \(expected sluice\)$/, '28P01');
});

t.test('unknown issuer', async (t) => {
  const tok = await sluiceSigned({ iss: 'https://unknown-issuer.invalid' });
  await assertRefused(t, tok, /^token issuer "https:\/\/unknown-issuer\.invalid" is not configured \(identity\.issuers\)$/, '28P01');
});

t.test('bad signature (one character of the signature changed)', async (t) => {
  const [h, p, s] = ciToken2.split('.');
  // Change a character in the middle of the signature: every bit there is significant.
  const i = Math.floor(s!.length / 2);
  const tampered = use(`${h}.${p}.${s!.slice(0, i)}${s![i] === 'A' ? 'B' : 'A'}${s!.slice(i + 1)}`);
  await assertRefused(t, tampered, /^token signature does not verify with the keys of issuer "sluice"$/, '28P01');
});

t.test('a token whose claims were edited after signing', async (t) => {
  const [h, p, s] = internsToken.split('.');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
  claims.groups = ['dba'];
  const forged = use(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`);
  await assertRefused(t, forged, /^token signature does not verify with the keys of issuer "sluice"$/, '28P01');
});

t.test('garbage password', async (t) => {
  await assertRefused(t, use('hunter2-not-a-jwt'), /^the password is not a JWT: Invalid JWT$/, '28P01');
});

t.test('empty password', async (t) => {
  const msg = /^no token: send an identity token \(JWT\) as the password$/;
  // libpq never sends an empty password (it fails with "no password supplied"),
  // so psql is checked with a blank one, which Sluice trims to empty.
  const r = await psql(gw, '   ', ['-Atc', 'select 1']);
  t.equal(r.code, 2);
  t.match(r.stderr, /FATAL:  no token: send an identity token \(JWT\) as the password\n/);
  const err = await pgConnect(gw, () => '');
  t.equal(err?.code, '28P01');
  t.match(err?.message ?? '', msg);
});

t.test('a valid token whose identity is not in the allow list', async (t) => {
  await assertRefused(t, intruderToken, /^sub "intruder" is not allowed to use target "orders" \(targets\.orders\.allow\)$/, '28000');
  const denied = await gw.waitForLog((l) => l.event === 'auth.denied' && l.sub === 'intruder');
  t.same(denied.groups, ['interns']);
});

t.test('an unknown target (dbname=nope)', async (t) => {
  await assertRefused(t, ciToken, /^unknown target "nope": ask for one of the configured targets by database name$/, '3D000', { db: 'nope' });
});

t.test('a claim: rule admits a token with the claim and refuses one without', async (t) => {
  const r = await psql(gw, claimAppToken, ['-Atc', 'select current_user, current_database()'], { conn: { dbname: 'claimed' } });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'app|orders');
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.sub === 'deploy-bot');
  t.equal(open.target, 'claimed');

  await assertRefused(t, claimOtherToken, /^sub "deploy-bot" is not allowed to use target "claimed" \(targets\.claimed\.allow\)$/, '28000', { db: 'claimed' });
});

t.test('an external issuer configured with jwks_file admits its tokens', async (t) => {
  const tok = await externalToken({ sub: 'alice@example.com', groups: ['dba'] });
  const r = await psql(gw, tok, ['-Atc', 'select current_user, count(*) from items']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'app|2');
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.sub === 'alice@example.com');
  t.equal(open.issuer, EXT_ISS);
  t.same(open.groups, ['dba']);

  const nope = await externalToken({ sub: 'bob@example.com', groups: ['sales'] });
  await assertRefused(t, nope, /^sub "bob@example\.com" is not allowed to use target "orders"/, '28000');

  // Right issuer, wrong key: signed by a key that is not in the JWKS file.
  const rogue = await generateKeyPair('RS256');
  const forged = use(
    await new SignJWT({ iss: EXT_ISS, aud: EXT_AUD, sub: 'mallory', groups: ['dba'], exp: now() + 300 })
      .setProtectedHeader({ alg: 'RS256', kid: 'ext-1' })
      .sign(rogue.privateKey),
  );
  await assertRefused(t, forged, new RegExp(`^token signature does not verify with the keys of issuer "${EXT_ISS.replace(/\./g, '\\.')}"$`), '28P01');

  const wrongAud = await externalToken({ sub: 'alice@example.com', groups: ['dba'], aud: 'sluice' });
  await assertRefused(t, wrongAud, /^token audience sluice is not accepted by issuer "https:\/\/idp\.sluice-test\.invalid" \(expected sluice-pg\)$/, '28P01');
});

t.test('a client asking sslmode=require gets TLS', async (t) => {
  const r = await psql(gw, ciToken, ['-c', '\\conninfo'], { conn: { sslmode: 'require', application_name: 'tls-require' } });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.application === 'tls-require');
  t.equal(open.tls, true);
});

t.test('a gateway without TLS refuses sslmode=require and serves sslmode=disable over loopback', async (t) => {
  const plain = await startSluice(t, { cluster: pgc, tls: false });
  const tok = use(await plain.mint('ci', ['ci']));
  const req = await psql(plain, tok, ['-Atc', 'select 1'], { conn: { sslmode: 'require' } });
  t.equal(req.code, 2);
  t.match(req.stderr, /server does not support SSL, but SSL was required/);
  const dis = await psql(plain, tok, ['-Atc', 'select current_user'], { conn: { sslmode: 'disable', application_name: 'plain-loopback' } });
  t.equal(dis.code, 0, dis.stderr);
  t.equal(dis.stdout.trim(), 'app');
  const open = await plain.waitForLog((l) => l.event === 'session.open' && l.application === 'plain-loopback');
  t.equal(open.tls, false);

  // sslnegotiation=direct (TLS without SSLRequest) to a listener without TLS: refused, and the log says why.
  const direct = await pgConnectDirect(plain, tok, { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' });
  t.ok(direct, 'a direct-TLS client is refused');
  t.notMatch(direct?.message ?? '', /startup packet/);
  const refused = await plain.waitForLog((l) => l.event === 'connection.refused' && l.reason === 'direct_tls_without_tls');
  t.match(refused.msg, /started TLS directly \(sslnegotiation=direct\), but this listener has no TLS \(listeners\.postgres\.tls\)/);
  t.notOk(plain.logs().some((l) => /invalid startup packet length/.test(String(l.reason))), 'not logged as a malformed startup packet');
  t.notOk(plain.output().includes(tok), 'no token in that gateway\'s logs');
});

t.test('sslnegotiation=direct: TLS without SSLRequest, ALPN "postgresql" required', async (t) => {
  const ca = fs.readFileSync(gw.ca!.cert);
  // node-postgres 8 with sslnegotiation: 'direct' (ALPN postgresql), verify-full against the gateway's certificate.
  const c = new pg.Client({
    host: gw.host,
    port: gw.port,
    user: 'ci',
    database: 'orders',
    password: ciToken,
    application_name: 'direct-tls',
    ssl: { ca, servername: 'localhost', rejectUnauthorized: true },
    sslnegotiation: 'direct',
  } as pg.ClientConfig);
  await c.connect();
  t.same((await c.query('select current_user as u, count(*)::int as n from items')).rows, [{ u: 'app', n: 2 }]);
  t.equal(((c as unknown as { connection: { stream: tls.TLSSocket } }).connection.stream).alpnProtocol, 'postgresql', 'ALPN postgresql was negotiated');
  await c.end();
  const open = await gw.waitForLog((l) => l.event === 'session.open' && l.application === 'direct-tls');
  t.equal(open.tls, true);

  // Without ALPN the handshake completes, then the gateway refuses, as Postgres 17 does.
  const bare = await tlsConnect(gw, { ca, servername: 'localhost' });
  t.equal(bare.socket.alpnProtocol, false);
  const got = await untilClosed(bare.socket);
  t.equal(parseBackend(got)[0]?.fields?.C, '08P01');
  t.match(parseBackend(got)[0]?.fields?.M, /direct TLS connections must negotiate ALPN "postgresql"/);
  await gw.waitForLog((l) => l.event === 'tls.refused' && l.reason === 'no_alpn' && /ALPN/.test(String(l.msg)));

  // A different ALPN protocol: the TLS handshake fails with no_application_protocol.
  const other = await tlsConnect(gw, { ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  t.match(other.error?.message ?? '', /no application protocol/);

  // TLS after SSLRequest still works, with or without ALPN (psql 15 offers none).
  const r = await psql(gw, ciToken, ['-Atc', 'select 1'], { conn: { sslmode: 'require' } });
  t.equal(r.code, 0, r.stderr);
});

t.test('plaintext sent behind an SSLRequest, before the answer, is refused, never read as if encrypted', async (t) => {
  const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const inj = await raw(gw);
  inj.write(Buffer.concat([sslRequest, startupPacket(0x30000, { user: 'ci', database: 'orders' })]));
  const answer = await untilClosed(inj.socket);
  t.equal(answer[0], 0x45, 'an ErrorResponse, not S');
  t.equal(parseBackend(answer)[0]?.fields?.M, 'protocol violation: unencrypted data after the SSLRequest (possible injection attempt)');
});

t.test('protocol versions: 3.2 with its long cancel keys, newer minors and _pq_ options negotiated the way libpq 18 reads them', async (t) => {
  // libpq 18's checks of NegotiateProtocolVersion (fe-protocol3.c), on what it sent.
  const libpqAccepts = (sent: number, sentOptions: string[], npv: { version: number; options: string[] }): string | null => {
    if (npv.version > sent) return 'server requested downgrade to a higher-numbered version';
    if (npv.version < 0x30000) return 'server requested downgrade to pre-3.0 protocol version';
    if (npv.version === 0x30001) return 'server requested downgrade to non-existent 3.1 protocol version';
    if (npv.version === sent && npv.options.length === 0) return 'server negotiated but asks for no changes';
    for (const o of npv.options) if (!o.startsWith('_pq_.') || !sentOptions.includes(o)) return `unexpected option ${o}`;
    return null;
  };
  const V30 = 0x30000;
  const V32 = 0x30002;
  const cases: { name: string; version: number; options: string[]; npv: { version: number; options: string[] } | null; keyBytes: number }[] = [
    { name: '3.2', version: V32, options: [], npv: null, keyBytes: 32 },
    { name: '3.2 with _pq_.x', version: V32, options: ['_pq_.x'], npv: { version: V32, options: ['_pq_.x'] }, keyBytes: 32 },
    { name: '3.0 with _pq_.a', version: V30, options: ['_pq_.a'], npv: { version: V30, options: ['_pq_.a'] }, keyBytes: 4 },
    { name: '3.3', version: 0x30003, options: [], npv: { version: V32, options: [] }, keyBytes: 32 },
    { name: '3.9 with two _pq_ options', version: 0x30009, options: ['_pq_.a', '_pq_.b'], npv: { version: V32, options: ['_pq_.a', '_pq_.b'] }, keyBytes: 32 },
    { name: '3.0', version: V30, options: [], npv: null, keyBytes: 4 },
  ];
  for (const k of cases) {
    const s = await raw(gw);
    const params: Record<string, string> = { user: 'ci', database: 'orders', application_name: `proto-${k.name}` };
    for (const o of k.options) params[o] = 'on';
    s.write(startupPacket(k.version, params));
    const first = await s.next();
    if (k.npv) {
      t.equal(first.type, 'v', `${k.name}: NegotiateProtocolVersion`);
      const npv = parseNpv(first.body);
      t.same(npv, k.npv, `${k.name}: names ${k.npv.version >> 16}.${k.npv.version & 0xffff} and the unsupported options`);
      t.equal(libpqAccepts(k.version, k.options, npv), null, `${k.name}: libpq 18 accepts it`);
    } else {
      t.equal(first.type, 'R', `${k.name}: no NegotiateProtocolVersion`);
    }
    const auth = k.npv ? await s.next() : first;
    t.equal(auth.type, 'R');
    t.equal(auth.body.readInt32BE(0), 3, `${k.name}: asked for the token`);
    s.write(passwordMessage(ciToken));
    const hello = await s.until('Z');
    t.same(hello.filter((m) => m.type === 'E'), [], `${k.name}: logged in`);
    const key = hello.find((m) => m.type === 'K')!;
    t.equal(key.body.length, 4 + k.keyBytes, `${k.name}: BackendKeyData has a ${k.keyBytes}-byte secret`);
    const rows = await s.query('select pg_backend_pid()');
    t.equal(Number(rows[0]), key.body.readInt32BE(0), `${k.name}: the BackendKeyData pid is pg_backend_pid()`);

    if (k.name === '3.2') {
      // Cancel with a 3.2 key: a forged key (last byte changed, or only its first 4 bytes) does nothing; the right one cancels.
      const pid = key.body.readInt32BE(0);
      const secret = key.body.subarray(4);
      s.write(queryMessage('select pg_sleep(60)'));
      await waitActive('proto-3.2');
      const forged = Buffer.from(secret);
      forged[forged.length - 1] ^= 1;
      await cancelRequest(gw, pid, forged);
      await cancelRequest(gw, pid, secret.subarray(0, 4));
      await new Promise((r) => setTimeout(r, 500));
      t.equal(await activeCount('proto-3.2'), 1, 'forged 3.2 cancel keys do nothing');
      const sent = Date.now();
      await cancelRequest(gw, pid, secret);
      const res = await s.until('Z');
      t.equal(res.find((m) => m.type === 'E')?.fields?.C, '57014', 'the right key cancels');
      t.ok(Date.now() - sent < 2000, `cancelled in ${Date.now() - sent} ms`);
    }
    s.write(Buffer.from([0x58, 0, 0, 0, 4]));
    s.socket.end();
  }

  // Protocol 4 is refused.
  const s = await raw(gw);
  s.write(startupPacket(0x40000, { user: 'ci', database: 'orders' }));
  const e = await s.next();
  t.equal(e.fields?.C, '0A000');
  s.socket.destroy();
});

t.test('isLoopback (a non-loopback client cannot be produced in tests)', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) t.equal(isLoopback(a), true, a);
  for (const a of ['10.0.0.1', '192.168.1.10', '::ffff:10.0.0.1', '2001:db8::1', '::', '0.0.0.0', '', undefined]) t.equal(isLoopback(a), false, String(a));
});

t.test('hot reload: the allow list changes for new connections, live sessions keep working', async (t) => {
  const live = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: ciToken, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  await live.connect();
  t.teardown(() => live.end().catch(() => {}));
  t.equal((await live.query('select count(*)::int as n from items')).rows[0].n, 2);

  await gw.reload({ ...baseConfig, targets: { ...baseConfig.targets, orders: ordersTarget(pgc, { allow: ['group:dba'] }) } });
  try {
    // The live session is untouched...
    t.equal((await live.query('select current_user as u')).rows[0].u, 'app', 'live session still works');
    // ...while a new connection by ci is refused,
    await assertRefused(t, ciToken, /^sub "ci" is not allowed to use target "orders" \(targets\.orders\.allow\)$/, '28000');
    // and one by a dba gets in.
    const r = await psql(gw, dbaToken, ['-Atc', 'select 1']);
    t.equal(r.code, 0, r.stderr);
    t.equal((await live.query('select 2 as two')).rows[0].two, 2, 'live session still works after the refusals');
  } finally {
    await gw.reload(baseConfig);
  }
  const back = await psql(gw, ciToken, ['-Atc', 'select 1']);
  t.equal(back.code, 0, `ci allowed again after restoring the config: ${back.stderr}`);
});

t.test('a token issued in the future is refused (iat beyond the clock skew)', async (t) => {
  const tok = await sluiceSigned({ iat: now() + 86400, exp: now() + 86400 + 300 });
  await assertRefused(t, tok, new RegExp(`^token was issued in the future \\(iat ${ISO}, now ${ISO}, identity\\.clock_skew 0s\\): check the clocks of the issuer and of Sluice$`), '28P01');
});

t.test("a token living longer than its issuer's max_ttl is refused", async (t) => {
  // An external token valid for 10 years (the issuer's max_ttl defaults to 24h).
  const tenYears = await externalToken({ sub: 'alice@example.com', groups: ['dba'], iat: now(), exp: now() + 10 * 365 * 86400 });
  await assertRefused(t, tenYears, /^token lifetime 3650d \(exp - iat\) is longer than issuer "idp\.sluice-test\.invalid" accepts \(identity\.issuers\[idp\.sluice-test\.invalid\]\.max_ttl: 1d\): use a shorter-lived token$/, '28P01');
  // Without iat: what is left of it counts.
  const noIat = await externalToken({ sub: 'alice@example.com', groups: ['dba'], iat: undefined, exp: now() + 30 * 86400 });
  await assertRefused(t, noIat, /^token has no iat and expires in (30d|\d+s), which is longer than issuer "idp\.sluice-test\.invalid" accepts/, '28P01');
  // Sluice's own issuer: its max_ttl bounds what it accepts, not only what it mints.
  const own = await sluiceSigned({ iat: now(), exp: now() + 2 * 86400 });
  await assertRefused(t, own, /^token lifetime 2d \(exp - iat\) is longer than issuer "sluice" accepts \(identity\.sluice_issuer\.max_ttl: 1d\)/, '28P01');
});

t.test('issuer-qualified allow rules: a group of one issuer is not the same group of another', async (t) => {
  const named = { ...baseConfig.identity, issuers: [{ ...baseConfig.identity.issuers[0], name: 'idp' }] };
  await gw.reload({
    ...baseConfig,
    identity: named,
    targets: {
      ...baseConfig.targets,
      idponly: ordersTarget(pgc, { allow: ['idp/group:dba'] }),
      ownonly: ordersTarget(pgc, { allow: ['sluice/group:dba', 'sluice/sub:alice@example.com'] }),
    },
    // Tokens of the external issuer are read-only everywhere; Sluice's own are not (no policy fits them).
    policies: [{ name: 'idp-read-only', match: { issuers: ['idp'] }, read_only: true }],
    policy: { default: 'allow' },
  });
  t.teardown(() => gw.reload(baseConfig));
  const ext = await externalToken({ sub: 'alice@example.com', groups: ['dba'] });
  const ok1 = await psql(gw, ext, ['-Atc', 'select 1'], { conn: { dbname: 'idponly' } });
  t.equal(ok1.code, 0, ok1.stderr);
  const ok2 = await psql(gw, dbaToken, ['-Atc', 'select 1'], { conn: { dbname: 'ownonly' } });
  t.equal(ok2.code, 0, ok2.stderr);
  // The same group name (and the same subject) from the other issuer does not match.
  await assertRefused(t, dbaToken, /^sub "dba-person" is not allowed to use target "idponly" \(targets\.idponly\.allow\)$/, '28000', { db: 'idponly' });
  await assertRefused(t, ext, /^sub "alice@example\.com" is not allowed to use target "ownonly" \(targets\.ownonly\.allow\)$/, '28000', { db: 'ownonly' });
  const denied = await gw.waitForLog((l) => l.event === 'auth.denied' && l.target === 'ownonly');
  t.equal(denied.issuer, 'idp', 'the refusal log names the issuer');
  // Unqualified rules keep admitting both issuers (orders: group:dba).
  t.equal((await psql(gw, ext, ['-Atc', 'select 1'])).code, 0);
  // A policy matched by issuer: the external token may read but not write; Sluice's may write.
  const w = await psql(gw, ext, ['-Atc', 'create temp table t1 (i int)']);
  t.equal(w.code, 1);
  t.match(w.stderr, /ERROR:  .*idp-read-only/);
  const own = await psql(gw, dbaToken, ['-Atc', 'create temp table t1 (i int)']);
  t.equal(own.code, 0, own.stderr);
});

t.test('the start log and `sluice config check` say which issuer grants what, and warn about ambiguous sub rules', async (t) => {
  const roles = await gw.waitForLog((l) => l.event === 'identity.roles');
  t.equal(roles.msg, 'who may administer and approve, by issuer: sluice (sluice): admin groups sluice-admins; approver groups sluice-approvers; idp.sluice-test.invalid (https://idp.sluice-test.invalid): admin none; approver none');
  const warn = await gw.waitForLog((l) => l.event === 'config.warning');
  t.equal(warn.path, 'targets.orders.allow[2]');
  t.match(warn.msg, /"sub:nightly-etl" admits that subject from every configured issuer \(sluice, idp\.sluice-test\.invalid\)/);
  const r = await runCli(['config', 'check', '--config', gw.configPath]);
  t.equal(r.code, 0);
  t.match(r.stdout, /^ok: /);
  t.match(r.stderr, /^warning: targets\.orders\.allow\[2\]: "sub:nightly-etl" admits that subject from every configured issuer \(sluice, idp\.sluice-test\.invalid\); write "<issuer>\/sub:nightly-etl"/m);
});

t.test('keys fetched over plain http from a non-loopback host are a config error', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-http-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cfg = path.join(dir, 'sluice.yaml');
  fs.writeFileSync(cfg, `identity:\n  issuers:\n    - { issuer: "https://idp.example", audience: sluice, jwks_uri: "http://idp.example/jwks" }\n    - { issuer: "http://login.example", audience: sluice }\n`);
  for (const args of [['config', 'check'], ['serve']]) {
    const r = await runCli([...args, '--config', cfg]);
    t.equal(r.code, 2, `${args[0]} exits 2`);
    t.match(r.stderr, /line 3: identity\.issuers\[0\]\.jwks_uri: "http:\/\/idp\.example\/jwks" is plain http: anyone on the network path could swap the issuer's keys and mint tokens; use https/);
    t.match(r.stderr, /line 4: identity\.issuers\[1\]\.issuer: OIDC discovery .* "http:\/\/login\.example" is plain http/);
  }
});

t.test('key files: created private; a gateway whose keys others can read or replace refuses to start', async (t) => {
  // The running gateway created its keys 0600 in a 0700 directory.
  const keys = path.join(gw.dir, 'state', 'keys');
  t.equal(fs.statSync(keys).mode & 0o777, 0o700);
  const files = fs.readdirSync(keys).sort();
  t.same(files, ['masking.key', 'recording.key', 'signing-key.pem']);
  for (const f of files) t.equal(fs.statSync(path.join(keys, f)).mode & 0o777, 0o600, f);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-perm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const hostKey = path.join(dir, 'host_key');
  const cfg = path.join(dir, 'sluice.yaml');
  fs.writeFileSync(cfg, `state_dir: ./state\nlisteners:\n  postgres: { port: 0 }\n  ssh: { port: 0 }\nlog: { level: info }\n`);
  // First start: every key generated (SSH host key included), all private.
  const first = await serveOnce(cfg);
  t.equal(first.started, true, first.output);
  const sk = path.join(dir, 'state', 'keys');
  t.same(fs.readdirSync(sk).sort(), ['masking.key', 'recording.key', 'signing-key.pem', 'ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub']);
  for (const f of fs.readdirSync(sk)) t.equal(fs.statSync(path.join(sk, f)).mode & 0o777, f.endsWith('.pub') ? 0o644 : 0o600, f);

  // The signing key readable by others, the directory open: refused, with the exact commands.
  fs.chmodSync(path.join(sk, 'signing-key.pem'), 0o644);
  fs.chmodSync(sk, 0o755);
  const open = await serveOnce(cfg);
  t.equal(open.started, false);
  t.equal(open.code, 1);
  t.match(open.output, `${sk} is open to its group or others (mode 0755; it must be 0700)`);
  t.match(open.output, `${sk}/signing-key.pem is open to its group or others (mode 0644; it must be 0600)`);
  t.match(open.output, `Fix with: chmod 0700 ${sk} && chmod 0600 ${sk}/signing-key.pem`);
  t.match(open.output, /whoever can read the signing key can mint admin tokens/);
  fs.chmodSync(sk, 0o700);
  fs.chmodSync(path.join(sk, 'signing-key.pem'), 0o600);

  // Group-writable recording key, SSH host key owned by someone else (another uid, as root can arrange).
  fs.chmodSync(path.join(sk, 'recording.key'), 0o620);
  let chowned = false;
  if (process.getuid?.() === 0) {
    fs.chownSync(path.join(sk, 'ssh_host_ed25519_key'), 4242, 4242);
    chowned = true;
  }
  const bad = await serveOnce(cfg);
  t.equal(bad.started, false);
  t.match(bad.output, `${sk}/recording.key is open to its group or others (mode 0620; it must be 0600)`);
  if (chowned) {
    t.match(bad.output, `${sk}/ssh_host_ed25519_key is owned by uid 4242, not by the user the gateway runs as (uid 0)`);
    t.match(bad.output, `Fix with: chown root ${sk}/ssh_host_ed25519_key && chmod 0600 ${sk}/recording.key`);
    fs.chownSync(path.join(sk, 'ssh_host_ed25519_key'), 0, 0);
  }
  fs.chmodSync(path.join(sk, 'recording.key'), 0o600);

  // A configured SSH host key outside state_dir is checked too.
  fs.copyFileSync(path.join(sk, 'ssh_host_ed25519_key'), hostKey);
  fs.chmodSync(hostKey, 0o640);
  fs.writeFileSync(cfg, `state_dir: ./state\nlisteners:\n  postgres: { port: 0 }\n  ssh: { port: 0, host_key: ./host_key }\nlog: { level: info }\n`);
  const ext = await serveOnce(cfg);
  t.equal(ext.started, false);
  t.match(ext.output, `${hostKey} is open to its group or others (mode 0640; it must be 0600)`);
  fs.chmodSync(hostKey, 0o600);
  const fixed = await serveOnce(cfg);
  t.equal(fixed.started, true, fixed.output);
});

t.test('no token and no target password ever appear in the gateway logs', async (t) => {
  const out = gw.output();
  t.ok(out.length > 1000, 'the gateway logged something');
  t.ok(usedTokens.length > 10);
  for (const tok of usedTokens) t.notOk(out.includes(tok), `token ${tok.slice(0, 12)}… not logged`);
  // A token's signature alone would be enough to replay it with the same header and payload.
  for (const tok of usedTokens) {
    const sig = tok.split('.')[2];
    if (sig && sig.length > 20) t.notOk(out.includes(sig), 'no signature logged');
  }
  t.notOk(out.includes(TARGET_PASSWORD), 'no target password in logs');
});
