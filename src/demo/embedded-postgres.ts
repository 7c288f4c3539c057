// The embedded Postgres behind `sluice demo`: PGlite (Postgres 18 compiled to
// WASM, one single-user backend in this process) served on a loopback TCP port
// with pglite-socket's per-connection protocol handler, and seeded with fake PII.
//
// What clients see (verified against pglite-socket 0.2.17 / PGlite 0.5.14):
// - SSLRequest is answered 'N'; then the StartupMessage is answered at once with
//   AuthenticationOk (trust: no password is asked for or checked), a block of
//   ParameterStatus, BackendKeyData (the same pid 42 for every connection) and
//   ReadyForQuery 'I'. Any user and database name is accepted and ignored: every
//   session runs as `postgres` in database `postgres`. CancelRequest is ignored.
// - PGlite re-sends some ParameterStatus messages before every ReadyForQuery.
// - A StartupMessage without `user` would crash the backend; we rewrite every
//   StartupMessage to user=postgres database=postgres (see STARTUP).
//
// There is exactly ONE backend, so every client connection shares one session.
// pglite-socket's own server multiplexes per *message*, which lets two clients'
// extended-query batches interleave (A:Parse, B:Parse, A:Bind binds B's unnamed
// statement) when their messages arrive in separate TCP reads. So we run our own
// listener and give the handlers a queue (TurnQueue) that multiplexes per *turn*:
// a connection keeps the backend from its first message until the backend is
// idle again (ReadyForQuery 'I'), i.e. for a whole Parse..Sync batch or a whole
// transaction. Other connections wait meanwhile; nothing runs in parallel.
// Still shared across connections, unlike real Postgres: SET, named prepared
// statements, temp tables, LISTEN. We reset them (DISCARD ALL) whenever the last
// connection closes; concurrent sessions can still see each other's state.
import net from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';
import { listenOn } from '../gateway/listen.js';

export interface EmbeddedPostgres {
  host: string;
  port: number;
  user: string;
  password: string; // ignored by the server (it trusts everyone); here for config symmetry
  database: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(opts: {
  dataDir?: string; // undefined = in-memory
  port?: number; // 0 / undefined = a free port
  host?: string; // default 127.0.0.1
} = {}): Promise<EmbeddedPostgres> {
  const host = opts.host ?? '127.0.0.1';
  const db = await PGlite.create(opts.dataDir ? { dataDir: opts.dataDir } : {});
  await seed(db);

  const live = new Map<number, net.Socket>(); // handler id -> socket
  const queue = new TurnQueue(db, live);
  const server = net.createServer((socket) => {
    const handler = new PGLiteSocketHandler({
      // TurnQueue implements the three methods the handler calls on its queue.
      queryQueue: queue as unknown as PGLiteSocketHandlerOptions['queryQueue'],
      closeOnDetach: true,
    });
    live.set(handler.handlerId, socket);
    socket.on('close', () => live.delete(handler.handlerId));
    handler.attach(socket).catch(() => socket.destroy());
  });
  try {
    await listenOn(server, opts.port ?? 0, host);
  } catch (err) {
    await db.close(); // e.g. EADDRINUSE: do not leave PGlite (and a dataDir) open
    throw err;
  }
  const port = (server.address() as net.AddressInfo).port;

  let stopped: Promise<void> | undefined;
  return {
    host, port, user: 'postgres', password: 'postgres', database: 'postgres',
    stop: () => (stopped ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of live.values()) s.destroy();
      await queue.close(); // waits for the running message, drops the rest
      await closed;
      await db.close();
    })()),
  };
}

// ---------------------------------------------------------------------------
// Turn-based multiplexer over the single PGlite backend.

interface Job {
  id: number; // connection (handler) id
  run: () => Promise<number>;
  resolve: (n: number) => void;
  reject: (e: Error) => void;
  cleanup?: boolean; // survives clearQueueForHandler
}

const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);
function queryMsg(sql: string): Buffer {
  const body = Buffer.from(sql + '\0');
  const head = Buffer.alloc(5);
  head.write('Q');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

// Every StartupMessage is replaced by this one. PGlite ignores user, database
// and options anyway, but a startup packet without `user` makes it raise FATAL,
// which exit()s the WASM backend and breaks every later connection.
const STARTUP = (() => {
  const body = Buffer.from('user\0postgres\0database\0postgres\0\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(body.length + 8, 0);
  head.writeInt32BE(196608, 4); // protocol 3.0
  return Buffer.concat([head, body]);
})();
const isStartup = (m: Uint8Array) => // typed messages never start with a 0 byte
  m.length >= 8 && m[0] === 0 && Buffer.from(m.buffer, m.byteOffset, 8).readInt32BE(4) === 196608;

const READY_IDLE = Buffer.from('Z\0\0\0\x05I', 'latin1'); // ReadyForQuery, status idle

class TurnQueue {
  private jobs: Job[] = [];
  private owner: number | null = null; // connection whose turn it is
  private busy = false; // a pump() loop is active
  private idle: Promise<void> = Promise.resolve(); // settles when it ends
  private closed = false;
  private cleaned = new Set<number>(); // connections already cleaned up at Terminate

  constructor(private db: PGlite, private live: Map<number, net.Socket>) {}

  /** Called by PGLiteSocketHandler for every complete frontend message. */
  enqueue(id: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    if (message.length === 5 && message[0] === 0x58) {
      // Terminate: clean up *before* closing, as Postgres does, so a client that
      // reconnects right away finds the session already reset.
      return this.cleanup(id).then(() => (this.live.get(id)?.end(), 0));
    }
    if (isStartup(message)) message = STARTUP;
    return this.push(id, async () => {
      let n = 0;
      let tail = Buffer.alloc(0); // last 6 bytes sent, to spot ReadyForQuery
      await this.db.runExclusive(() => this.db.execProtocolRawStream(message, {
        onRawData: (d) => {
          n += d.length;
          tail = Buffer.from(d.length >= 6 ? d.subarray(-6) : Buffer.concat([tail, d]).subarray(-6));
          onData(d);
        },
      }));
      if (tail.equals(READY_IDLE)) this.owner = null; // backend idle: the turn ends
      return n;
    });
  }

  /** Called on disconnect: drop the connection's unprocessed messages. */
  clearQueueForHandler(id: number): void {
    const drop = (j: Job) => j.id === id && !j.cleanup;
    for (const j of this.jobs.filter(drop)) j.reject(new Error('Handler disconnected'));
    this.jobs = this.jobs.filter((j) => !drop(j));
  }

  /** Called on disconnect, after clearQueueForHandler. */
  async clearTransactionIfNeeded(id: number): Promise<void> {
    if (!this.cleaned.delete(id)) await this.cleanup(id);
  }

  /** Ends whatever the connection left open, during its own turn so nobody
   *  else is mid-batch; resets the session if no other connection is open. */
  private cleanup(id: number): Promise<void> {
    this.cleaned.add(id);
    return this.push(id, async () => {
      // ROLLBACK aborts an explicit or an unsynced extended-query transaction;
      // Sync leaves error-skip mode; the second ROLLBACK covers "failed tx".
      await this.raw(queryMsg('ROLLBACK'));
      await this.raw(SYNC);
      if (this.db.isInTransaction()) await this.raw(queryMsg('ROLLBACK'));
      if ([...this.live.keys()].every((k) => k === id)) await this.raw(queryMsg('DISCARD ALL'));
      this.owner = null;
      return 0;
    }, true).then(() => undefined, () => undefined);
  }

  getQueueLength(): number {
    return this.jobs.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.clearAll();
    await this.idle;
  }

  private raw(msg: Uint8Array): Promise<void> {
    return this.db.runExclusive(() => this.db.execProtocolRawStream(msg, { onRawData: () => {} }));
  }

  private push(id: number, run: () => Promise<number>, cleanup = false): Promise<number> {
    if (this.closed) return Promise.reject(new Error('embedded Postgres stopped'));
    return new Promise((resolve, reject) => {
      this.jobs.push({ id, run, resolve, reject, cleanup });
      if (!this.busy) this.idle = this.pump();
    });
  }

  private clearAll(): void {
    for (const j of this.jobs) j.reject(new Error('embedded Postgres stopped'));
    this.jobs = [];
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      for (;;) {
        // While a connection has its turn only its messages run; if it has none
        // queued yet we stop and its next enqueue() restarts us.
        const i = this.owner === null ? 0 : this.jobs.findIndex((j) => j.id === this.owner);
        const job = i >= 0 ? this.jobs.splice(i, 1)[0] : undefined;
        if (!job || this.closed) return;
        this.owner = job.id;
        try {
          job.resolve(await job.run());
        } catch (err) {
          job.reject(err as Error);
        }
      }
    } finally {
      this.busy = false; // synchronously, before any continuation can push()
    }
  }
}

// ---------------------------------------------------------------------------
// Deterministic fake PII. Everything derives from one seeded PRNG, so every
// fresh demo database holds identical data. No real person's data is used.

function prng(seed: number): () => number {
  // mulberry32
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Ada', 'Ben', 'Chloe', 'Dmitri', 'Elena', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jonas', 'Kemi', 'Liam',
  'Maya', 'Noor', 'Oscar', 'Priya', 'Quinn', 'Rosa', 'Sven', 'Tara', 'Umar', 'Vera', 'Wei', 'Yusuf', 'Zoe'];
const LAST = ['Archer', 'Brandt', 'Castillo', 'Dubois', 'Eriksen', 'Fontaine', 'Garcia', 'Hughes', 'Ivanova', 'Jensen',
  'Kowalski', 'Larsen', 'Moreau', 'Nakamura', 'Okafor', 'Petrov', 'Quinlan', 'Rossi', 'Schmidt', 'Tanaka'];
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example.com'];
const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'refunded', 'cancelled'];

type Rng = () => number;
const int = (r: Rng, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1)); // inclusive
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const digits = (r: Rng, n: number) => Array.from({ length: n }, () => int(r, 0, 9)).join('');

function luhnCheckDigit(payload: string): number {
  let sum = 0;
  for (let i = 0; i < payload.length; i++) {
    let d = Number(payload[payload.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2; // doubled: rightmost payload digit first
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

/** 16 digits; valid Luhn unless `valid` is false (then the check digit is off by one). */
function cardNumber(r: Rng, valid = true): string {
  const payload = pick(r, ['4', '51', '52', '53', '54', '55', '6011']);
  const body = payload + digits(r, 15 - payload.length);
  return body + ((luhnCheckDigit(body) + (valid ? 0 : 1)) % 10);
}

const spaced = (s: string) => s.replace(/(.{4})(?=.)/g, '$1 ');

/** ISO 13616 IBAN with a correct mod-97 check. */
function iban(country: string, bban: string): string {
  const num = (bban + country + '00').replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  const check = 98 - Number(BigInt(num) % 97n);
  return country + String(check).padStart(2, '0') + bban;
}

function randomIban(r: Rng): string {
  switch (int(r, 0, 2)) {
    case 0: return iban('DE', digits(r, 8) + digits(r, 10)); // BLZ + account
    case 1: return iban('GB', pick(r, ['NWBK', 'BARC', 'LOYD', 'MIDL']) + digits(r, 6) + digits(r, 8)); // bank, sort code, account
    default: {
      const bank = digits(r, 5), branch = digits(r, 5), account = digits(r, 11);
      const key = 97n - ((89n * BigInt(bank) + 15n * BigInt(branch) + 3n * BigInt(account)) % 97n); // French RIB key
      return iban('FR', bank + branch + account + String(key).padStart(2, '0'));
    }
  }
}

function ssn(r: Rng): string {
  let area = int(r, 1, 899);
  if (area === 666) area = 667; // never issued
  return `${String(area).padStart(3, '0')}-${String(int(r, 1, 99)).padStart(2, '0')}-${String(int(r, 1, 9999)).padStart(4, '0')}`;
}

function phone(r: Rng): string {
  const n = String(int(r, 100, 199)).padStart(4, '0'); // 555-01xx and 020 7946 0xxx are reserved for fiction
  return pick(r, [`+1 415-555-${n}`, `(212) 555-${n}`, `+44 20 7946 ${n}`, `555-${n}`]);
}

function uuid(r: Rng): string {
  const h = Array.from({ length: 32 }, () => int(r, 0, 15).toString(16));
  h[12] = '4';
  h[16] = '89ab'[int(r, 0, 3)]!;
  const s = h.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

function note(r: Rng, i: number, first: string): string {
  switch (i % 8) {
    case 0: return `Secondary contact: ${first.toLowerCase()}.alt${i}@${pick(r, DOMAINS)}`;
    case 1: return `Paid by phone with card ${spaced(cardNumber(r))}, customer asked for a receipt.`;
    case 2: return `Order number ${cardNumber(r, false)} shipped late.`; // decoy: 16 digits, FAILS Luhn
    case 3: return `Support ticket ${uuid(r)} closed.`; // decoy
    case 4: return `Renewal due 2025-${String(int(r, 1, 12)).padStart(2, '0')}-${String(int(r, 1, 28)).padStart(2, '0')}.`; // decoy
    case 5: return `Card on file ends ${cardNumber(r).slice(-4)}; backup card ${cardNumber(r)}.`;
    case 6: return 'Prefers contact by email. No marketing.';
    default: return pick(r, ['VIP since 2019.', 'Asked about delivery times.', '', 'Invoice address differs from shipping.']);
  }
}

async function seed(db: PGlite): Promise<void> {
  const r = prng(0x5111ce);
  await db.transaction(async (tx) => {
    const has = async (t: string) =>
      (await tx.query<{ r: string | null }>('select to_regclass($1)::text as r', [t])).rows[0]?.r != null;
    if (!(await has('public.customers'))) {
      await tx.exec(`create table customers (
        id serial primary key, full_name text not null, email text, phone text, card_number text,
        ssn text, iban text, notes text, created_at timestamptz not null default now())`);
      const params: unknown[] = [];
      const rows: string[] = [];
      const epoch = Date.UTC(2023, 0, 1);
      for (let i = 0; i < 200; i++) {
        const first = pick(r, FIRST), last = pick(r, LAST);
        const card = cardNumber(r);
        const ib = randomIban(r);
        const vals = [
          `${first} ${last}`,
          `${first}.${last}${i}@${pick(r, DOMAINS)}`.toLowerCase(),
          phone(r),
          i % 2 ? spaced(card) : card,
          ssn(r),
          i % 3 === 2 ? spaced(ib) : ib,
          note(r, i, first),
          new Date(epoch + Math.floor(r() * 730 * 86400) * 1000).toISOString(),
        ];
        rows.push(`(${vals.map((_, k) => `$${params.length + k + 1}`).join(', ')})`);
        params.push(...vals);
      }
      await tx.query(`insert into customers (full_name, email, phone, card_number, ssn, iban, notes, created_at)
        values ${rows.join(', ')}`, params);
    }
    if (!(await has('public.orders'))) { // (customers may pre-exist in a dataDir)
      await tx.exec(`create table orders (
        id serial primary key, customer_id int not null references customers(id),
        amount numeric(10,2) not null, status text not null)`);
      const ids = (await tx.query<{ id: number }>('select id from customers order by id')).rows.map((x) => x.id);
      if (ids.length === 0) return;
      const params: unknown[] = [];
      const rows: string[] = [];
      for (let i = 0; i < 500; i++) {
        rows.push(`($${params.length + 1}, $${params.length + 2}, $${params.length + 3})`);
        params.push(pick(r, ids), (int(r, 100, 99999) / 100).toFixed(2), pick(r, STATUSES));
      }
      await tx.query(`insert into orders (customer_id, amount, status) values ${rows.join(', ')}`, params);
    }
  });
}
