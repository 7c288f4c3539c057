// HTTP body masking throughput (src/policy/masking/json-stream.ts, src/protocols/http/body-masker.ts).
//   node --import tsx bench/masking-json.ts          both parts (the stream part in a fresh process)
//   node --import tsx bench/masking-json.ts core     JsonStreamMasker MB/s per CPU second, one core
//   node --import tsx bench/masking-json.ts stream   JSON_BENCH_GB (default 1) through createBodyMasker
//   node --import tsx bench/masking-json.ts streams  the stream part only, identity and gzip, each in a fresh process
// core: ~32 MB of a realistic API payload ({"customers":[…]}: ids, UUIDs, names, emails, phones,
// cards, nested addresses, orders, free-text notes, some with PII), pushed in 64 KiB chunks, all 8
// built-in detectors + field rules $.customers[*].name (hash), $..card (partial) and column rule ssn.
// stream: the same kind of payload generated on the fly (nothing on disk), through createBodyMasker
// (identity and gzip), into a sink; peak RSS sampled every 50 ms.
//
// Results (2 × AMD EPYC, Node v20.20.2, under flock, 2026-12-06). The host was shared and noisy,
// and a process lands in a fast or a slow mode (~147 against ~88 MB/s for the same build, all
// functions slower alike, not a JIT difference: with or without concurrent recompilation, on
// either CPU): compare builds in interleaved runs, and the fast mode's medians.
//   JsonStreamMasker, customers (PII in every object, ~8 masked values per 634 B), MB/s per core:
//     dist (as the gateway runs it) 142-148, was 111-114; under tsx 115-122, was 87-97
//   JsonStreamMasker, order events (PII in ~2% of notes, many small tokens): dist 195-216, was 168-170
//   (tsx keeps function names in its transform, which costs these hot paths ~15%: JSON_BENCH_DIST=1)
//   1 GB through createBodyMasker (JSON_BENCH_DIST=1: compiled, bin/sluice.js's V8 flags, no tsx):
//     identity: 134 MB/s wall, 147 MB/s per CPU second, peak RSS 65 MB, 61 MB before streaming (+4)
//     gzip in and out (gunzip, mask, gzip level 1): 33 MB/s wall, 35 per CPU second, 70 MB (67 before)
//     Of the 61 MB: node itself 39, the gateway's modules (re2, yaml, …) 15, the 4 MB piece pool.
//     Under tsx without the gateway's flags: 94 MB before streaming, 119 peak (+25 MB: V8's default
//     young generation; --max-semi-space-size=1 keeps it to a few MB).
//   re-encoding 8 MB of JSON: gzip 1 115 MB/s (ratio 3.4), gzip 6 52 (4.0), brotli q1 147 (3.7),
//     q2 41 (3.7), q3 73 (3.8), q4 45 (4.3), q5 29 (4.3): hence gzip level 1 and brotli quality 1
// Where the time goes now (customers, dist, --cpu-prof): the tokenizer loop ~35% (string content
// ~10%), string ends and the scanner ~20%, rewrites (partial/hash/redact written into the output)
// ~15%, copying unmasked spans ~6%, path steps ~4%.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import fs from 'node:fs';

// JSON_BENCH_DIST=1: the masker comes from the compiled dist/ (`npx tsc -p .` first), as the gateway
// runs it (tsx's transform keeps function names, which costs the hot paths ~15%), and the stream
// part runs this file compiled to JS without tsx, under bin/sluice.js's V8 flags: tsx's loader
// (a module-hooks thread, the TypeScript sources) is most of the RSS before streaming otherwise.
const DIST = process.env.JSON_BENCH_DIST === '1';
const ROOT = process.env.JSON_BENCH_ROOT ?? new URL('..', import.meta.url).href;
const from = (m: string): string => `${ROOT}${DIST ? 'dist' : 'src'}/${m}`;
const { configFromObject } = (await import(from('config/load.js'))) as typeof import('../src/config/load.js');
const { MaskingSet } = (await import(from('policy/masking/ruleset.js'))) as typeof import('../src/policy/masking/ruleset.js');
const { JsonStreamMasker } = (await import(from('policy/masking/json-stream.js'))) as typeof import('../src/policy/masking/json-stream.js');
const { DETECTOR_NAMES } = (await import(from('policy/masking/types.js'))) as typeof import('../src/policy/masking/types.js');
const { createBodyMasker } = (await import(from('protocols/http/body-masker.js'))) as typeof import('../src/protocols/http/body-masker.js');
/** bin/sluice.js's V8 flags. */
const GATEWAY_FLAGS = ['--max-semi-space-size=1', '--liftoff-only', '--single-threaded-gc'];

const ROUNDS = Number(process.env.JSON_BENCH_ROUNDS ?? 5);
const CORE_MB = Number(process.env.JSON_BENCH_MB ?? 32);
const STREAM_GB = Number(process.env.JSON_BENCH_GB ?? 1);
/** Distinct 64 KiB pieces the streamed body cycles through. */
const POOL = 64;

let seed = 42;
const rnd = (): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff; // Math.imul: a float product would lose bits and cycle early
  return seed / 0x80000000;
};
const int = (n: number): number => Math.floor(rnd() * n);
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const FIRST = ['Zoë', 'Anna', 'José', 'Mei', 'Olivier', 'Björn', 'Sarah', 'Ahmed', 'Łukasz', 'Priya', 'John', 'Ines'];
const LAST = ['Müller', 'Smith', 'García', 'Nakamura', "O'Brien", 'Nowak', 'Dubois', 'Rossi', 'Kowalski', 'Øster'];
const CITIES = ['Berlin', 'Paris', 'München', 'Kraków', 'Austin', 'Tokyo', 'São Paulo', 'Oslo'];
const WORDS = 'the order was shipped on time and the customer asked for a refund because the package arrived late please call back tomorrow invoice total includes tax'.split(' ');
const hex = (n: number): string => Array.from({ length: n }, () => '0123456789abcdef'[int(16)]).join('');
const uuid = (): string => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
const ts = (): string => `2024-${pad(1 + int(12), 2)}-${pad(1 + int(28), 2)}T${pad(int(24), 2)}:${pad(int(60), 2)}:${pad(int(60), 2)}Z`;
const sentence = (): string => Array.from({ length: 4 + int(16) }, () => pick(WORDS)).join(' ');

function luhn(prefix: string, len: number): string {
  let s = prefix;
  while (s.length < len - 1) s += String(int(10));
  for (let d = 0; d < 10; d++) {
    const c = s + d;
    let sum = 0;
    for (let i = c.length - 1, dbl = false; i >= 0; i--, dbl = !dbl) {
      let v = c.charCodeAt(i) - 48;
      if (dbl) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
      sum += v;
    }
    if (sum % 10 === 0) return c;
  }
  throw new Error('unreachable');
}

function customer(id: number): string {
  const first = pick(FIRST);
  const last = pick(LAST);
  return JSON.stringify({
    id,
    uuid: uuid(),
    name: `${first} ${last}`,
    email: `${first.toLowerCase()}.${last.toLowerCase().replace(/[^a-z]/g, '')}${int(100)}@example.com`,
    phone: `+1 (${200 + int(700)}) ${100 + int(900)}-${pad(int(10000), 4)}`,
    ssn: `${100 + int(500)}-${pad(1 + int(98), 2)}-${pad(1 + int(9998), 4)}`,
    card: { number: luhn(pick(['4', '51', '37']), 16), exp: `${pad(1 + int(12), 2)}/${26 + int(5)}`, brand: pick(['visa', 'mc', 'amex']) },
    address: { street: `${1 + int(200)} ${pick(LAST)}straße`, city: pick(CITIES), zip: pad(int(100000), 5), country: pick(['DE', 'FR', 'US', 'PL', 'JP']) },
    created_at: ts(),
    status: pick(['active', 'pending', 'closed']),
    balance: int(1e6) / 100,
    verified: rnd() < 0.5,
    tags: [pick(WORDS), pick(WORDS)],
    orders: Array.from({ length: int(3) }, () => ({ id: uuid(), amount: int(100000) / 100, currency: 'EUR', at: ts() })),
    note: rnd() < 0.1 ? `${sentence()} contact ${first.toLowerCase()}@example.org ${sentence()}` : sentence(),
  });
}

const set = new MaskingSet(
  configFromObject(
    {
      masking: [
        {
          name: 'api',
          detectors: [...DETECTOR_NAMES],
          columns: [{ column: 'ssn', strategy: 'redact' }],
          fields: [
            { path: '$.customers[*].name', strategy: 'hash' },
            { path: '$..card', strategy: 'partial' },
          ],
        },
      ],
    },
    '',
  ).masking,
);
const ctx = { hmacKey: Buffer.alloc(32, 7) };

/** A sparser payload for comparison: order events, PII only in ~2% of the notes. */
function event(id: number): string {
  return JSON.stringify({
    id,
    order: uuid(),
    at: ts(),
    kind: pick(['created', 'paid', 'shipped', 'refunded']),
    amount: int(100000) / 100,
    currency: pick(['EUR', 'USD']),
    items: Array.from({ length: 1 + int(3) }, () => ({ sku: `SKU-${pad(int(1e6), 6)}`, qty: 1 + int(5), price: int(10000) / 100 })),
    note: rnd() < 0.02 ? `${sentence()} mail ${pick(FIRST).toLowerCase()}@example.org` : sentence(),
  });
}

function rate(label: string, body: Buffer): Record<string, unknown> {
  const mb = body.length / 1024 / 1024;
  const CHUNK = 64 * 1024;
  const rates: number[] = [];
  let out = 0;
  let counts = {};
  const digest = createHash('sha256');
  for (let r = 0; r < ROUNDS; r++) {
    out = 0;
    const c0 = process.cpuUsage();
    const m = new JsonStreamMasker(set, ctx, r === 0 ? (b) => (out += b.length, digest.update(b)) : (b) => (out += b.length));
    for (let i = 0; i < body.length; i += CHUNK) m.push(body.subarray(i, i + CHUNK));
    m.end();
    const c = process.cpuUsage(c0);
    rates.push(mb / ((c.user + c.system) / 1e6));
    counts = m.counts;
  }
  rates.sort((a, b) => a - b);
  console.log(`core: ${label}: ${mb.toFixed(1)} MB, JsonStreamMasker ${rates[ROUNDS >> 1]!.toFixed(0)} MB/s per CPU second (median of ${ROUNDS}; best ${rates[ROUNDS - 1]!.toFixed(0)}), out ${(out / 1048576).toFixed(1)} MB, sha256 ${digest.digest('hex').slice(0, 16)}`);
  return counts;
}

function core(): void {
  // JSON_BENCH_CUSTOMERS_ONLY / JSON_BENCH_EVENTS_ONLY: one payload (quicker A/B runs); the sha256 of
  // the first round's output shows that a speed change kept the output bytes.
  if (!process.env.JSON_BENCH_CUSTOMERS_ONLY) {
    const events: string[] = [];
    for (let id = 0, size = 0; size < CORE_MB * 1024 * 1024; id++) {
      const e = event(id);
      events.push(e);
      size += e.length + 1;
    }
    rate('order events (sparse PII), NDJSON-like array', Buffer.from(`[${events.join(',')}]`));
  }
  if (process.env.JSON_BENCH_EVENTS_ONLY) return;
  const parts: string[] = [];
  let size = 0;
  for (let id = 0; size < CORE_MB * 1024 * 1024; id++) {
    const c = customer(id);
    parts.push(c);
    size += c.length + 1;
  }
  const body = Buffer.from(`{"customers":[${parts.join(',')}],"total":${parts.length}}`);
  const nparts = parts.length;
  parts.length = 0; // 32 MB of strings left on the heap would make every major GC of the run dearer
  const counts = rate(`customers (${nparts}, ${(body.length / nparts).toFixed(0)} B each, PII in every one)`, body);
  console.log(`core: counts per run ${JSON.stringify(counts)}`);
  if (process.env.JSON_BENCH_CUSTOMERS_ONLY) return;
  // Re-encoding cost of the masked body (what body-masker.ts does after masking), per CPU second.
  const sample = body.subarray(0, 8 * 1024 * 1024);
  const enc = (label: string, f: (b: Buffer) => Buffer): void => {
    const c0 = process.cpuUsage();
    const z = f(sample);
    const c = process.cpuUsage(c0);
    console.log(`encode: ${label.padEnd(10)} ${(8 / ((c.user + c.system) / 1e6)).toFixed(0).padStart(4)} MB/s, ratio ${(sample.length / z.length).toFixed(1)}`);
  };
  enc('gzip 1', (b) => zlib.gzipSync(b, { level: 1 }));
  enc('gzip 6', (b) => zlib.gzipSync(b, { level: 6 }));
  for (const q of [1, 2, 3, 4, 5]) enc(`br q${q}`, (b) => zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: q } }));
}

async function stream(encoding: string | null): Promise<void> {
  const pool: Buffer[] = [];
  for (let k = 0, id = 1; k < POOL; k++) {
    const objs: string[] = [];
    let len = 0;
    while (len < 64 * 1024) {
      const c = customer(id++);
      objs.push(c);
      len += c.length + 1;
    }
    pool.push(Buffer.from(',' + objs.join(',')));
  }
  // gzip: each piece compressed on its own (a multi-member gzip stream is one valid body), so the
  // upstream's compression is not counted; produced counts the uncompressed JSON.
  const gzPool = encoding === 'gzip' ? pool.map((b) => zlib.gzipSync(b, { level: 6 })) : null;
  const total = STREAM_GB * 1e9;
  let produced = 0;
  let k = 0;
  const src = new Readable({
    read() {
      if (produced === 0) {
        const head = Buffer.from(`{"customers":[${customer(0)}`);
        produced += head.length;
        return void this.push(gzPool ? zlib.gzipSync(head) : head);
      }
      if (produced >= total) {
        this.push(gzPool ? zlib.gzipSync(']}') : Buffer.from(']}'));
        return void this.push(null);
      }
      const j = k++ % POOL;
      produced += pool[j]!.length;
      this.push(gzPool ? gzPool[j]! : pool[j]!);
    },
  });
  const m = createBodyMasker({ contentType: 'application/json; charset=utf-8', contentEncoding: encoding, set, ctx });
  if (m.kind !== 'mask') throw new Error(`expected mask, got ${m.kind}`);
  if (globalThis.gc) globalThis.gc();
  const baseRss = process.memoryUsage().rss;
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  let out = 0;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await pipeline(
    src,
    m.stream,
    new Writable({
      highWaterMark: 64 * 1024,
      write(c: Buffer, _e, cb) {
        out += c.length;
        cb();
      },
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  const mb = produced / 1e6;
  console.log(
    `stream${encoding ? ` (${encoding}: gunzip, mask, gzip level 1)` : ''}: ${(produced / 1e9).toFixed(2)} GB JSON, ` +
      `${(mb / secs).toFixed(0)} MB/s wall, ${(mb / ((c.user + c.system) / 1e6)).toFixed(0)} MB/s per CPU second, ` +
      `peak RSS ${(peak / 1048576).toFixed(0)} MB (${(baseRss / 1048576).toFixed(0)} MB before streaming), out ${(out / 1e6).toFixed(0)} MB, malformed ${m.flags.malformed}, ` +
      `masked ${JSON.stringify(m.counts)}`,
  );
}

/** This file as plain JS (esbuild, no bundling) in bench/results/tmp/, for a child without tsx. */
function compiledSelf(): string {
  const src = new URL(import.meta.url).pathname;
  const out = new URL('results/tmp/masking-json.mjs', import.meta.url).pathname;
  fs.mkdirSync(new URL('results/tmp/', import.meta.url).pathname, { recursive: true });
  const r = spawnSync(new URL('../node_modules/esbuild/bin/esbuild', import.meta.url).pathname, [src, '--format=esm', '--platform=node', `--outfile=${out}`, '--log-level=warning'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('esbuild failed');
  return out;
}

const mode = process.argv[2];
if (mode === 'core') core();
else if (mode === 'stream') await stream(process.argv[3] ?? null);
else {
  if (mode !== 'streams') core();
  for (const enc of ['', 'gzip']) {
    const args = enc ? ['stream', enc] : ['stream'];
    const r = DIST
      ? spawnSync(process.execPath, [...GATEWAY_FLAGS, '--expose-gc', compiledSelf(), ...args], { stdio: 'inherit', env: { ...process.env, JSON_BENCH_ROOT: ROOT } })
      : spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, ...args], { stdio: 'inherit' });
    if (r.status !== 0) process.exitCode = 1;
  }
}
