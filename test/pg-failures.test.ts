// What a user sees when something is wrong, and what the gateway survives:
// unreachable targets, a bad stored credential, upstream TLS failures, md5
// upstreams, the credential never reaching the client's wire, malformed
// packets, auth timeouts, the unauthenticated-connection cap and shutdown.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';
import pgProtocol from 'pg-protocol';
import { makeCA } from './helpers/certs.js';
import { withPostgres } from './helpers/pg-cluster.js';
import { freePort } from './helpers/ports.js';
import { connString, ordersTarget, prepareOrders, psql, startSluice, TARGET_PASSWORD, type Sluice } from './helpers/sluice.js';

// Default import: the named export is not visible under every ESM loader.
const { serialize } = pgProtocol;

const BAD_PASSWORD = 'Wr0ng-Stored-Secret-do-not-echo';
const CMD_STDOUT_SECRET = 'Cmd-Stdout-Secret-never-logged';
const CMD_STDERR_SECRET = 'hvs.Cmd-Stderr-Secret-never-logged';
const LEGACY_PASSWORD = 'Legacy-md5-Pa55word';

const pgc = await withPostgres(t, { md5Users: ['legacy'] });
await prepareOrders(pgc);
await pgc.createUser('legacy', LEGACY_PASSWORD, { md5: true });
await pgc.sql(
  `create table items (id int primary key, name text);
   insert into items select g, 'item ' || g from generate_series(1, 50) g;
   alter table items owner to app;
   grant select on items to legacy;`,
  'orders',
);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-fail-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const otherCA = makeCA(path.join(tmp, 'other-ca'), 'A CA that did not sign the server');
const closedPort = await freePort(); // nothing listens there

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
  env: { BAD_PG_PASSWORD: BAD_PASSWORD, LEGACY_PG_PASSWORD: LEGACY_PASSWORD },
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
      legacy: ordersTarget(pgc, { user: 'legacy', password: { env: 'LEGACY_PG_PASSWORD' } }),
      'legacy-plain': ordersTarget(pgc, { user: 'legacy', password: { env: 'LEGACY_PG_PASSWORD' }, tls: { mode: 'disable' } }),
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

t.test('target down: a clear FATAL, and other targets keep working', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'down' } });
  t.equal(r.code, 2);
  t.equal(fatalOf(r.stderr).message, `target "down" is unreachable (127.0.0.1:${closedPort}): ECONNREFUSED`, r.stderr);
  const err = await pgConnectError(gw, 'down');
  t.equal(err?.code, '08001');
  t.equal(err?.severity, 'FATAL');

  const ok = await psql(gw, token, ['-Atc', 'select count(*) from items']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.stdout.trim(), '50');
  const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'down');
  t.match(String(logged.err), /ECONNREFUSED/);
});

t.test('a wrong stored password: FATAL names the credential problem, never the password', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badpw' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.equal(f.message, `target "badpw" rejected Sluice's stored credential for user "app"`, r.stderr);
  t.equal(f.detail, 'The server said: password authentication failed for user "app". Check targets.badpw.user and targets.badpw.password.');
  const err = await pgConnectError(gw, 'badpw');
  t.equal(err?.code, '08006');
  t.match(err?.message, /rejected Sluice's stored credential/);
  for (const text of [r.stderr, err?.message ?? '', err?.detail ?? '', gw.output()]) {
    t.notOk(text.includes(BAD_PASSWORD), 'the wrong password is not shown');
    t.notOk(text.includes(TARGET_PASSWORD), 'nor the real one');
  }
});

t.test('upstream TLS verification failure (CA did not sign the server cert)', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badtls' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.match(f.message, /^TLS to target "badtls" failed: (unable to verify the first certificate|unable to get local issuer certificate|self[- ]signed certificate.*)$/, r.stderr);
  t.equal(f.detail, "targets.badtls.tls.mode is verify-full; check targets.badtls.tls.ca and the server certificate's names");
  const err = await pgConnectError(gw, 'badtls');
  t.equal(err?.code, '08001');
});

t.test('upstream TLS: the server certificate does not name the configured servername', async (t) => {
  const r = await psql(gw, token, ['-Atc', 'select 1'], { conn: { dbname: 'badname' } });
  t.equal(r.code, 2);
  const f = fatalOf(r.stderr);
  t.match(f.message, /^TLS to target "badname" failed: Hostname\/IP does not match certificate's altnames: Host: db\.wrong-name\.invalid\. is not in the cert's altnames: DNS:localhost, IP Address:127\.0\.0\.1$/, r.stderr);
  t.equal(f.detail, "targets.badname.tls.mode is verify-full; check targets.badname.tls.ca and the server certificate's names");
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

t.test('an md5 upstream user works (over TLS and without)', async (t) => {
  t.equal((await pgc.sql("select rolpassword like 'md5%' from pg_authid where rolname = 'legacy'")).trim(), 't', 'legacy has an md5 hash');
  for (const db of ['legacy', 'legacy-plain']) {
    const r = await psql(gw, token, ['-Atc', 'select current_user, count(*) from items'], { conn: { dbname: db } });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), 'legacy|50', db);
  }
  // The server really asked for md5: hba puts an md5 line before the scram one.
  const hba = await pgc.sql("select auth_method from pg_hba_file_rules where 'legacy' = any(user_name)");
  t.equal(hba.trim(), 'md5');
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
  t.equal(e?.fields?.M, 'unsupported frontend protocol 2.0: Sluice speaks 3.0');

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
  for (const s of [TARGET_PASSWORD, BAD_PASSWORD, LEGACY_PASSWORD, token]) t.notOk(out.includes(s));
});
