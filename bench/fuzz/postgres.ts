// Fuzzing the Postgres listener.
//
// Corpus: what real clients send. psql's SSLRequest, startup packet and password message and a
// Node TLS ClientHello offering ALPN "postgresql" (sslnegotiation=direct) are captured at
// prepare time from the real programs; GSSENCRequest, CancelRequest (3.0 and 3.2 keys),
// SASLInitialResponse, protocol 3.2 with `_pq_.` options, replication startups and every
// frontend message after login (Query, Parse/Bind/Describe/Execute/Sync, Close, Flush,
// FunctionCall, CopyData/CopyDone/CopyFail, Terminate) are built with pg-protocol's serializer.
//
// Live tier: mutated startup sequences on fresh connections (pre-auth), and mutated frontend
// messages inside sessions logged in with a real token (post-auth: content mutations that keep
// the framing, and framing mutations that end the session), against a real gateway relaying to a
// real Postgres.
// In-process tier: the listener's own connection handler (startup, TLS negotiation, password
// message, CancelRequest: src/protocols/postgres/connection.ts with its MessageReader) on an
// in-memory socket with a core that refuses every token; the relay's Framer with the relay's
// frontend checks (VALID_FRONTEND, limits.max_message_bytes); the SQL analysis every Query
// and Parse goes through (analyzeSql). Documented errors: ProtocolViolation (and MessageTooLarge);
// analyzeSql and the connection handler never throw.
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import pg from 'pg';
import pgProtocol from 'pg-protocol';
import { handleConnection, type ListenerState } from '../../src/protocols/postgres/connection.js';
import { CancelKeys } from '../../src/protocols/postgres/cancel-keys.js';
import { VALID_FRONTEND } from '../../src/protocols/postgres/constants.js';
import { Framer, ProtocolViolation } from '../../src/protocols/postgres/framer.js';
import { AuthError } from '../../src/identity/types.js';
import { analyzeSql, initSqlAnalysis } from '../../src/policy/sql/facts.js';
import type { Core } from '../../src/protocols/kit/module.js';
import { ordersTarget, psql } from '../../test/helpers/sluice.js';
import { startCluster, type Bench } from '../lib/paths.js';
import { caseRng, mutate, split, type Framing } from './mutator.js';
import { add, shoot, sleep, workers, type Bystander, type Counts, type Ctx, type FuzzProtocol, pacer } from './types.js';

const { serialize } = pgProtocol;

/** Typed messages have a letter first; startup-phase packets (length first, < 16 MB) a zero. */
const PG_FRAMING: Framing = {
  lengthAt: (m) => (m.length === 0 ? null : m[0] === 0 ? 0 : 1),
  lengthIncludesSelf: true,
  typeAt: 0,
  make(type, body) {
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeInt32BE(4 + body.length, 1);
    return Buffer.concat([h, body]);
  },
};

const int32 = (...ns: number[]) => {
  const b = Buffer.alloc(4 * ns.length);
  ns.forEach((n, i) => b.writeInt32BE(n | 0, 4 * i));
  return b;
};
const packet = (body: Buffer) => Buffer.concat([int32(4 + body.length), body]);
const SSL_REQUEST = packet(int32(80877103));
const GSSENC_REQUEST = packet(int32(80877104));
const startup = (params: Record<string, string>, version = 196608) =>
  packet(Buffer.concat([int32(version), ...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])]));
const typed = (type: string, body: Buffer) => PG_FRAMING.make(type.charCodeAt(0), body);
const cstr = (s: string) => Buffer.from(s + '\0');

/** Pre-auth sequences: what a client sends from connect up to and including its password. */
function preAuthCorpus(token: string, captured: Buffer[][]): Buffer[][] {
  const params = { user: 'fuzz', database: 'orders', application_name: 'sluice-fuzz', client_encoding: 'UTF8' };
  const pw = serialize.password(token);
  const sasl = typed('p', Buffer.concat([cstr('SCRAM-SHA-256'), int32(32), Buffer.from('n,,n=,r=' + 'x'.repeat(24))]));
  return [
    ...captured,
    [startup(params), pw],
    [SSL_REQUEST, startup(params), pw],
    [GSSENC_REQUEST, startup(params), pw],
    [GSSENC_REQUEST, SSL_REQUEST, startup(params), pw],
    [startup(params, 196610), pw],
    [startup({ ...params, '_pq_.test_protocol_negotiation': 'on' }, 196611), pw],
    [startup({ ...params, replication: 'database' }), pw],
    [startup({ user: 'fuzz' }), pw],
    [startup(params), sasl],
    [startup(params), pw, serialize.query('select 1')],
    [packet(Buffer.concat([int32(80877102, 4242), crypto.randomBytes(4)]))],
    [packet(Buffer.concat([int32(80877102, 4242), crypto.randomBytes(32)]))],
    [startup(params, 0x00020000)],
  ];
}

/** Post-auth corpus: groups of frontend messages a driver sends, each ending where the server answers. */
function postAuthCorpus(): Buffer[][] {
  const q = (s: string) => serialize.query(s);
  const ext = (text: string, values: (string | null)[], name = '') => [
    serialize.parse({ name, text, types: values.map(() => 0) }),
    serialize.bind({ statement: name, values }),
    serialize.describe({ type: 'P' }),
    serialize.execute({ rows: 0 }),
    serialize.sync(),
  ];
  return [
    [q('select 1')],
    [q("select 'a'::text as x, 2 as y, now(); select $$dollar$$, E'\\x41'")],
    [q('select * from generate_series(1, 50) g')],
    [q('begin'), q('select 1'), q('commit')],
    [q('set application_name = fuzz'), q('show application_name')],
    [q('drop table if exists nothing_here')], // denied by the fuzz policy: the gate answers
    [q('set role postgres')],
    [q('/* comment */ select 1 -- and ; drop table x')],
    ext('select $1::int + 1', ['41']),
    ext('select $1::text, $2::text', ['a', null], 's1'),
    [serialize.parse({ name: 's2', text: 'select 1', types: [] }), serialize.describe({ type: 'S', name: 's2' }), serialize.sync()],
    [serialize.close({ type: 'S', name: 's2' }), serialize.sync()],
    [serialize.flush()],
    [q('create temp table fz(a int, b text)'), q('copy fz from stdin'), serialize.copyData(Buffer.from('1\tone\n2\ttwo\n')), serialize.copyDone()],
    [q('create temp table fz2(a int)'), q('copy fz2 from stdin'), serialize.copyData(Buffer.from('1\n')), serialize.copyFail('stop')],
    [q('copy (select 1, 2) to stdout')],
    [typed('F', Buffer.concat([int32(1598), Buffer.from([0, 0, 0, 0, 0, 0])]))], // FunctionCall (pg_backend_pid's oid), no args
    [q('select 1'), serialize.end()],
  ];
}

const SQL_CORPUS = [
  'select 1',
  "select a, b from orders where id = 42 and note like 'x%' order by 1 limit 10",
  'with w as (select * from t) insert into u select * from w returning *',
  'update accounts set balance = balance - 1 where id = $1',
  'delete from t where a in (select b from c)',
  "do $$ begin perform pg_sleep(0); execute 'drop table x'; end $$",
  "create function f() returns int language plpgsql as $f$ begin return 1; end $f$",
  'copy t (a, b) from stdin with (format csv, header true)',
  'explain analyze select * from t',
  "set search_path = public, 'evil'; select pg_read_file('/etc/passwd')",
  'grant all on t to public; revoke select on t from bob',
  "select $q$ ' $q$, e'\\'', U&'\\0041', B'1010', x'ff', 1e10, .5::numeric",
  'begin; savepoint s; rollback to s; commit',
  'prepare p as select $1; execute p(1); deallocate p',
  'select * from a natural join b full outer join c using (x) cross join lateral (select 1) l',
];

/** Captures psql's startup sequence and a TLS ClientHello with ALPN postgresql. */
async function captureClients(token: string): Promise<{ seqs: Buffer[][]; notes: string[] }> {
  const seqs: Buffer[][] = [];
  const notes: string[] = [];
  // psql: SSLRequest (answered N), startup, password (after AuthenticationCleartextPassword).
  const got: Buffer[] = [];
  const srv = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    let phase = 0;
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        if (phase < 2) {
          if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
          const n = buf.readInt32BE(0);
          const p = buf.subarray(0, n);
          buf = buf.subarray(n);
          got.push(Buffer.from(p));
          if (p.length === 8 && p.readInt32BE(4) === 80877103) s.write('N');
          else {
            phase = 2;
            s.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
          }
        } else {
          if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return;
          got.push(Buffer.from(buf.subarray(0, 1 + buf.readInt32BE(1))));
          s.end(Buffer.from([0x45, 0, 0, 0, 6, 0, 0])); // an empty ErrorResponse: psql gives up
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) =>
    execFile('psql', ['-X', '-c', 'select 1', `host=127.0.0.1 port=${port} user=fuzz dbname=orders sslmode=prefer gssencmode=disable application_name=psql`], { env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: '5' }, timeout: 10_000 }, () => resolve()),
  );
  srv.close();
  if (got.length >= 2) {
    seqs.push(got);
    notes.push(`psql: ${got.length} messages captured (${got.map((b) => b.length).join(', ')} bytes)`);
  } else notes.push('psql capture failed: using built messages only');

  // A TLS ClientHello (sslnegotiation=direct), from Node's TLS client.
  const hello: Buffer[] = [];
  const srv2 = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      hello.push(c);
      s.destroy();
    });
  });
  await new Promise<void>((r) => srv2.listen(0, '127.0.0.1', r));
  const c = tls.connect({ host: '127.0.0.1', port: (srv2.address() as net.AddressInfo).port, servername: 'localhost', ALPNProtocols: ['postgresql'], rejectUnauthorized: false });
  c.on('error', () => {});
  await sleep(300);
  c.destroy();
  srv2.close();
  if (hello.length) {
    seqs.push([Buffer.concat(hello)]);
    notes.push(`TLS ClientHello (ALPN postgresql): ${Buffer.concat(hello).length} bytes captured`);
  }
  return { seqs, notes };
}

let captured: Buffer[][] = [];
let sharedTls: tls.SecureContext | undefined;

/** Counts ReadyForQuery messages in a backend stream split anywhere. */
class ReadyCounter {
  private buf: Buffer = Buffer.alloc(0);
  ready = 0;
  authAsked = false;
  error = '';
  push(c: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, c]) : c;
    let i = 0;
    while (this.buf.length - i >= 5) {
      const len = this.buf.readInt32BE(i + 1);
      if (this.buf.length - i < 1 + len) break;
      const t = this.buf[i];
      if (t === 0x5a) this.ready++;
      else if (t === 0x52 && this.buf.readInt32BE(i + 5) === 3) this.authAsked = true;
      else if (t === 0x45 && !this.error) this.error = this.buf.toString('utf8', i + 5, i + 1 + len).replace(/\0/g, ' ').slice(0, 200);
      i += 1 + len;
    }
    this.buf = this.buf.subarray(i);
  }
}

/** One authenticated session from `source`, fed `n` mutated cases; resolves with the cases written. */
async function liveSession(ctx: Ctx, source: string, first: number, n: number, counts: Counts): Promise<number> {
  const sock = net.connect({ host: ctx.gw.host, port: ctx.gw.port, localAddress: source });
  sock.setNoDelay(true);
  const rc = new ReadyCounter();
  let closed = false;
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  sock.on('data', (c: Buffer) => (rc.push(c), poke()));
  sock.on('error', () => {});
  sock.on('close', () => ((closed = true), poke()));
  const until = async (pred: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!pred() && !closed && Date.now() < end) await Promise.race([new Promise<void>((r) => (wake = r)), sleep(Math.max(1, end - Date.now()))]);
    return pred();
  };
  try {
    await new Promise<void>((resolve, reject) => (sock.once('connect', resolve), sock.once('error', reject)));
    sock.write(startup({ user: 'fuzz', database: 'orders', application_name: 'sluice-fuzz' }));
    if (!(await until(() => rc.authAsked, 10_000))) {
      add(counts.notes, 'post-auth login failed');
      return 0;
    }
    sock.write(serialize.password(ctx.fuzzToken));
    if (!(await until(() => rc.ready > 0, 15_000))) {
      add(counts.notes, 'post-auth login failed');
      if (rc.error) add(counts.notes, `login error: ${rc.error.slice(0, 80)}`);
      return 0;
    }
    add(counts.notes, 'post-auth sessions');
    const corpus = postAuthCorpus();
    let sent = 0;
    let syncs = 0;
    for (let k = 0; k < n && !closed && Date.now() < ctx.deadline; k++) {
      const rng = caseRng(ctx.seed, 'pg-live-post', first + k);
      const msgs = rng.pick(corpus);
      const safe = rng.chance(0.8);
      const m = mutate(rng, msgs, PG_FRAMING, { framingSafe: safe, maxOversize: 200_000 });
      const chunks = split(rng, m.bytes);
      for (const c of chunks) {
        if (closed) break;
        sock.write(c);
        if (chunks.length > 1 && rng.chance(0.3)) await new Promise((r) => setImmediate(r));
      }
      if (closed) break;
      sock.write(serialize.sync());
      syncs++;
      sent++;
      // Let the server answer before the next case (bounded: a length lie can make it wait for bytes forever).
      if (!(await until(() => rc.ready > syncs - 2, 1500))) break;
    }
    if (closed) add(counts.notes, 'post-auth sessions ended by the gateway');
    else sock.end(serialize.end());
    return sent;
  } catch {
    add(counts.notes, 'post-auth connect errors');
    return 0;
  } finally {
    setTimeout(() => sock.destroy(), 200).unref();
  }
}

/** A core that admits everyone and refuses every token: the connection handler's pre-auth paths in process. */
function stubCore(internal: string[]): Core {
  const noop = () => {};
  const log = {
    info: noop,
    debug: noop,
    trace: noop,
    warn: (o: Record<string, unknown>) => {
      if (o.event === 'connection.error') internal.push(String(o.err));
    },
    error: (o: Record<string, unknown>) => internal.push(String(o.err ?? o.event)),
    fatal: (o: Record<string, unknown>) => internal.push(String(o.err ?? o.event)),
  };
  const cfg = { limits: { max_message_bytes: 64 << 20, auth_timeout: 15_000, startup_timeout: 5_000, max_unauthenticated: 256, max_unauthenticated_per_source: 32 } };
  return {
    log,
    config: () => cfg,
    authenticate: async () => {
      throw new AuthError('token_malformed', 'the password is not a Sluice token');
    },
    targetPassword: async () => undefined,
    targetSecret: async () => undefined,
    sessions: {},
    admitUnauthenticated: () => noop,
    logPreAuth: noop,
  } as unknown as Core;
}

/** An in-memory client socket: what the handler writes is counted and dropped. */
class MemSocket extends Duplex {
  remoteAddress = '127.0.0.1';
  remotePort = 40000;
  bytesRead = 0;
  written = 0;
  setNoDelay(): this {
    return this;
  }
  override _read(): void {}
  override _write(c: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written += c.length;
    cb();
  }
}

function selfSignedContext(): tls.SecureContext {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'sluice-fuzz-tls-'));
  const key = path.join(dir, 'k.pem');
  const cert = path.join(dir, 'c.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  const ctx = tls.createSecureContext({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
  fs.rmSync(dir, { recursive: true, force: true });
  return ctx;
}

function describeErr(e: unknown): string {
  const err = e as Error;
  return `${err?.name ?? typeof e}: ${err?.message ?? String(e)}${err?.stack ? ' @ ' + err.stack.split('\n').slice(1, 4).join(' | ').trim() : ''}`;
}

export const postgres: FuzzProtocol = {
  name: 'postgres',
  describe: 'startup/TLS negotiation/password/CancelRequest before login; frontend messages after login (relay framer, policy gate, SQL analysis)',

  async prepare(b: Bench) {
    const pg = await startCluster(b);
    // The fuzz identity may reach the target; its policy denies DDL and role changes (so the gate answers some statements itself).
    return {
      targets: { orders: ordersTarget(pg, { allow: ['group:ci', 'group:fuzz'] }) },
      policies: [
        {
          name: 'fuzz-sql',
          match: { groups: ['fuzz'] },
          rules: [
            { deny: { kind: ['drop', 'truncate', 'alter_system', 'grant', 'revoke', 'create_role'] } },
            { deny: { set_role: true } },
            { allow: { kind: ['select', 'insert', 'update', 'delete', 'begin', 'commit', 'rollback', 'set', 'show', 'copy', 'create_table'] } },
          ],
        },
        { name: 'bystander-sql', match: { groups: ['ci'] }, rules: [{ allow: { kind: ['select'] } }] },
      ],
      capture: async (token: string) => {
        const c = await captureClients(token);
        captured = c.seqs;
        return c.notes;
      },
    };
  },

  bystander(ctx: Ctx): Bystander {
    const st: Bystander = { name: 'postgres: node-postgres query loop on one session + a fresh psql login every 5 s', ok: 0, failed: 0, latencies: [], errors: [], stop: async () => {} };
    let running = true;
    const note = (e: string) => {
      st.failed++;
      if (st.errors.length < 20) st.errors.push(`${new Date().toISOString()} ${e}`);
    };
    const loop = (async () => {
      let client: pg.Client | null = null;
      let i = 0;
      while (running) {
        try {
          if (!client) {
            client = new pg.Client({ host: ctx.gw.host, port: ctx.gw.port, user: 'ci', password: ctx.bystanderToken, database: 'orders', connectionTimeoutMillis: 10_000, query_timeout: 10_000 });
            client.on('error', () => {});
            await client.connect();
          }
          const t0 = performance.now();
          const r = await client.query('select $1::int + 1 as n', [i]);
          if (r.rows[0]?.n !== i + 1) throw new Error(`wrong answer ${JSON.stringify(r.rows)}`);
          st.latencies.push(performance.now() - t0);
          st.ok++;
          i++;
        } catch (e) {
          note(`query: ${(e as Error).message}`);
          await client?.end().catch(() => {});
          client = null;
        }
        await sleep(20);
      }
      await client?.end().catch(() => {});
    })();
    const fresh = (async () => {
      while (running) {
        for (let s = 0; s < 50 && running; s++) await sleep(100);
        if (!running) break;
        const t0 = performance.now();
        const r = await psql(ctx.gw, ctx.bystanderToken, ['-Atc', 'select 42'], { timeoutMs: 30_000 });
        if (r.code === 0 && r.stdout.trim() === '42') {
          st.ok++;
          st.latencies.push(performance.now() - t0);
        } else note(`psql login: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
      }
    })();
    st.stop = async () => {
      running = false;
      await Promise.all([loop, fresh]);
    };
    return st;
  },

  async live(ctx: Ctx): Promise<Counts> {
    const counts: Counts = { cases: {}, notes: {} };
    const corpus = preAuthCorpus(ctx.fuzzToken, captured);
    let pre = 0;
    let post = 0;
    const more = () => Date.now() < ctx.deadline && pre + post < ctx.maxLiveCases;
    // A quarter of the workers hold sessions (post-auth); the rest open fresh connections (pre-auth).
    const postWorkers = Math.max(1, Math.floor(ctx.concurrency / 4));
    await workers(ctx.concurrency, async (w) => {
      if (!more()) return false;
      const source = ctx.sources[w % ctx.sources.length]!;
      if (w < postWorkers) {
        const first = post;
        post += 40; // reserve case numbers; the unused ones are given back below
        const sent = await liveSession(ctx, source, first, 40, counts);
        post -= 40 - sent;
        add(counts.cases, 'post-auth message', sent);
        return true;
      }
      const n = pre++;
      const rng = caseRng(ctx.seed, 'pg-live-pre', n);
      const m = mutate(rng, rng.pick(corpus), PG_FRAMING);
      const r = await shoot(ctx.gw.port, source, split(rng, m.bytes), { waitMs: 300, halfClose: rng.chance(0.5) });
      add(counts.cases, 'pre-auth connection');
      if (r.reply > 0) add(counts.notes, 'pre-auth answered');
      if (r.error) add(counts.notes, `pre-auth socket ${r.error}`);
      return true;
    });
    return counts;
  },

  exportCorpus: () => captured,
  importCorpus(c: unknown) {
    captured = (c as Uint8Array[][]).map((seq) => seq.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
  },

  async inProcess(ctx: Ctx, cases: number, onProgress, from = 0): Promise<Counts> {
    await initSqlAnalysis();
    const counts: Counts = { cases: {}, notes: {} };
    const pre = preAuthCorpus(ctx.fuzzToken, captured);
    const post = postAuthCorpus();
    const internal: string[] = [];
    const core = stubCore(internal);
    const state: ListenerState = { cfg: { allow_insecure_auth: false } as ListenerState['cfg'], secureContext: (sharedTls ??= selfSignedContext()), cancelKeys: new CancelKeys(), catalogs: new Map() };
    const noTls: ListenerState = { ...state, secureContext: undefined };
    const finding = (stream: string, n: number, e: unknown, ops?: string[], input?: Buffer) =>
      ctx.findings.push({ protocol: 'postgres', stream, case: n, error: describeErr(e), ops, input: input?.subarray(0, 256).toString('hex') });

    const pace = pacer(onProgress);
    for (let n = from; n < from + cases; n++) {
      const paused = pace(n - from);
      if (paused) await paused;
      const pick = n % 10;
      if (pick < 4) {
        // The connection handler before login.
        const rng = caseRng(ctx.seed, 'pg-startup', n);
        const m = mutate(rng, rng.pick(pre), PG_FRAMING);
        const chunks = split(rng, m.bytes);
        const sock = new MemSocket();
        internal.length = 0;
        let settled = false;
        const p = handleConnection(core, rng.chance(0.7) ? state : noTls, sock as unknown as net.Socket).then(
          () => (settled = true),
          (e) => {
            settled = true;
            finding('pg-startup', n, e, m.ops, m.bytes);
          },
        );
        try {
          for (let k = 0; k < chunks.length; k++) {
            sock.bytesRead += chunks[k]!.length;
            sock.push(chunks[k]);
            if ((k & 7) === 7) await null;
          }
          sock.push(null);
        } catch (e) {
          finding('pg-startup', n, e, m.ops, m.bytes);
        }
        await Promise.race([p, sleep(100)]);
        if (!settled) {
          // Waiting for bytes that never come is not a crash (auth_timeout ends it); counted, not a finding.
          add(counts.notes, 'startup cases still waiting 100 ms after end of input (then dropped)');
          if (process.env.FUZZ_DEBUG) ctx.log(`startup case ${n} still waiting: ops ${m.ops.join(',')} input ${m.bytes.subarray(0, 64).toString('hex')}`);
          sock.destroy();
        }
        for (const e of internal) finding('pg-startup', n, new Error(`internal error path taken: ${e}`), m.ops, m.bytes);
        add(counts.cases, 'startup handler');
        sock.destroy();
      } else if (pick < 9) {
        // The relay's frontend framing after login, with analyzeSql on every Query and Parse.
        const rng = caseRng(ctx.seed, 'pg-framer', n);
        const m = mutate(rng, rng.pick(post), PG_FRAMING, { framingSafe: rng.chance(0.4) });
        const sqlEvery = rng.chance(0.15);
        const framer = new Framer(
          {
            wantsMessage(type) {
              if (VALID_FRONTEND[type] !== 1) throw new ProtocolViolation(`invalid frontend message type ${type}`);
              return true;
            },
            onMessage(type, buf, start, end) {
              if (sqlEvery && (type === 0x51 || type === 0x50)) {
                let s = start + 5;
                if (type === 0x50) s = buf.indexOf(0, s) + 1; // statement name
                const z = buf.indexOf(0, s);
                const text = buf.toString('utf8', s, z < 0 || z > end ? end : z);
                const f = analyzeSql(text);
                if (f.parse_error) add(counts.notes, 'framer sql parse errors');
                add(counts.cases, 'sql analysis (from framed messages)');
              }
              return true;
            },
          },
          1 << 20,
        );
        let out = 0;
        try {
          for (const c of split(rng, m.bytes)) {
            framer.push(c);
            for (const b of framer.take()) out += b.length;
          }
        } catch (e) {
          if (e instanceof ProtocolViolation) add(counts.notes, 'framer protocol violations (documented)');
          else finding('pg-framer', n, e, m.ops, m.bytes);
        }
        add(counts.cases, 'relay framer');
        void out;
      } else {
        const rng = caseRng(ctx.seed, 'pg-sql', n);
        const m = mutate(rng, [Buffer.from(rng.pick(SQL_CORPUS))], { lengthAt: () => null, lengthIncludesSelf: false, typeAt: null, make: (_t, b) => b });
        try {
          analyzeSql(m.bytes.toString(rng.chance(0.5) ? 'utf8' : 'latin1'));
        } catch (e) {
          finding('pg-sql', n, e, m.ops, m.bytes);
        }
        add(counts.cases, 'sql analysis');
      }
    }
    onProgress(cases);
    return counts;
  },

  async freshLogin(ctx: Ctx) {
    const r = await psql(ctx.gw, ctx.bystanderToken, ['-Atc', 'select 7 * 6'], { timeoutMs: 30_000 });
    return { ok: r.code === 0 && r.stdout.trim() === '42', detail: r.code === 0 ? `psql: ${r.stdout.trim()}` : `psql exit ${r.code}: ${r.stderr.trim()}` };
  },
};

