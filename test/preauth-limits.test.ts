// Resource limits before authentication, on every listener: one source cannot
// starve the others (per-source cap, eviction when the pool is full), a huge
// "password" is refused at its header, SSH sockets that never send a banner
// and admin API connections that send nothing are counted and timed out, and
// what was refused is logged, rate-limited.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import pg from 'pg';
import pgProtocol from 'pg-protocol';
import { withPostgres } from './helpers/pg-cluster.js';
import { prepareOrders, psql, startSluice, type Sluice } from './helpers/sluice.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';
import { Admission, LogLimiter, sourceOf } from '../src/gateway/admission.js';

const { serialize } = pgProtocol;
const TOO_MANY = 'too many connections waiting to authenticate; try again shortly';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('sources: IPv4 as is (also IPv4-mapped), IPv6 by /64', async (t) => {
  t.equal(sourceOf('192.0.2.7'), '192.0.2.7');
  t.equal(sourceOf('::ffff:192.0.2.7'), '192.0.2.7');
  t.equal(sourceOf('::FFFF:c000:0207'), '192.0.2.7');
  t.equal(sourceOf('::1'), '::1');
  t.equal(sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(sourceOf('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64', 'one /64, one source');
  t.equal(sourceOf('2001:0db8:0001:0003::1%eth0'), '2001:db8:1:3::/64');
  t.equal(sourceOf('2001:db8::'), '2001:db8:0:0::/64');
  t.equal(sourceOf('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64');
});

t.test('admission: per-source cap, eviction of the largest holder\'s oldest, never above a lowered limit', async (t) => {
  const a = new Admission();
  const limits = { max_unauthenticated: 4, max_unauthenticated_per_source: 3 };
  const evicted: string[] = [];
  const admit = (src: string, name: string, l = limits) => a.admit(src, name, 'postgres', l, () => evicted.push(name));
  const r1 = admit('A', 'a1');
  admit('A', 'a2');
  admit('A', 'a3');
  t.match(admit('A', 'a4'), { ok: false, reason: 'max_unauthenticated_per_source', held: 3 });
  admit('B', 'b1');
  t.equal(a.pending, 4);
  // Full: B (1) holds fewer than A (3), so A's oldest goes.
  t.match(admit('B', 'b2'), { ok: true, evicted: { source: 'A', client: 'a1', held: 3 } });
  t.same(evicted, ['a1']);
  // A and B hold 2 each: a newcomer from B (2) does not take from an equal holder.
  t.match(admit('B', 'b3'), { ok: false, reason: 'max_unauthenticated', held: 2 });
  t.match(admit('C', 'c1'), { ok: true, evicted: { source: 'A', client: 'a2' } });
  if (r1.ok) r1.release(); // a1's release after its eviction is a no-op
  t.equal(a.pending, 4);
  t.equal(a.held('A'), 1);
  // A reload lowered the limit below what is pending: nobody is admitted above it.
  t.match(admit('D', 'd1', { max_unauthenticated: 2, max_unauthenticated_per_source: 3 }), { ok: false, reason: 'max_unauthenticated' });
  t.equal(a.pending, 4, 'and nobody evicted for it');
  t.same(evicted, ['a1', 'a2']);
});

t.test('log limiter: one line per key per window, a global budget, counts of what was left out', async (t) => {
  const l = new LogLimiter(1000, 3);
  t.same(l.allow('k1', 0), { suppressed: 0, dropped: 0 });
  t.equal(l.allow('k1', 10), null);
  t.equal(l.allow('k1', 20), null);
  t.ok(l.allow('k2', 30));
  t.ok(l.allow('k3', 40));
  t.equal(l.allow('k4', 50), null, 'over the global budget');
  t.same(l.allow('k1', 1000), { suppressed: 2, dropped: 1 }, 'next window: what k1 missed, and what the budget dropped');
  t.same(l.allow('k4', 1001), { suppressed: 0, dropped: 0 });
});

const pgc = await withPostgres(t);
await prepareOrders(pgc);
const sshd = await startSshd(t);

// Gateway A: the default pool (256) and per-source cap (32); a login has 120 s,
// so trickling connections keep their slots for the whole test even on a loaded machine.
const gw = await startSluice(t, {
  cluster: pgc,
  ssh: true,
  config: { targets: { web01: sshTarget(sshd) }, limits: { auth_timeout: '120s' } },
});
const token = await gw.mint('ci', ['ci']);

/** The FATAL (or any ErrorResponse) fields in backend bytes. */
function errorFields(buf: Buffer): Record<string, string> | null {
  let i = 0;
  while (i + 5 <= buf.length) {
    const type = buf[i]!;
    const len = buf.readInt32BE(i + 1);
    if (type === 0x45 /* E */) {
      const f: Record<string, string> = {};
      let j = i + 5;
      while (j < i + 1 + len && buf[j] !== 0) {
        const z = buf.indexOf(0, j + 1);
        f[String.fromCharCode(buf[j]!)] = buf.toString('utf8', j + 1, z);
        j = z + 1;
      }
      return f;
    }
    i += 1 + len;
  }
  return null;
}

interface Trickle {
  sock: net.Socket;
  /** true once asked for the password (admitted), false if refused or closed first. */
  admitted: Promise<boolean>;
  closed: Promise<void>;
  data(): Buffer;
}

/**
 * A Postgres client from `localAddress` that sends its startup packet, then the
 * header of a password message and one byte of it every second: it holds an
 * unauthenticated slot for as long as the gateway lets it.
 */
function trickle(port: number, localAddress: string): Trickle {
  const sock = net.connect({ host: '127.0.0.1', port, localAddress });
  const chunks: Buffer[] = [];
  let timer: NodeJS.Timeout | undefined;
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.once('close', () => (clearInterval(timer), r())));
  const admitted = new Promise<boolean>((resolve) => {
    sock.once('connect', () => sock.write(serialize.startup({ user: 'ci', database: 'orders' })));
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (chunks.length > 1) return;
      if (c[0] !== 0x52 /* R */) return resolve(false);
      sock.write(Buffer.from([0x70, 0, 0, 0x04, 0x04])); // 'p', length 1028
      timer = setInterval(() => sock.write('x'), 1000);
      resolve(true);
    });
    sock.once('close', () => resolve(false));
  });
  return { sock, admitted, closed, data: () => Buffer.concat(chunks) };
}

async function opened(list: Trickle[]): Promise<{ admitted: Trickle[]; refused: Trickle[] }> {
  const flags = await Promise.all(list.map((x) => x.admitted));
  return { admitted: list.filter((_, i) => flags[i]), refused: list.filter((_, i) => !flags[i]) };
}

const sshRun = (g: Sluice, cmd: string) => run('ssh', token, ['-p', String(g.sshPort), 'web01@127.0.0.1', cmd], { logLevel: 'ERROR', timeoutMs: 30_000 });

t.test('one source with 300 trickling connections cannot block logins from another', async (t) => {
  const list = Array.from({ length: 300 }, () => trickle(gw.port, '127.0.0.2'));
  t.teardown(async () => {
    list.forEach((x) => x.sock.destroy());
    await Promise.all(list.map((x) => x.closed));
    await sleep(300); // and the gateway saw them go
  });
  const { admitted, refused } = await opened(list);
  t.equal(admitted.length, 32, 'the source got its 32 slots (limits.max_unauthenticated_per_source)');
  t.equal(refused.length, 268, 'the rest were refused');
  await Promise.all(refused.map((x) => x.closed));
  const f = errorFields(refused[0]!.data());
  t.equal(f?.C, '53300');
  t.equal(f?.M, TOO_MANY);

  // Meanwhile a real psql and a real ssh from another address log in.
  const r = await psql(gw, token, ['-Atc', 'select 42']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '42');
  const s = await sshRun(gw, 'echo ssh-ok');
  t.equal(s.code, 0, s.stderr);
  t.equal(s.stdout.toString().trim(), 'ssh-ok');
  t.notOk(admitted.some((x) => x.sock.destroyed), 'the admitted trickles are still waiting (they were not needed to make room)');

  // The cap is logged with the source, once per window, not once per refusal.
  const line = await gw.waitForLog((l) => l.event === 'connection.refused' && l.reason === 'max_unauthenticated_per_source' && l.source === '127.0.0.2');
  t.equal(line.protocol, 'postgres');
  t.equal(line.held, 32);
  const lines = gw.logs().filter((l) => l.event === 'connection.refused' && l.source === '127.0.0.2');
  t.ok(lines.length <= 2, `268 refusals, ${lines.length} log line(s)`);
});

t.test('a full pool: a newcomer from a source holding fewer evicts the largest holder\'s oldest pending connection', async (t) => {
  // 8 sources x 32 fill the pool of 256.
  const list: Trickle[] = [];
  t.teardown(() => list.forEach((x) => x.sock.destroy()));
  for (let i = 2; i <= 9; i++) {
    const batch = Array.from({ length: 32 }, () => trickle(gw.port, `127.0.0.${i}`));
    list.push(...batch);
    t.equal((await opened(batch)).admitted.length, 32, `127.0.0.${i}: 32 admitted`);
  }
  const evicted = async () => {
    await sleep(300); // the evicted get their FATAL and close
    return list.flatMap((x, i) => (x.sock.destroyed ? [i] : []));
  };
  t.same(await evicted(), [], 'all 256 are waiting');

  // A newcomer from a fresh source gets in: the oldest connection of the first
  // source holding the most (127.0.0.2) makes room.
  const extra = trickle(gw.port, '127.0.0.10');
  list.push(extra);
  t.equal(await extra.admitted, true, 'a newcomer from a fresh source gets in');
  t.same(await evicted(), [0], 'the oldest pending connection of 127.0.0.2 was evicted');

  // A real psql from 127.0.0.1: now 127.0.0.3 holds the most (32).
  const r = await psql(gw, token, ['-Atc', 'select 43']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '43');
  t.same(await evicted(), [0, 32], 'then the oldest of 127.0.0.3');

  // psql authenticated and left its slot; fill it again, then a real ssh login.
  const extra2 = trickle(gw.port, '127.0.0.12');
  list.push(extra2);
  t.equal(await extra2.admitted, true);
  t.equal((await evicted()).length, 2, 'a free slot needs no eviction');
  const s = await sshRun(gw, 'echo ssh-ok');
  t.equal(s.code, 0, s.stderr);
  t.equal(s.stdout.toString().trim(), 'ssh-ok');
  const gone = await evicted();
  t.same(gone, [0, 32, 64], 'the ssh login evicted the oldest of 127.0.0.4');
  for (const i of gone) {
    const f = errorFields(list[i]!.data());
    t.equal(f?.C, '53300', 'the evicted connection was told why');
    t.equal(f?.M, TOO_MANY);
  }
  const ev = await gw.waitForLog((l) => l.event === 'connection.evicted');
  t.equal(ev.held, 32, 'the evicted one came from a source holding the most');
  t.match(String(ev.source), /^127\.0\.0\.[2-9]$/);
});

t.test('a 24 MB password message is refused at its header; memory and a bystander session stay fine', async (t) => {
  const bystander = new pg.Client({ host: gw.host, port: gw.port, user: 'ci', database: 'orders', password: token, ssl: false });
  await bystander.connect();
  t.teardown(() => bystander.end().catch(() => {}));
  await bystander.query('select 1');
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))![1]) * 1024;
  const rssBefore = rss();

  const SIZE = 24 * 1024 * 1024;
  const attack = () =>
    new Promise<{ fields: Record<string, string> | null; ms: number; sent: number }>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: gw.port, localAddress: '127.0.0.11' });
      const chunks: Buffer[] = [];
      let started = 0;
      let sent = 0;
      sock.on('error', () => {});
      sock.once('connect', () => sock.write(serialize.startup({ user: 'ci', database: 'orders' })));
      sock.on('data', (c: Buffer) => {
        chunks.push(c);
        if (chunks.length !== 1) return;
        // Asked for the password: send the whole message as fast as the gateway takes it.
        started = Date.now();
        const header = Buffer.alloc(5);
        header[0] = 0x70;
        header.writeInt32BE(SIZE + 4, 1);
        sock.write(header);
        const piece = Buffer.alloc(64 * 1024, 0x41);
        const pump = () => {
          while (sent < SIZE && !sock.destroyed) {
            sent += piece.length;
            if (!sock.write(piece)) return void sock.once('drain', pump);
          }
        };
        pump();
      });
      sock.once('close', () => resolve({ fields: errorFields(Buffer.concat(chunks)), ms: Date.now() - started, sent }));
    });

  let worst = 0;
  let probing = true;
  const probe = (async () => {
    while (probing) {
      const t0 = Date.now();
      await bystander.query('select 1');
      worst = Math.max(worst, Date.now() - t0);
      await sleep(20);
    }
  })();
  const results = await Promise.all([attack(), attack(), attack(), attack()]);
  probing = false;
  await probe;
  for (const r of results) {
    t.equal(r.fields?.C, '28P01');
    t.match(r.fields?.M, /^token too large: the password message has 25165828 bytes; a Sluice token is at most 16384 characters$/);
    t.ok(r.ms < 3000, `refused and closed after ${r.ms} ms (${(r.sent / 1048576).toFixed(1)} MB written by the client)`);
  }
  const grown = rss() - rssBefore;
  t.ok(grown < 64 * 1024 * 1024, `gateway RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
  t.ok(worst < 1000, `a bystander's query took at most ${worst} ms meanwhile`);

  const line = await gw.waitForLog((l) => l.event === 'protocol.violation' && l.reason === 'message_too_large');
  t.equal(line.length, SIZE + 4);
  t.ok((line.bytes_read as number) <= 256 * 1024, `the gateway had read ${line.bytes_read} bytes when it refused`);
});

// Gateway B: a small pool and a short auth timeout, for connections that never speak.
t.test('silent SSH sockets and idle admin API connections are counted, timed out and logged', async (t) => {
  const b = await startSluice(t, {
    cluster: pgc,
    ssh: true,
    admin: true,
    tls: false,
    config: { targets: { web01: sshTarget(sshd) }, limits: { auth_timeout: '2s', max_unauthenticated: 8 } },
  });
  const bToken = await b.mint('ci', ['ci']);
  const sshPort = b.sshPort!;
  const adminPort = Number(new URL(b.adminUrl!).port);

  /** Opens a connection from `from` that never sends a byte; records what it got and when it closed. */
  const silent = (port: number, from: string) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const opened = Date.now();
    const out: Buffer[] = [];
    sock.on('data', (c: Buffer) => out.push(c));
    sock.on('error', () => {});
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - opened)));
    return { sock, closed, text: () => Buffer.concat(out).toString('latin1') };
  };

  await t.test('ssh: counted from TCP accept, refused over the pool, closed after auth_timeout', async (t) => {
    const socks = [];
    for (let i = 0; i < 12; i++) {
      socks.push(silent(sshPort, '127.0.0.3'));
      await sleep(20);
    }
    t.teardown(() => socks.forEach((s) => s.sock.destroy()));
    await sleep(500);
    const early = socks.filter((s) => s.sock.destroyed || s.sock.readableEnded);
    t.equal(early.length, 4, 'the 4 over max_unauthenticated (8) were refused at once');
    t.match(early[0]!.text(), /too many connections waiting to authenticate/, 'with an SSH DISCONNECT that says why');

    // While 8 silent sockets hold the pool, a real login from elsewhere gets in (it evicts one).
    const r = await psql(b, bToken, ['-Atc', 'select 7'], { conn: { sslmode: 'disable' } });
    t.equal(r.code, 0, r.stderr);

    const times = await Promise.all(socks.map((s) => Promise.race([s.closed, sleep(6000).then(() => -1)])));
    t.notOk(times.includes(-1), `every silent socket was closed (${times.join(', ')} ms)`);
    t.ok(Math.max(...times) < 4000, 'within auth_timeout and a little');

    const refused = b.logs().filter((l) => l.event === 'connection.refused' && l.protocol === 'ssh' && l.source === '127.0.0.3');
    t.equal(refused.length, 1, 'the refusals: one log line');
    const timeouts = await b.waitForLog((l) => l.event === 'connection.timeout' && l.protocol === 'ssh' && l.reason === 'auth_timeout');
    t.equal(timeouts.source, '127.0.0.3');
    t.equal(b.logs().filter((l) => l.event === 'connection.timeout' && l.source === '127.0.0.3').length, 1, 'the timeouts: one log line');
  });

  await t.test('admin API: silent connections are counted and closed; a refused one that asks gets 503', async (t) => {
    const socks = [];
    for (let i = 0; i < 8; i++) socks.push(silent(adminPort, '127.0.0.4'));
    t.teardown(() => socks.forEach((s) => s.sock.destroy()));
    await sleep(300);
    // The pool is full of 127.0.0.4: another one from there is refused, and told so.
    const ask = net.connect({ host: '127.0.0.1', port: adminPort, localAddress: '127.0.0.4' });
    ask.on('error', () => {});
    ask.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const answer = await new Promise<string>((r) => {
      let got = '';
      ask.on('data', (c) => (got += c));
      ask.once('close', () => r(got));
    });
    t.match(answer, /^HTTP\/1\.1 503 /);
    t.match(answer, /too many connections waiting to authenticate/);
    // Another source still gets in (evicting one of 127.0.0.4's).
    const health = await fetch(`${b.adminUrl}/healthz`);
    t.equal(health.status, 200);

    const times = await Promise.all(socks.map((s) => Promise.race([s.closed, sleep(8000).then(() => -1)])));
    t.notOk(times.includes(-1), `every silent admin connection was closed (${times.join(', ')} ms)`);
    t.ok(Math.max(...times) < 5000, 'within the request header deadline (at most auth_timeout) and the 1 s check');
    t.ok(b.logs().some((l) => l.event === 'connection.refused' && l.protocol === 'admin' && l.source === '127.0.0.4'), 'the refusal is logged');
  });

  await t.test('startup_timeout: a connection that sends nothing is dropped sooner than one that is logging in', async (t) => {
    await b.reload({ targets: { web01: sshTarget(sshd) }, limits: { auth_timeout: '4s', startup_timeout: '1s', max_unauthenticated: 8 } });
    const pgSilent = silent(b.port, '127.0.0.5');
    const sshSilent = silent(sshPort, '127.0.0.5');
    const login = trickle(b.port, '127.0.0.6');
    t.teardown(() => [pgSilent.sock, sshSilent.sock, login.sock].forEach((s) => s.destroy()));
    t.equal(await login.admitted, true);
    const [pgMs, sshMs] = await Promise.all([pgSilent.closed, sshSilent.closed]);
    t.ok(pgMs >= 900 && pgMs < 2500, `postgres: closed after ${pgMs} ms`);
    t.ok(sshMs >= 900 && sshMs < 2500, `ssh: closed after ${sshMs} ms`);
    const f = errorFields(Buffer.from(pgSilent.text(), 'latin1'));
    t.equal(f?.C, '08P01');
    t.equal(f?.M, 'startup packet not received within 1000 ms (limits.startup_timeout)');
    t.match(sshSilent.text(), /key exchange not completed within 1000 ms \(limits\.startup_timeout\)/);
    t.notOk(login.sock.destroyed, 'the client that sent its startup packet is still waiting');
    await login.closed;
    const f2 = errorFields(login.data());
    t.equal(f2?.M, 'authentication not completed within 4000 ms (limits.auth_timeout)');
  });
});

t.test('clients that reset the connection during startup are not gateway errors', async (t) => {
  // Half a password message, then a TCP reset: the gateway's read fails with ECONNRESET
  // (or sees a plain close, depending on timing). Neither is a fault of the gateway.
  const list = Array.from({ length: 20 }, () => trickle(gw.port, '127.0.0.3'));
  await Promise.all(
    list.map(async (x) => {
      if (await x.admitted) x.sock.resetAndDestroy();
      await x.closed;
    }),
  );
  await sleep(500);
  const errors = gw.logs().filter((l) => l.event === 'connection.error');
  t.equal(errors.length, 0, `no "connection failed during startup" warning: ${JSON.stringify(errors[0] ?? null)}`);
  t.ok(gw.logs().filter((l) => l.event === 'connection.reset').length <= 2, 'resets are logged quietly, rate-limited');
  const r = await psql(gw, token, ['-Atc', 'select 1']);
  t.equal(r.code, 0, r.stderr);
});
