// What a user sees when something is wrong, and what the gateway survives:
// unreachable targets, a bad stored credential, upstream TLS failures (none of
// which tell the client the target's host, port, user or database), md5 and
// cleartext upstreams (opt-in only), impostor targets that never get the stored
// credential, the credential never reaching the client's wire, malformed
// packets, auth timeouts, the unauthenticated-connection cap and shutdown.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import pgProtocol from 'pg-protocol';
import { issueCert, makeCA, type KeyPair } from './helpers/certs.js';
import { withPostgres } from './helpers/pg-cluster.js';
import { freePort } from './helpers/ports.js';
import { connString, ordersTarget, prepareOrders, psql, startSluice, TARGET_PASSWORD, type Sluice } from './helpers/sluice.js';

// Default import: the named export is not visible under every ESM loader.
const { serialize } = pgProtocol;

const BAD_PASSWORD = 'Wr0ng-Stored-Secret-do-not-echo';
const CMD_STDOUT_SECRET = 'Cmd-Stdout-Secret-never-logged';
const CMD_STDERR_SECRET = 'hvs.Cmd-Stderr-Secret-never-logged';
const LEGACY_PASSWORD = 'Legacy-md5-Pa55word';
const PLAIN_PASSWORD = 'Cleartext-Pa55word';

const pgc = await withPostgres(t, { md5Users: ['legacy'], passwordUsers: ['plainuser'] });
await prepareOrders(pgc);
await pgc.createUser('legacy', LEGACY_PASSWORD, { md5: true });
await pgc.createUser('plainuser', PLAIN_PASSWORD);
await pgc.sql(
  `create table items (id int primary key, name text);
   insert into items select g, 'item ' || g from generate_series(1, 50) g;
   alter table items owner to app;
   grant select on items to legacy, plainuser;`,
  'orders',
);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-fail-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const otherCA = makeCA(path.join(tmp, 'other-ca'), 'A CA that did not sign the server');
const closedPort = await freePort(); // nothing listens there

// ---- impostor targets --------------------------------------------------------
// Fake upstream servers speaking just enough of the protocol to ask Sluice for a
// credential. Each records every byte Sluice sends it (after TLS, if any).

const wire = (type: string, body: Buffer) => {
  const h = Buffer.alloc(5);
  h[0] = type.charCodeAt(0);
  h.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([h, body]);
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const authMsg = (code: number, rest: Buffer = Buffer.alloc(0)) => wire('R', Buffer.concat([int32(code), rest]));
/** AuthenticationOk, one ParameterStatus, BackendKeyData and ReadyForQuery: a session the impostor would relay. */
const impostorHello = () =>
  Buffer.concat([authMsg(0), wire('S', Buffer.from('server_version\x0015.0\x00')), wire('K', Buffer.concat([int32(4242), int32(1)])), wire('Z', Buffer.from('I'))]);

type FakeMode = 'cleartext' | 'md5' | 'scram-ok-early' | 'scram-bad-signature' | 'scram-no-signature';

interface Fake {
  port: number;
  /** Everything Sluice sent, after TLS. */
  received(): Buffer;
  /** Frontend messages after the startup packet: type letters. */
  messageTypes(): string[];
  /** Queries that reached the impostor (a relayed session). */
  queries: number;
}

/** A stream reader for the fakes: waits for n bytes. */
function streamReader(s: net.Socket | tls.TLSSocket, record: (b: Buffer) => void) {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  let ended = false;
  const onData = (c: Buffer) => {
    record(c);
    buf = Buffer.concat([buf, c]);
    wake?.();
  };
  s.on('data', onData);
  s.on('close', () => ((ended = true), wake?.()));
  return {
    async take(n: number): Promise<Buffer> {
      while (buf.length < n) {
        if (ended) throw new Error('closed');
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
    detach: () => s.off('data', onData),
  };
}

async function fakePostgres(mode: FakeMode, cert?: KeyPair): Promise<Fake> {
  const chunks: Buffer[] = [];
  const types: string[] = [];
  const fake: Fake = { port: 0, received: () => Buffer.concat(chunks), messageTypes: () => types, queries: 0 };
  const ctx = cert ? tls.createSecureContext({ cert: fs.readFileSync(cert.cert), key: fs.readFileSync(cert.key) }) : undefined;
  const server = net.createServer(async (raw) => {
    raw.on('error', () => {});
    let sock: net.Socket | tls.TLSSocket = raw;
    let r = streamReader(raw, (c) => chunks.push(Buffer.from(c)));
    const message = async () => {
      const h = await r.take(5);
      const type = String.fromCharCode(h[0]!);
      types.push(type);
      return { type, body: await r.take(h.readInt32BE(1) - 4) };
    };
    try {
      let first = await r.take(8);
      if (first.readInt32BE(4) === 80877103) {
        if (ctx) {
          r.detach();
          raw.write('S');
          sock = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
          sock.on('error', () => {});
          r = streamReader(sock, (c) => chunks.push(Buffer.from(c)));
        } else raw.write('N');
        first = await r.take(8);
      }
      await r.take(first.readInt32BE(0) - 8); // the rest of the startup packet
      if (mode === 'cleartext') sock.write(authMsg(3));
      else if (mode === 'md5') sock.write(authMsg(5, randomBytes(4)));
      else {
        sock.write(authMsg(10, Buffer.from('SCRAM-SHA-256\0\0')));
        const init = await message(); // SASLInitialResponse: mechanism, int32 length, client-first
        const clientFirst = init.body.subarray(init.body.indexOf(0) + 5).toString();
        const nonce = /r=([^,]+)/.exec(clientFirst)![1];
        sock.write(authMsg(11, Buffer.from(`r=${nonce}impostor,s=${randomBytes(16).toString('base64')},i=4096`)));
        await message(); // client-final (with the proof)
        if (mode === 'scram-bad-signature') sock.write(authMsg(12, Buffer.from(`v=${randomBytes(32).toString('base64')}`)));
        if (mode === 'scram-no-signature') sock.write(authMsg(12, Buffer.from('')));
        sock.write(impostorHello());
      }
      if (mode === 'cleartext' || mode === 'md5') {
        await message(); // the password message, if Sluice sends one
        sock.write(impostorHello());
      }
      for (;;) {
        const m = await message();
        if (m.type === 'X') break;
        if (m.type === 'Q') {
          fake.queries++;
          sock.write(Buffer.concat([wire('E', Buffer.from('SFATAL\0C28000\0Mthe impostor has your session\0\0')), wire('Z', Buffer.from('I'))]));
        }
      }
    } catch {
      /* Sluice hung up */
    }
    sock.destroy();
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.teardown(() => new Promise((res) => server.close(res)));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}

/**
 * A relay that terminates TLS with its own certificate and opens its own TLS
 * connection to the real server: it sees everything in clear. `stripPlus`
 * also removes SCRAM-SHA-256-PLUS from the server's mechanism list.
 */
async function tlsRelay(cert: KeyPair, stripPlus: boolean): Promise<number> {
  const ctx = tls.createSecureContext({ cert: fs.readFileSync(cert.cert), key: fs.readFileSync(cert.key) });
  const server = net.createServer(async (raw) => {
    raw.on('error', () => {});
    const r = streamReader(raw, () => {});
    try {
      await r.take(8); // SSLRequest
      r.detach();
      raw.pause();
      raw.write('S');
      const front = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
      front.on('error', () => {});
      front.pause();
      const up = net.connect({ host: pgc.host, port: pgc.port });
      up.on('error', () => front.destroy());
      await new Promise((res) => up.once('connect', res));
      up.write(serialize.requestSsl());
      const ur = streamReader(up, () => {});
      await ur.take(1);
      ur.detach();
      const back = tls.connect({ socket: up, rejectUnauthorized: false });
      back.on('error', () => front.destroy());
      await new Promise((res) => back.once('secureConnect', res));
      front.pipe(back);
      front.resume();
      front.on('close', () => back.destroy());
      back.on('close', () => front.destroy());
      if (!stripPlus) {
        back.pipe(front);
        return;
      }
      let pending = Buffer.alloc(0);
      let done = false;
      back.on('data', (c: Buffer) => {
        if (done) return void front.write(c);
        pending = Buffer.concat([pending, c]);
        if (pending.length < 5 || pending.length < 1 + pending.readInt32BE(1)) return;
        const len = pending.readInt32BE(1);
        let first = pending.subarray(0, 1 + len);
        if (first[0] === 0x52 && first.readInt32BE(5) === 10) first = authMsg(10, Buffer.from('SCRAM-SHA-256\0\0'));
        front.write(Buffer.concat([first, pending.subarray(1 + len)]));
        done = true;
      });
    } catch {
      raw.destroy();
    }
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.teardown(() => new Promise((res) => server.close(res)));
  return (server.address() as net.AddressInfo).port;
}

const impostorCert = issueCert(otherCA, path.join(tmp, 'impostor'), 'impostor');
const fakes = {
  cleartext: await fakePostgres('cleartext'),
  md5: await fakePostgres('md5'),
  'tls-cleartext': await fakePostgres('cleartext', impostorCert),
  'ok-early': await fakePostgres('scram-ok-early'),
  'bad-signature': await fakePostgres('scram-bad-signature'),
  'no-signature': await fakePostgres('scram-no-signature'),
};
const relayPort = await tlsRelay(impostorCert, false);
const strippingRelayPort = await tlsRelay(impostorCert, true);
/** A target as a user would write it for a server on this machine: no tls key (the loopback default, prefer). */
const plainTarget = (port: number, extra: Record<string, unknown> = {}) => ({
  protocol: 'postgres',
  host: '127.0.0.1',
  port,
  database: 'orders',
  user: 'app',
  password: { env: 'ORDERS_PG_PASSWORD' },
  allow: ['group:ci'],
  ...extra,
});

// A loopback TCP relay to the cluster that waits before connecting: a target
// behind it takes ~SLOW_MS to log in, long enough for a client to give up.
const SLOW_MS = 600;
const slowProxy = net.createServer((c) => {
  c.pause();
  c.on('error', () => {});
  setTimeout(() => {
    const up = net.connect({ host: pgc.host, port: pgc.port });
    up.on('error', () => c.destroy());
    c.on('close', () => up.destroy());
    c.pipe(up);
    up.pipe(c);
    c.resume();
  }, SLOW_MS);
});
await new Promise<void>((r) => slowProxy.listen(0, '127.0.0.1', r));
t.teardown(() => new Promise((r) => slowProxy.close(r)));
const slowPort = (slowProxy.address() as net.AddressInfo).port;

const gw = await startSluice(t, {
  cluster: pgc,
  env: { BAD_PG_PASSWORD: BAD_PASSWORD, LEGACY_PG_PASSWORD: LEGACY_PASSWORD, PLAIN_PG_PASSWORD: PLAIN_PASSWORD },
  config: {
    targets: {
      down: ordersTarget(pgc, { port: closedPort }),
      badpw: ordersTarget(pgc, { password: { env: 'BAD_PG_PASSWORD' } }),
      badtls: ordersTarget(pgc, { tls: { mode: 'verify-full', ca: otherCA.cert, servername: 'localhost' } }),
      badname: ordersTarget(pgc, { tls: { mode: 'verify-full', ca: pgc.caCert, servername: 'db.wrong-name.invalid' } }),
      nopw: ordersTarget(pgc, { password: { env: 'SLUICE_TEST_UNSET_PASSWORD_VAR' } }),
      // A secret command that fails and prints a secret on stderr (as `vault read` may).
      cmdpw: ordersTarget(pgc, { password: { command: `echo ${CMD_STDOUT_SECRET}; echo "permission denied for token ${CMD_STDERR_SECRET}" >&2; exit 3` } }),
      slow: ordersTarget(pgc, { port: slowPort }),
      nodb: ordersTarget(pgc, { database: 'no_such_database' }),
      legacy: ordersTarget(pgc, { user: 'legacy', password: { env: 'LEGACY_PG_PASSWORD' }, auth: ['md5'] }),
      'legacy-plain': ordersTarget(pgc, { user: 'legacy', password: { env: 'LEGACY_PG_PASSWORD' }, tls: { mode: 'disable' }, auth: ['scram-sha-256', 'md5'] }),
      'legacy-default': ordersTarget(pgc, { user: 'legacy', password: { env: 'LEGACY_PG_PASSWORD' } }),
      cleartext: ordersTarget(pgc, { user: 'plainuser', password: { env: 'PLAIN_PG_PASSWORD' }, auth: ['password'] }),
      'cleartext-default': ordersTarget(pgc, { user: 'plainuser', password: { env: 'PLAIN_PG_PASSWORD' } }),
      'fake-cleartext': plainTarget(fakes.cleartext.port),
      'fake-md5': plainTarget(fakes.md5.port),
      'fake-tls-cleartext': plainTarget(fakes['tls-cleartext'].port, { tls: { mode: 'require' } }),
      'fake-ok-early': plainTarget(fakes['ok-early'].port),
      'fake-bad-signature': plainTarget(fakes['bad-signature'].port),
      'fake-no-signature': plainTarget(fakes['no-signature'].port),
      relay: plainTarget(relayPort, { tls: { mode: 'require' } }),
      'relay-stripping': plainTarget(strippingRelayPort, { tls: { mode: 'require' } }),
      'relay-nocb': plainTarget(relayPort, { tls: { mode: 'require' }, channel_binding: 'disable' }),
      'scram-cb-required': ordersTarget(pgc, { channel_binding: 'require' }),
    },
  },
});
const token = await gw.mint('ci', ['ci']);

type PgError = Error & { code?: string; severity?: string; detail?: string; hint?: string };

function pgClient(g: Sluice, database = 'orders', extra: pg.ClientConfig = {}): pg.Client {
  return new pg.Client({ host: g.host, port: g.port, user: 'ci', database, password: token, ssl: false, connectionTimeoutMillis: 10_000, ...extra });
}

async function pgConnectError(g: Sluice, database: string): Promise<PgError | null> {
  const c = pgClient(g, database);
  c.on('error', () => {});
  try {
    await c.connect();
    await c.end();
    return null;
  } catch (err) {
    return err as PgError;
  }
}

/** The text after "FATAL:  " on psql's error line, and the DETAIL line if any. */
function fatalOf(stderr: string): { message?: string; detail?: string } {
  const m = /FATAL:  (.*)/.exec(stderr);
  const d = /DETAIL:  (.*)/.exec(stderr);
  return { message: m?.[1], detail: d?.[1] };
}

// ---- raw wire helpers ------------------------------------------------------

interface BackendMsg {
  type: string;
  body: Buffer;
  fields?: Record<string, string>;
}

/** Splits backend bytes into messages; ErrorResponse/NoticeResponse fields are decoded. */
function parseBackend(buf: Buffer): BackendMsg[] {
  const out: BackendMsg[] = [];
  let i = 0;
  while (i + 5 <= buf.length) {
    const type = String.fromCharCode(buf[i]!);
    const len = buf.readInt32BE(i + 1);
    const body = buf.subarray(i + 5, i + 1 + len);
    const msg: BackendMsg = { type, body };
    if (type === 'E' || type === 'N') {
      const f: Record<string, string> = {};
      let j = 0;
      while (j < body.length && body[j] !== 0) {
        const z = body.indexOf(0, j + 1);
        f[String.fromCharCode(body[j]!)] = body.toString('utf8', j + 1, z);
        j = z + 1;
      }
      msg.fields = f;
    }
    out.push(msg);
    i += 1 + len;
  }
  return out;
}

function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Collects everything the gateway sends until it closes the socket (or the limit passes). */
function untilClosed(s: net.Socket, limitMs = 10_000): Promise<{ data: Buffer; closed: boolean; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    const done = (closed: boolean) => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => {
      s.destroy();
      done(false);
    }, limitMs);
    s.once('close', () => done(true));
  });
}

/** Reads from `s` until `pred` holds for the bytes so far. */
function readUntil(s: net.Socket, pred: (b: Buffer) => boolean, limitMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (pred(buf)) {
        s.off('data', onData);
        clearTimeout(timer);
        resolve(buf);
      }
    };
    const timer = setTimeout(() => {
      s.off('data', onData);
      reject(new Error(`timed out; got ${buf.toString('latin1')}`));
    }, limitMs);
    s.on('data', onData);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- tests -----------------------------------------------------------------

/**
 * What the client was told (psql's FATAL, DETAIL and HINT lines) names none of the
 * target's internals: host, port, user, database (nor the server's own words).
 */
function noInternals(t: Test, stderr: string, extra: string[] = []): void {
  const told = stderr.split('\n').filter((l) => /^(psql: error: .*)?(FATAL|DETAIL|HINT):/.test(l) || /FATAL:/.test(l)).map((l) => l.replace(/^.*?FATAL:/, 'FATAL:')).join('\n');
  t.ok(told.length > 0, 'psql showed an error');
  for (const s of ['127.0.0.1', 'localhost', String(pgc.port), '"app"', 'app@', 'orders', ...extra]) {
    t.notOk(told.includes(s), `the client is not told ${JSON.stringify(s)}: ${told}`);
  }
}

t.test('target down: a clear FATAL without its address, and other targets keep working', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'down' } });
  t.equal(r.code, 2);
  t.equal(fatalOf(r.stderr).message, 'target "down" is unreachable (connection refused); the gateway log has the details', r.stderr);
  t.notOk(r.stderr.includes(String(closedPort)), 'the target port is not shown');
  noInternals(t, r.stderr);
  const err = await pgConnectError(gw, 'down');
  t.equal(err?.code, '08001');
  t.equal(err?.severity, 'FATAL');

  const ok = await psql(gw, token, ['-Atc', 'select count(*) from items']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.stdout.trim(), '50');
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'down');
  t.equal(logged.reason, 'ECONNREFUSED', 'the log keeps the specifics');
  t.equal(logged.address, `127.0.0.1:${closedPort}`);
});

t.test('a wrong stored password: FATAL names the credential problem, never the password, user or server text', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badpw' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.equal(f.message, `target "badpw" rejected Sluice's stored credential; the gateway log has the details`, r.stderr);
  t.equal(f.detail, "Check targets.badpw.user, targets.badpw.password and the server's pg_hba.conf.");
  noInternals(t, r.stderr, ['password authentication failed']);
  const err = await pgConnectError(gw, 'badpw');
  t.equal(err?.code, '08006');
  t.match(err?.message, /rejected Sluice's stored credential/);
  for (const text of [r.stderr, err?.message ?? '', err?.detail ?? '', gw.output()]) {
    t.notOk(text.includes(BAD_PASSWORD), 'the wrong password is not shown');
    t.notOk(text.includes(TARGET_PASSWORD), 'nor the real one');
  }
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'badpw');
  t.equal(logged.server_message, 'password authentication failed for user "app"', 'the log has what the server said');
  t.equal(logged.user, 'app');
});

t.test('a database that does not exist: the client is not told its name', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'nodb' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.equal(f.message, 'target "nodb": the configured database does not exist on the server; the gateway log has the details', r.stderr);
  t.equal(f.detail, 'Check targets.nodb.database.');
  noInternals(t, r.stderr, ['no_such_database']);
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'nodb');
  t.equal(logged.server_message, 'database "no_such_database" does not exist');
});

t.test('upstream TLS verification failure (CA did not sign the server cert)', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badtls' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.equal(f.message, 'TLS to target "badtls" failed: its certificate could not be verified; the gateway log has the details', r.stderr);
  t.equal(f.detail, "targets.badtls.tls.mode is verify-full; check targets.badtls.tls.ca and the server certificate's names");
  noInternals(t, r.stderr);
  const err = await pgConnectError(gw, 'badtls');
  t.equal(err?.code, '08001');
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'badtls');
  t.equal(logged.level, 'error');
  t.match(String(logged.reason), /unable to verify the first certificate|unable to get local issuer certificate|self[- ]signed certificate/);
});

t.test('upstream TLS: the server certificate does not name the configured servername', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badname' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.equal(f.message, 'TLS to target "badname" failed: its certificate could not be verified; the gateway log has the details', r.stderr);
  t.equal(f.detail, "targets.badname.tls.mode is verify-full; check targets.badname.tls.ca and the server certificate's names");
  noInternals(t, r.stderr, ['db.wrong-name.invalid']);
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'badname');
  t.match(
    String(logged.reason),
    /^Hostname\/IP does not match certificate's altnames: Host: db\.wrong-name\.invalid\. is not in the cert's altnames: DNS:localhost, IP Address:127\.0\.0\.1$/,
  );
});

t.test('a stored credential that cannot be read: a clear FATAL, the reason only in the log', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'nopw' } });
  t.equal(r.code, 2);
  t.equal(fatalOf(r.stderr).message, 'Sluice cannot read its stored credential for target "nopw" (targets.nopw.password); the gateway log says why', r.stderr);
  const err = await pgConnectError(gw, 'nopw');
  t.equal(err?.code, '08006');
  t.notMatch(r.stderr, /SLUICE_TEST_UNSET_PASSWORD_VAR/, 'the client is not told about the gateway\'s environment');
  const logged = await gw.waitForLog((l) => l.event === 'credential.error' && l.target === 'nopw');
  t.equal(logged.err, 'environment variable SLUICE_TEST_UNSET_PASSWORD_VAR is not set (targets.nopw.password)');
  t.equal(logged.sub, 'ci');
});

t.test('a failing password command: its exit status in the log, never its output', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'cmdpw' } });
  t.equal(r.code, 2);
  t.match(r.stderr, /Sluice cannot read its stored credential for target "cmdpw"/);
  const logged = await gw.waitForLog((l) => l.event === 'credential.error' && l.target === 'cmdpw');
  t.equal(logged.err, "secret command exited with code 3 (targets.cmdpw.password); its output is not shown because it may contain the secret: run the command by hand, as the gateway's user, to see why");
  for (const text of [gw.output(), r.stderr]) {
    t.notOk(text.includes(CMD_STDERR_SECRET), "the command's stderr is not shown");
    t.notOk(text.includes(CMD_STDOUT_SECRET), 'nor its stdout');
    t.notOk(text.includes('permission denied for token'), 'not even in part');
  }
});

t.test('a client that leaves while Sluice logs in upstream leaves nothing behind', async (t) => {
  // Sanity: the slow target works for a patient client.
  const ok = await psql(gw, token, ['-Atc', 'select 7'], { conn: { dbname: 'slow' } });
  t.equal(ok.code, 0, ok.stderr);
  const opensBefore = gw.logs().filter((l) => l.event === 'session.open' && l.application === 'leaver').length;
  t.equal(opensBefore, 0);

  for (let i = 0; i < 3; i++) {
    const s = await rawConnect(gw.port);
    s.on('error', () => {});
    s.write(serialize.startup({ user: 'ci', database: 'slow', application_name: 'leaver' }));
    s.write(serialize.password(token));
    await sleep(150); // the gateway is now waiting for the slow target
    s.destroy();
  }
  await sleep(SLOW_MS + 1000); // every upstream login has finished by now
  const backends = (await pgc.sql("select count(*) from pg_stat_activity where application_name = 'leaver'")).trim();
  t.equal(backends, '0', 'no upstream backend left for the departed clients');
  await sleep(300); // log lines are flushed in batches every 100 ms
  const opens = gw.logs().filter((l) => l.event === 'session.open' && l.application === 'leaver');
  const ids = new Set(opens.map((l) => l.session));
  const closes = gw.logs().filter((l) => l.event === 'session.close' && ids.has(l.session));
  t.equal(opens.length, closes.length, `every session opened for them is closed (${opens.length} opened)`);
  // And the unauthenticated slots were given back: a normal login still works.
  const after = await psql(gw, token, ['-Atc', 'select 8']);
  t.equal(after.code, 0, after.stderr);
});

t.test('md5 and cleartext upstreams work only where targets.*.auth allows them', async (t) => {
  t.equal((await pgc.sql("select rolpassword like 'md5%' from pg_authid where rolname = 'legacy'")).trim(), 't', 'legacy has an md5 hash');
  for (const db of ['legacy', 'legacy-plain']) {
    const r = await psql(gw, token, ['-Atc', 'select current_user, count(*) from items'], { conn: { dbname: db } });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), 'legacy|50', db);
  }
  // The server really asked for md5 / a cleartext password: hba puts those lines before the scram one.
  t.equal((await pgc.sql("select auth_method from pg_hba_file_rules where 'legacy' = any(user_name)")).trim(), 'md5');
  t.equal((await pgc.sql("select auth_method from pg_hba_file_rules where 'plainuser' = any(user_name)")).trim(), 'password');
  const plain = await psql(gw, token, ['-Atc', 'select current_user, count(*) from items'], { conn: { dbname: 'cleartext' } });
  t.equal(plain.code, 0, plain.stderr);
  t.equal(plain.stdout.trim(), 'plainuser|50');

  // Without the opt-in (the default auth: [scram-sha-256]) the same servers are refused.
  const md5 = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'legacy-default' } });
  t.equal(md5.code, 2);
  t.equal(
    fatalOf(md5.stderr).message,
    'target "legacy-default" asked Sluice to log in with an md5 password hash, which targets.legacy-default.auth does not allow; the stored credential was not sent; the gateway log has the details',
    md5.stderr,
  );
  t.equal(fatalOf(md5.stderr).detail, 'If the target really uses md5, add it to targets.legacy-default.auth (with tls.mode: verify-full); otherwise something is impersonating the target.');
  const clear = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'cleartext-default' } });
  t.equal(clear.code, 2);
  t.match(fatalOf(clear.stderr).message, /^target "cleartext-default" asked Sluice to log in with a cleartext password, which targets\.cleartext-default\.auth does not allow/);
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'cleartext-default');
  t.equal(logged.level, 'error');
});

t.test('SCRAM with channel binding required works against the real server', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'], { conn: { dbname: 'scram-cb-required' } });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 't');
});

t.test('impostor targets never receive the stored password, and the client is told', async (t) => {
  const secrets = (user: string, password: string) => ({
    password,
    'password (base64)': Buffer.from(password).toString('base64'),
    'password (hex)': Buffer.from(password).toString('hex'),
    'md5(password + user)': createHash('md5').update(password + user).digest('hex'),
  });
  const cases: [string, keyof typeof fakes, RegExp][] = [
    // (a) the default for a loopback host is prefer: the fake declines TLS and asks for a cleartext password.
    ['fake-cleartext', 'cleartext', /^target "fake-cleartext" asked Sluice to log in with a cleartext password, which targets\.fake-cleartext\.auth does not allow; the stored credential was not sent/],
    // (b) md5.
    ['fake-md5', 'md5', /^target "fake-md5" asked Sluice to log in with an md5 password hash, which targets\.fake-md5\.auth does not allow; the stored credential was not sent/],
    // (c) tls.mode require: TLS with a certificate nobody trusts, then a cleartext password request.
    ['fake-tls-cleartext', 'tls-cleartext', /^target "fake-tls-cleartext" asked Sluice to log in with a cleartext password/],
    // (d) SCRAM that ends with AuthenticationOk and no SASLFinal.
    ['fake-ok-early', 'ok-early', /^target "fake-ok-early" did not prove that it is the target: it ended the SCRAM exchange without the server signature; the login was stopped\. It may be an impostor; the gateway log has the details$/],
    // (e) a wrong server signature, and none at all.
    ['fake-bad-signature', 'bad-signature', /^target "fake-bad-signature" did not prove that it is the target: its SCRAM server signature is missing or wrong; the login was stopped\. It may be an impostor/],
    ['fake-no-signature', 'no-signature', /^target "fake-no-signature" did not prove that it is the target: its SCRAM server signature is missing or wrong/],
  ];
  for (const [db, fake, message] of cases) {
    const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: db } });
    t.equal(r.code, 2, `${db}: psql fails`);
    t.match(fatalOf(r.stderr).message, message, `${db}: ${r.stderr}`);
    t.equal(fakes[fake].queries, 0, `${db}: no session was relayed to the impostor`);
    const got = fakes[fake].received();
    t.ok(got.length > 8, `${db}: the fake saw the startup (${got.length} bytes)`);
    for (const [what, v] of Object.entries(secrets('app', TARGET_PASSWORD))) t.notOk(got.includes(v), `${db}: no ${what} in what the impostor received`);
    if (fake === 'cleartext' || fake === 'md5' || fake === 'tls-cleartext') {
      t.notOk(fakes[fake].messageTypes().includes('p'), `${db}: no password message at all`);
    }
    const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === db);
    t.equal(logged.level, 'error', `${db}: logged as an error naming the target`);
  }
  t.ok(fakes['tls-cleartext'].received().length > 0);
});

t.test('a TLS-terminating relay (tls.mode require) is stopped by SCRAM channel binding', async (t) => {
  // Control: with channel binding off, the relay (which sees everything in clear) works.
  const ctl = await psql(gw, token, ['-Atc', 'select current_user'], { conn: { dbname: 'relay-nocb' } });
  t.equal(ctl.code, 0, ctl.stderr);
  t.equal(ctl.stdout.trim(), 'app', 'the relay works when nothing binds the login to the TLS channel');
  for (const db of ['relay', 'relay-stripping']) {
    const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: db } });
    t.equal(r.code, 2, `${db}: refused`);
    t.equal(
      fatalOf(r.stderr).message,
      `target "${db}" refused the SCRAM channel binding: something between Sluice and the target terminates TLS; the gateway log has the details`,
      r.stderr,
    );
    const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === db);
    t.equal(logged.level, 'error');
    t.match(String(logged.server_message), /channel binding/);
  }
});

t.test('the target password never crosses the client wire', async (t) => {
  // A recording TCP proxy between the client and Sluice, plaintext (sslmode=disable).
  const toClient: Buffer[] = [];
  const toSluice: Buffer[] = [];
  const proxy = net.createServer((c) => {
    const up = net.connect({ host: gw.host, port: gw.port });
    c.on('data', (d: Buffer) => toSluice.push(Buffer.from(d)));
    up.on('data', (d: Buffer) => toClient.push(Buffer.from(d)));
    c.pipe(up);
    up.pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => proxy.close(r)));
  const via: Sluice = { ...gw, port: (proxy.address() as net.AddressInfo).port, ca: undefined };

  const script = [
    'select current_user, current_database();',
    'select 1/0;',
    "select rolname, rolpassword from pg_roles where rolname = 'app';",
    'select rolpassword from pg_authid;',
    'copy (select * from items order by id limit 5) to stdout;',
    'create temp table t2 (like items);',
    'copy t2 from stdin;',
    '1\tcopied one',
    '2\tcopied two',
    '\\.',
    'select count(*) as copied from t2;',
    "select current_setting('password_encryption');",
    "do $$ begin raise notice 'notice from the server'; end $$;",
    '',
  ].join('\n');
  const r = await psql(via, token, ['-v', 'ON_ERROR_STOP=0', '-A'], { input: script });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /app\|orders/);
  t.match(r.stderr, /division by zero/);
  t.match(r.stderr, /permission denied for table pg_authid/);
  t.match(r.stdout, /1\titem 1/);
  t.match(r.stdout, /copied\n2/);
  t.match(r.stderr, /notice from the server/);

  // Extended protocol too (parse/bind/execute, an error mid-pipeline).
  const c = pgClient(via);
  await c.connect();
  t.equal((await c.query('select $1::text || current_user as v', ['x-'])).rows[0].v, 'x-app');
  await t.rejects(c.query('select $1::int', ['not a number']), { code: '22P02' });
  await c.end();

  const wire = Buffer.concat(toClient);
  t.ok(wire.length > 500, `recorded ${wire.length} bytes`);
  t.ok(wire.includes('division by zero'), 'the recording saw the error');
  t.ok(wire.includes('item 1'), 'the recording saw the COPY data');
  const md5 = 'md5' + createHash('md5').update(TARGET_PASSWORD + 'app').digest('hex');
  const secrets = {
    password: TARGET_PASSWORD,
    'password (base64)': Buffer.from(TARGET_PASSWORD).toString('base64'),
    'password (base64url)': Buffer.from(TARGET_PASSWORD).toString('base64url'),
    'password (hex)': Buffer.from(TARGET_PASSWORD).toString('hex'),
    'md5 hash': md5,
  };
  for (const [what, s] of Object.entries(secrets)) {
    t.notOk(wire.includes(s), `no ${what} in the bytes sent to the client`);
    t.notOk(Buffer.concat(toSluice).includes(s), `no ${what} in the bytes from the client`);
  }
  // The upstream SCRAM exchange stays between Sluice and the server.
  const latin = wire.toString('latin1');
  t.notOk(latin.includes('SCRAM-SHA-256'), 'no SASL mechanism list');
  t.notOk(/r=[A-Za-z0-9+/=]+,s=[A-Za-z0-9+/=]+,i=\d+/.test(latin), 'no SCRAM server-first message');
  t.notOk(/v=[A-Za-z0-9+/=]{20,}/.test(latin), 'no SCRAM server signature');
  // What the client was asked for is a cleartext password (the token), nothing else.
  const auth = parseBackend(wire).filter((m) => m.type === 'R').map((m) => m.body.readInt32BE(0));
  t.same([...new Set(auth)].sort(), [0, 3], 'only AuthenticationCleartextPassword and AuthenticationOk');
});

t.test('malformed startup packets get 08P01 and are closed', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['length below 8', Buffer.from([0, 0, 0, 3, 0, 3, 0, 0]), /^protocol violation: invalid startup packet length 3$/],
    ['huge length', Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]), /^protocol violation: invalid startup packet length 2147483647$/],
    ['negative length', Buffer.from([0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0]), /^protocol violation: invalid startup packet length -16$/],
    ['unterminated parameter', Buffer.from([0, 0, 0, 13, 0, 3, 0, 0, 0x75, 0x73, 0x65, 0x72, 0x00]), /^protocol violation: unterminated startup parameter value$/],
  ];
  for (const [name, bytes, msg] of cases) {
    const s = await rawConnect(gw.port);
    s.write(bytes);
    const { data, closed, ms } = await untilClosed(s);
    const msgs = parseBackend(data);
    t.equal(msgs.length, 1, `${name}: one message`);
    t.equal(msgs[0]?.type, 'E', `${name}: an ErrorResponse`);
    t.equal(msgs[0]?.fields?.S, 'FATAL');
    t.equal(msgs[0]?.fields?.C, '08P01', `${name}: 08P01`);
    t.match(msgs[0]?.fields?.M, msg, name);
    t.ok(closed, `${name}: closed (${ms} ms)`);
  }

  // Protocol 2.0 is refused with 0A000.
  const s = await rawConnect(gw.port);
  s.write(Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]));
  const { data } = await untilClosed(s);
  const [e] = parseBackend(data);
  t.equal(e?.fields?.C, '0A000');
  t.equal(e?.fields?.M, 'unsupported frontend protocol 2.0: Sluice speaks 3.0 to 3.2');

  // A query instead of the password message.
  const q = await rawConnect(gw.port);
  q.write(serialize.startup({ user: 'ci', database: 'orders' }));
  await readUntil(q, (b) => b.length >= 9);
  q.write(serialize.query('select 1'));
  const got = parseBackend((await untilClosed(q)).data);
  t.equal(got.at(-1)?.fields?.C, '08P01');
  t.equal(got.at(-1)?.fields?.M, 'protocol violation: expected a password message, got type 0x51');
});

t.test('garbage after authentication: 08P01 for that session, others unaffected', async (t) => {
  const other = pgClient(gw);
  await other.connect();
  t.teardown(() => other.end().catch(() => {}));

  const garbage: [string, Buffer, string][] = [
    ['type 0x00', Buffer.from([0x00, 0, 0, 0, 4]), 'protocol violation: invalid frontend message type 0 (0x0)'],
    ['negative length', Buffer.from([0x51, 0xff, 0xff, 0xff, 0xfe, 0x41, 0x42]), 'protocol violation: invalid message length -2 for message type 0x51'],
    ['length 3', Buffer.from([0x51, 0, 0, 0, 3]), 'protocol violation: invalid message length 3 for message type 0x51'],
    ['a startup packet mid-session', serialize.startup({ user: 'x' }), 'protocol violation: invalid frontend message type 0 (0x0)'],
  ];
  for (const [name, bytes, message] of garbage) {
    const app = `violator-${garbage.findIndex((g) => g[0] === name)}`;
    const bad = pgClient(gw, 'orders', { application_name: app });
    await bad.connect();
    t.equal((await bad.query('select 1 as one')).rows[0].one, 1, `${name}: session works before`);
    // node-postgres emits the server's FATAL, then "Connection terminated unexpectedly".
    const errors: PgError[] = [];
    const errored = new Promise<PgError>((resolve) => bad.on('error', (e: PgError) => (errors.push(e), resolve(errors[0]!))));
    const ended = new Promise<void>((resolve) => bad.once('end', resolve));
    (bad as unknown as { connection: { stream: net.Socket } }).connection.stream.write(bytes);
    const err = await errored;
    t.equal(err.code, '08P01', `${name}: SQLSTATE`);
    t.equal(err.message, message, `${name}: message`);
    t.equal(err.severity, 'FATAL');
    await ended;
    t.pass(`${name}: connection closed`);

    // The other session is unaffected, and the upstream backend of the bad one is gone.
    t.equal((await other.query('select count(*)::int as n from items')).rows[0].n, 50, `${name}: other session works`);
    let left = '1';
    for (let i = 0; i < 50 && left !== '0'; i++) {
      left = (await pgc.sql(`select count(*) from pg_stat_activity where application_name = '${app}'`)).trim();
      if (left !== '0') await sleep(100);
    }
    t.equal(left, '0', `${name}: upstream backend closed`);
  }
  await sleep(300); // log lines are flushed in batches every 100 ms
  const violations = gw.logs().filter((l) => l.event === 'session.close' && String(l.reason).startsWith('protocol violation'));
  t.equal(violations.length, garbage.length, 'each violation closed its session with that reason');
});

// A second gateway for the limits, so a short auth timeout cannot hurt the other tests.
t.test('limits', async (t) => {
  const lim = await startSluice(t, { cluster: pgc, config: { limits: { auth_timeout: '1s' } } });
  const limToken = await lim.mint('ci', ['ci']);

  await t.test('auth timeout: a silent connection is closed with an error', async (t) => {
    const s = await rawConnect(lim.port);
    const { data, closed, ms } = await untilClosed(s, 5000);
    t.ok(closed, 'closed by the gateway');
    t.ok(ms >= 900 && ms < 3000, `closed after ${ms} ms`);
    const [e] = parseBackend(data);
    t.equal(e?.fields?.S, 'FATAL');
    t.equal(e?.fields?.C, '08P01');
    t.equal(e?.fields?.M, 'authentication not completed within 1000 ms (limits.auth_timeout)');

    // Also when the client stalls at the password prompt.
    const p = await rawConnect(lim.port);
    p.write(serialize.startup({ user: 'ci', database: 'orders' }));
    const r = await untilClosed(p, 5000);
    const msgs = parseBackend(r.data);
    t.equal(msgs[0]?.type, 'R', 'asked for a password');
    t.equal(msgs.at(-1)?.fields?.M, 'authentication not completed within 1000 ms (limits.auth_timeout)');
    t.ok(r.closed && r.ms < 3000, `closed after ${r.ms} ms`);
  });

  await t.test('max_unauthenticated: the next connection gets 53300, and recovers', async (t) => {
    await lim.reload({ limits: { max_unauthenticated: 2 } });
    const idle = [await rawConnect(lim.port), await rawConnect(lim.port)];
    for (const s of idle) s.on('error', () => {});
    await sleep(200); // let the gateway accept both

    const third = await rawConnect(lim.port);
    const { data, closed } = await untilClosed(third, 5000);
    t.ok(closed, 'third connection closed');
    const [e] = parseBackend(data);
    t.equal(e?.fields?.S, 'FATAL');
    t.equal(e?.fields?.C, '53300');
    t.equal(e?.fields?.M, 'too many connections waiting to authenticate; try again shortly');

    // psql without TLS shows the FATAL as is.
    const r = await psql(lim, limToken, ['-Atc', 'select 1'], { conn: { sslmode: 'disable' } });
    t.equal(r.code, 2);
    t.equal(fatalOf(r.stderr).message, 'too many connections waiting to authenticate; try again shortly', r.stderr);
    // With TLS the refusal arrives as the answer to SSLRequest, before any TLS.
    // libpq >= 15.10/16.6/17.2 (CVE-2024-10977) no longer shows such an
    // unauthenticated error text; older libpq prints the FATAL.
    const rt = await psql(lim, limToken, ['-Atc', 'select 1']);
    t.equal(rt.code, 2);
    t.match(rt.stderr, /server sent an error response during SSL exchange|FATAL:  too many connections waiting to authenticate/);
    const refused = await lim.waitForLog((l) => l.event === 'connection.refused' && l.reason === 'max_unauthenticated');
    t.ok(refused);

    // A refused client that never closes its end does not keep a socket on the
    // gateway: it is dropped after a grace period (writing then gets a reset).
    const stubborn = net.connect({ host: '127.0.0.1', port: lim.port, allowHalfOpen: true });
    const events: string[] = [];
    stubborn.on('error', (e: NodeJS.ErrnoException) => events.push(`error ${e.code}`));
    stubborn.on('close', () => events.push('close'));
    await readUntil(stubborn, (b) => b.length > 0 && parseBackend(b).length > 0);
    await sleep(1500);
    // The first write draws a reset from a closed socket, the next one fails on it.
    for (let i = 0; i < 40 && !events.includes('close'); i++) {
      if (!stubborn.destroyed) stubborn.write(serialize.startup({ user: 'ci', database: 'orders' }));
      await sleep(50);
    }
    t.match(events.join(','), /error (ECONNRESET|EPIPE)/, `the gateway had dropped the socket (${events.join(',')})`);
    stubborn.destroy();

    for (const s of idle) s.destroy();
    let ok = await psql(lim, limToken, ['-Atc', 'select 42']);
    for (let i = 0; i < 20 && ok.code !== 0; i++) {
      await sleep(100);
      ok = await psql(lim, limToken, ['-Atc', 'select 42']);
    }
    t.equal(ok.code, 0, ok.stderr);
    t.equal(ok.stdout.trim(), '42');

    // Authenticated sessions do not count: with 2 live sessions a third still gets in.
    const live = [pgClient(lim, 'orders', { password: limToken }), pgClient(lim, 'orders', { password: limToken })];
    for (const c of live) await c.connect();
    t.teardown(() => Promise.all(live.map((c) => c.end().catch(() => {}))));
    const more = await psql(lim, limToken, ['-Atc', 'select 43']);
    t.equal(more.code, 0, more.stderr);
  });
});

t.test('unverified TLS to a non-loopback target is a warning at start and at reload', async (t) => {
  const remote = (mode: string) => ({ protocol: 'postgres', host: 'db.example.invalid', user: 'app', allow: ['*'], tls: { mode } });
  const g = await startSluice(t, { cluster: pgc, config: { targets: { remote: remote('require') } } });
  const atStart = await g.waitForLog((l) => l.event === 'config.warning' && l.target === 'remote');
  t.equal(atStart.level, 'warn');
  t.equal(atStart.key, 'targets.remote.tls.mode');
  t.match(atStart.msg, /^targets\.remote\.tls\.mode: tls\.mode is require: the target's certificate is not verified/);
  t.notOk(g.logs().some((l) => l.event === 'config.warning' && l.target === 'orders'), 'none for the verify-full target');
  await g.reload({ targets: { remote: remote('disable') } });
  const atReload = await g.waitForLog((l) => l.event === 'config.warning' && String(l.msg).includes('tls.mode is disable'));
  t.equal(atReload.target, 'remote');
  await g.stop();
});

/** A psql process fed from a pipe that stays open, for a session that lives across events. */
function livePsql(g: Sluice, tok: string, application = 'live-psql') {
  const p = spawn('psql', ['-X', '-A', '-t', connString(g, { application_name: application })], {
    env: { ...process.env, PGPASSWORD: tok },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c) => (stdout += c));
  p.stderr.on('data', (c) => (stderr += c));
  const closed = new Promise<number | null>((r) => p.on('close', r));
  return {
    send: (sql: string) => p.stdin.write(sql + '\n'),
    async waitFor(re: RegExp, which: 'stdout' | 'stderr' = 'stdout', ms = 10_000) {
      for (const end = Date.now() + ms; Date.now() < end; await sleep(25)) {
        if (re.test(which === 'stdout' ? stdout : stderr)) return;
      }
      throw new Error(`psql did not print ${re} on ${which}; stdout=${stdout} stderr=${stderr}`);
    },
    end: () => p.stdin.end(),
    kill: () => p.kill('SIGKILL'),
    closed,
    get stderr() {
      return stderr;
    },
  };
}

t.test('SIGTERM ends live sessions with a clear FATAL', async (t: Test) => {
  const c = pgClient(gw, 'orders', { application_name: 'sigterm-pg' });
  await c.connect();
  t.equal((await c.query('select 1 as one')).rows[0].one, 1);
  const errors: PgError[] = []; // the FATAL, then "Connection terminated unexpectedly"
  const errored = new Promise<PgError>((resolve) => c.on('error', (e: PgError) => (errors.push(e), resolve(errors[0]!))));

  const ps = livePsql(gw, token, 'sigterm-psql');
  t.teardown(() => ps.kill());
  ps.send('select 1234;');
  await ps.waitFor(/1234/);

  const exited = new Promise<number | null>((r) => gw.proc.once('exit', r));
  const started = Date.now();
  gw.proc.kill('SIGTERM');

  const err = await errored;
  t.equal(err.code, '57P01');
  t.equal(err.severity, 'FATAL');
  t.equal(err.message, 'terminating connection: gateway shutting down');

  // psql notices on its next command.
  ps.send('select 5678;');
  await ps.waitFor(/FATAL:  terminating connection: gateway shutting down/, 'stderr');
  ps.end();
  await ps.closed;

  t.equal(await exited, 0, 'the gateway exits cleanly');
  const took = Date.now() - started;
  t.ok(took < 6000, `gateway exited ${took} ms after SIGTERM`);
  t.ok(gw.logs().some((l) => l.event === 'shutdown' && l.signal === 'SIGTERM'));
  const ids = new Set(gw.logs().filter((l) => l.event === 'session.open' && /^sigterm-/.test(String(l.application))).map((l) => l.session));
  t.equal(ids.size, 2);
  const closes = gw.logs().filter((l) => l.event === 'session.close' && ids.has(l.session));
  t.same(closes.map((l) => l.reason), ['gateway shutting down', 'gateway shutting down'], 'both sessions closed with the shutdown reason');
});

t.test('the gateway never logged the target passwords or the token', async (t) => {
  const out = gw.output();
  for (const s of [TARGET_PASSWORD, BAD_PASSWORD, LEGACY_PASSWORD, PLAIN_PASSWORD, token]) t.notOk(out.includes(s));
});
