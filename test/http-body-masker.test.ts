// In-stream masking of HTTP bodies: the JSON, CSV and SSE maskers (output independent of how the
// body is split into chunks), content codings, refusals, fallbacks and bounded memory.
import t, { type Test } from 'tap';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import v8 from 'node:v8';
import vm from 'node:vm';
import { configFromObject } from '../src/config/load.js';
import { MaskingSet } from '../src/policy/masking/ruleset.js';
import { JsonStreamMasker, type JsonStreamOptions } from '../src/policy/masking/json-stream.js';
import { CsvStreamMasker } from '../src/policy/masking/csv-stream.js';
import { SseStreamMasker } from '../src/policy/masking/sse-stream.js';
import { createBodyMasker } from '../src/protocols/http/body-masker.js';

const ctx = { hmacKey: Buffer.alloc(32, 7) };
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function setOf(m: Record<string, unknown>): MaskingSet {
  return new MaskingSet(configFromObject({ masking: [{ name: 'm', ...m }] }, '').masking);
}

const set = setOf({
  detectors: ['email', 'credit_card', 'us_ssn', 'phone'],
  columns: [{ column: 'ssn', strategy: 'redact' }],
  fields: [
    { path: '$.customers[*].name', strategy: 'hash' },
    { path: '$..card', strategy: 'partial' },
    { path: "$.meta['secret']", strategy: 'null' },
    { path: '$.list[1]', strategy: 'redact' },
    { path: '$.*.pin', strategy: 'redact' },
  ],
});

type Masker = { push(b: Buffer): void; end(): void };
function run(make: (emit: (b: Buffer) => void) => Masker, input: Buffer, cuts: number[] = []): string {
  const out: Buffer[] = [];
  const m = make((b) => out.push(Buffer.from(b)));
  let at = 0;
  for (const c of [...cuts, input.length]) {
    m.push(input.subarray(at, c));
    at = c;
  }
  m.end();
  return Buffer.concat(out).toString();
}
const json = (s: string | Buffer, cuts?: number[], o: JsonStreamOptions = {}, s2 = set) =>
  run((e) => new JsonStreamMasker(s2, ctx, e, o), Buffer.from(s), cuts);

/** Every split into two chunks, and every byte its own chunk, give the unsplit output. */
function splitsAgree(tt: Test, make: (e: (b: Buffer) => void) => Masker, doc: string): string {
  const input = Buffer.from(doc);
  const whole = run(make, input);
  let bad = 0;
  for (let k = 1; k < input.length; k++) if (run(make, input, [k]) !== whole) bad++;
  const bytes = Array.from({ length: input.length - 1 }, (_, k) => k + 1);
  tt.equal(bad, 0, 'every two-chunk split agrees');
  tt.equal(run(make, input, bytes), whole, 'byte by byte agrees');
  for (let k = 1; k + 3 < input.length; k += 7) tt.equal(run(make, input, [k, k + 1, k + 3]), whole);
  return whole;
}

const DOC = JSON.stringify({
  customers: [
    { name: 'Zoë Müller', email: 'zoe@example.com', card: 4111111111111111, ssn: '123-45-6789', note: 'call +1 (555) 123-4567 ☎', tags: ['vip', 'a@b.co'] },
    { name: 'José "Pepe" García', email: 'JOSE@Example.ORG', card: '5555 5555 5555 4444', nested: { deep: { card: [4111111111111111, true] } } },
  ],
  meta: { secret: { a: 1, b: [true, 'x', null] }, count: 2, ok: true, nothing: null },
  list: [1, { x: 'y@z.io' }, 3],
  top: { pin: 1234, other: { pin: 99 } },
  escaped: 'a\u0040b.com',
}).replace('"escaped":"a@b.com"', '"escaped":"mail: a\\u0040b.com \\ud83d\\ude00 \\"q\\""');

t.test('JSON: field rules, detectors, escapes; every split gives the same bytes', async (tt) => {
  const out = splitsAgree(tt, (e) => new JsonStreamMasker(set, ctx, e), DOC);
  const v = JSON.parse(out);
  tt.match(v.customers[0].name, /^h:[0-9a-f]{12}$/);
  tt.equal(v.customers[0].email, '****@example.com');
  tt.equal(v.customers[0].card, '************1111', 'a number under a field rule becomes a string');
  tt.equal(v.customers[0].ssn, '****', 'a bare-name column rule matches a member at any depth');
  tt.equal(v.customers[0].note, 'call +* (***) ***-4567 ☎');
  tt.same(v.customers[0].tags, ['vip', '****@b.co']);
  tt.equal(v.customers[1].name.length, 14);
  tt.equal(v.customers[1].card, '**** **** **** 4444');
  tt.same(v.customers[1].nested.deep.card, ['************1111', '****'], '..card reaches into nested arrays; every scalar masked');
  tt.same(v.meta.secret, { a: null, b: [null, null, null] }, "['secret'] with strategy null: JSON null for every scalar");
  tt.equal(v.meta.count, 2);
  tt.same(v.list, [1, { x: '****' }, 3], '[1] masks the whole element');
  tt.same(v.top, { pin: '****', other: { pin: 99 } }, '.* is one level');
  tt.equal(v.escaped, 'mail: ****@b.com 😀 "q"', 'escapes decoded before scanning, the masked value re-escaped');
  // Unmasked parts keep their bytes exactly.
  tt.ok(out.includes('"count":2,"ok":true,"nothing":null'));
});

t.test('JSON: output equals input when nothing is masked, whitespace and all', async (tt) => {
  const doc = '  {\n  "a" : [ 1.5e-3 , -0 , 12345678901234567890 , "x\\ty\\u00e9" ,\ttrue,false , null, {} , [ ] ] ,"b":{"c":"d"}}\n ';
  tt.equal(splitsAgree(tt, (e) => new JsonStreamMasker(set, ctx, e), doc), doc);
  const plain = setOf({ fields: [{ path: '$.zzz', strategy: 'redact' }] });
  tt.equal(json(doc, [], {}, plain), doc);
});

t.test('JSON: NDJSON and JSON text sequences', async (tt) => {
  const nd = '{"email":"a@example.com","n":1}\n{"ssn":"x"}\r\n\n"b@example.com"\n42\n[{"card":4111111111111111}]\n';
  const out = splitsAgree(tt, (e) => new JsonStreamMasker(set, ctx, e, { multi: true }), nd);
  tt.equal(out, '{"email":"****@example.com","n":1}\n{"ssn":"****"}\r\n\n"****@example.com"\n42\n[{"card":"************1111"}]\n');
  const seq = '\x1e{"a":"c@example.com"}\n\x1e{"b":2}\n';
  tt.equal(json(seq, [3], { multi: true }), '\x1e{"a":"****@example.com"}\n\x1e{"b":2}\n');
  // A single document with a second value is malformed from there.
  const m = new JsonStreamMasker(set, ctx, () => {});
  m.push(Buffer.from('{"a":1}\n{"b":2}'));
  m.end();
  tt.equal(m.flags.malformed, true);
  tt.equal(m.flags.malformedAt, 8);
});

t.test('JSON: malformed input falls back to text masking from the bad byte on', async (tt) => {
  const doc = '{"a":"x@example.com","b":[1,2,}, "c":"y@example.com 4111 1111 1111 1111"';
  const mk = (e: (b: Buffer) => void) => new JsonStreamMasker(set, ctx, e);
  const out = splitsAgree(tt, mk, doc);
  tt.equal(out, '{"a":"****@example.com","b":[1,2,}, "c":"****@example.com **** **** **** 1111"');
  const m = new JsonStreamMasker(set, ctx, () => {});
  m.push(Buffer.from(doc));
  m.end();
  tt.same(m.flags, { malformed: true, malformedAt: 30, oversized: 0 });
  tt.same(m.counts.detectors, { email: 2, credit_card: 1 });
  // Cut off inside a string: the held part is scanned as text.
  tt.equal(json('{"a":"z@example.com', [8]), '{"a":"****@example.com');
  tt.equal(json('{"a":"q\\x@example.com"}'), '{"a":"q\\****@example.com"}', 'a bad escape');
  tt.equal(json('[' .repeat(2000), [], { maxDepth: 100 }).length, 2000, 'too deep is malformed, passed as text');
  tt.equal(json('{"a":01}'), '{"a":01}');
});

t.test('JSON: a string longer than the cap goes out as "****", whatever the chunks', async (tt) => {
  const big = 'x'.repeat(5000) + ' a@example.com';
  const doc = `{"a":"${big}","b":"c@example.com","n":${'1'.repeat(3000)}}`;
  const o = { maxString: 1024 };
  const whole = json(doc, [], o);
  tt.equal(whole, '{"a":"****","b":"****@example.com","n":"****"}');
  for (const cuts of [[10], [700, 1500, 3000], Array.from({ length: 80 }, (_, k) => 10 + k * 100)]) tt.equal(json(doc, cuts, o), whole);
  // Under no masking nothing is held, so nothing is capped.
  const none = setOf({ fields: [{ path: '$.zzz', strategy: 'redact' }] });
  tt.equal(json(doc, [100, 2000], o, none), doc);
});

t.test('JSON paths: config validation names the line', async (tt) => {
  const { loadConfig } = await import('../src/config/load.js');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cfg-'));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(file, 'masking:\n  - name: m\n    fields:\n      - path: $.a[*].b\n      - path: $.a[x]\n      - path: customers\n');
  const err = await loadConfig(file).catch((e: Error) => e);
  tt.match(String(err), /line 5: masking\[0\]\.fields\[1\]\.path: invalid JSON path "\$\.a\[x\]" at character 5/);
  tt.match(String(err), /line 6: .*starts with "\$"/);
});

const CSV = 'id,email,ssn,"full\nname",note\r\n1,a@example.com,123-45-6789,"Zoë ""Z"" M",plain\r\n2,"b@example.com, c@example.com",078-05-1120,x,"multi\nline 4111 1111 1111 1111"\n3,,,,\n';

t.test('CSV: header row names columns; detectors on every cell; quoted cells with newlines', async (tt) => {
  const mk = (e: (b: Buffer) => void) => new CsvStreamMasker(set, ctx, e);
  const out = splitsAgree(tt, mk, CSV);
  tt.equal(
    out,
    'id,email,ssn,"full\nname",note\r\n1,****@example.com,****,"Zoë ""Z"" M",plain\r\n2,"****@example.com, ****@example.com",****,x,"multi\nline **** **** **** 1111"\n3,,,,\n',
  );
  const m = new CsvStreamMasker(set, ctx, () => {});
  m.push(Buffer.from(CSV));
  m.end();
  tt.same(m.counts, { columns: { ssn: 2 }, detectors: { email: 3, credit_card: 1 } });
  // Malformed: a quote inside an unquoted cell → text from there on.
  const bad = run((e) => new CsvStreamMasker(set, ctx, e), Buffer.from('a,b\n1,x"y a@example.com\n'));
  tt.equal(bad, 'a,b\n1,x"y ****@example.com\n');
});

const SSE =
  ': comment a@example.com\n\nevent: update\r\nid: 7\r\ndata: {"email":"a@example.com","card":4111111111111111}\r\n\r\n' +
  'data:[{"ssn":"1"}]\n\ndata: [DONE] b@example.com\ndata\ndata: plain text c@example.com\n\n';

t.test('SSE: data lines as JSON or text, framing kept', async (tt) => {
  const mk = (e: (b: Buffer) => void) => new SseStreamMasker(set, ctx, e);
  const out = splitsAgree(tt, mk, SSE);
  tt.equal(
    out,
    ': comment ****@example.com\n\nevent: update\r\nid: 7\r\ndata: {"email":"****@example.com","card":"************1111"}\r\n\r\n' +
      'data:[{"ssn":"****"}]\n\ndata: [DONE] ****@example.com\ndata\ndata: plain text ****@example.com\n\n',
  );
});

// ---- createBodyMasker ----

async function through(stream: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    stream,
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}
function pieces(b: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += n) out.push(b.subarray(i, i + n));
  return out;
}

t.test('createBodyMasker: kinds by content type, charset and coding', async (tt) => {
  const bm = (contentType?: string, contentEncoding?: string, s: MaskingSet | null = set) => createBodyMasker({ contentType, contentEncoding, set: s, ctx });
  tt.equal(bm('application/json', undefined, null).kind, 'none');
  tt.equal(bm('application/json').kind, 'mask');
  tt.equal(bm('application/problem+json; charset=UTF-8').kind, 'mask');
  tt.equal(bm('text/plain; charset="us-ascii"').kind, 'mask');
  const rulesOnly = setOf({ fields: [{ path: '$.a', strategy: 'redact' }] });
  tt.equal(bm('text/plain', undefined, rulesOnly).kind, 'none', 'field rules do not apply to text');
  tt.equal(bm('text/csv', undefined, rulesOnly).kind, 'none');
  tt.equal(bm('application/x-ndjson', undefined, rulesOnly).kind, 'mask');
  const r1 = bm('image/png');
  tt.equal(r1.kind, 'refuse');
  tt.match((r1 as { reason: string }).reason, /image\/png.*allow_binary_copy: true on masking rule set m/);
  tt.match((bm(undefined) as { reason: string }).reason, /without Content-Type/);
  tt.match((bm('text/plain; charset=iso-8859-1') as { reason: string }).reason, /charset iso-8859-1/);
  tt.match((bm('application/json', 'gzip, br') as { reason: string }).reason, /Content-Encoding "gzip, br"/);
  tt.match((bm('application/json', 'zstd') as { reason: string }).reason, /zstd/);
  tt.equal(bm('application/json', 'identity').kind, 'mask');
  const allow = setOf({ detectors: ['email'], allow_binary_copy: true });
  tt.equal(bm('application/octet-stream', undefined, allow).kind, 'none');
  tt.equal(bm('application/json', 'zstd', allow).kind, 'none');
});

t.test('createBodyMasker: gzip, x-gzip, deflate, br round trips', async (tt) => {
  const body = Buffer.from(JSON.stringify({ customers: Array.from({ length: 2000 }, (_, k) => ({ id: k, email: `u${k}@example.com`, card: 4111111111111111 })) }));
  const plain = createBodyMasker({ contentType: 'application/json', contentEncoding: null, set, ctx });
  if (plain.kind !== 'mask') throw new Error('expected mask');
  const expected = await through(plain.stream, pieces(body, 1000));
  tt.ok(plain.changed());
  tt.same(plain.counts, { columns: { '$..card': 2000 }, detectors: { email: 2000 } });
  const codecs: [string, (b: Buffer) => Buffer, (b: Buffer) => Buffer][] = [
    ['gzip', zlib.gzipSync, zlib.gunzipSync],
    ['x-gzip', zlib.gzipSync, zlib.gunzipSync],
    ['deflate', zlib.deflateSync, zlib.inflateSync],
    ['br', zlib.brotliCompressSync, zlib.brotliDecompressSync],
  ];
  for (const [name, enc, dec] of codecs) {
    const m = createBodyMasker({ contentType: 'application/json', contentEncoding: name, set, ctx });
    if (m.kind !== 'mask') throw new Error('expected mask');
    const out = await through(m.stream, pieces(enc(body), 777));
    tt.equal(dec(out).toString(), expected.toString(), `${name}: decoded output is the masked body`);
    tt.same(m.counts.detectors, { email: 2000 });
  }
  // A corrupt gzip body errors the stream.
  const m = createBodyMasker({ contentType: 'application/json', contentEncoding: 'gzip', set, ctx });
  if (m.kind !== 'mask') throw new Error('expected mask');
  await tt.rejects(through(m.stream, [Buffer.from('not gzip at all')]));
});

t.test('createBodyMasker: malformed flag, SSE through gzip flushes each chunk', async (tt) => {
  const m = createBodyMasker({ contentType: 'application/json', contentEncoding: null, set, ctx });
  if (m.kind !== 'mask') throw new Error('expected mask');
  const out = await through(m.stream, [Buffer.from('{"a": x@example.com}')]);
  tt.equal(out.toString(), '{"a": ****@example.com}');
  tt.equal(m.flags.malformed, true);
  // SSE over gzip: the first event is readable before the stream ends.
  const s = createBodyMasker({ contentType: 'text/event-stream', contentEncoding: 'gzip', set, ctx });
  if (s.kind !== 'mask') throw new Error('expected mask');
  const gz = zlib.createGzip({ flush: zlib.constants.Z_SYNC_FLUSH });
  const first = new Promise<Buffer>((resolve) => s.stream.once('data', resolve));
  gz.pipe(s.stream);
  gz.write('data: {"email":"a@example.com"}\n\n');
  const got = await first;
  tt.equal(zlib.gunzipSync(got, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString(), 'data: {"email":"****@example.com"}\n\n');
  gz.end();
  s.stream.resume();
  await new Promise((r) => s.stream.on('end', r));
});

t.test('createBodyMasker: bounded memory behind a slow reader', async (tt) => {
  const line = Buffer.from(JSON.stringify({ email: 'a@example.com', pad: 'x'.repeat(900) }) + '\n');
  const slowStream = async (encoding: string | null, total: number): Promise<{ maxAhead: number; peak: number; masked: number }> => {
    const m = createBodyMasker({ contentType: 'application/x-ndjson', contentEncoding: encoding, set, ctx });
    if (m.kind !== 'mask') throw new Error('expected mask');
    let produced = 0;
    let read = 0;
    let maxAhead = 0;
    const src = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        produced += 64 * line.length;
        this.push(Buffer.concat(Array.from({ length: 64 }, () => line)));
      },
    });
    const stages: NodeJS.ReadWriteStream[] = encoding ? [zlib.createGzip({ level: 1 })] : [];
    const mem = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    gc();
    const before = mem();
    let peak = 0;
    let n = 0;
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(c: Buffer, _e, cb) {
        read += encoding ? 0 : c.length;
        maxAhead = Math.max(maxAhead, produced - read);
        if ((++n & 63) === 0) {
          gc();
          peak = Math.max(peak, mem() - before);
        }
        setImmediate(cb); // a slow reader: one chunk per turn
      },
    });
    await pipeline(src, ...(stages as [NodeJS.ReadWriteStream]), m.stream, sink);
    return { maxAhead, peak, masked: m.counts.detectors.email ?? 0 };
  };
  const plain = await slowStream(null, 64 * 1024 * 1024);
  tt.ok(plain.maxAhead < 2 * 1024 * 1024, `the source ran at most ${(plain.maxAhead / 1048576).toFixed(2)} MB ahead of the reader`);
  tt.ok(plain.masked >= (64 * 1024 * 1024) / line.length);
  const gz = await slowStream('gzip', 64 * 1024 * 1024);
  tt.ok(gz.peak < 16 * 1024 * 1024, `gzip: live heap and buffers grew at most ${(gz.peak / 1048576).toFixed(1)} MB for 64 MB streamed`);
});

t.test('JSON: random documents stay valid JSON with the same shape, whatever the chunks', async (tt) => {
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed % n;
  };
  const STR = ['', 'plain', 'a@example.com', 'x\u0000y', 'é😀\u2028', 'tab\tquote"back\\', '4111 1111 1111 1111', '+44 20 7946 0958', 'DE89 3704 0044 0532 0130 00', '123-45-6789'];
  const KEYS = ['email', 'card', 'name', 'ssn', 'pin', 'a b', 'é', 'list', 'meta'];
  const gen = (d: number): unknown => {
    const k = rnd(d > 3 ? 5 : 8);
    if (k === 0) return STR[rnd(STR.length)];
    if (k === 1) return rnd(2) ? rnd(1e6) - 5e5 : 4111111111111111;
    if (k === 2) return [true, false, null, 1.5e-7][rnd(4)];
    if (k === 3) return STR[rnd(STR.length)] + ' ' + STR[rnd(STR.length)];
    if (k < 6) return Array.from({ length: rnd(4) }, () => gen(d + 1));
    return Object.fromEntries(Array.from({ length: rnd(5) }, () => [KEYS[rnd(KEYS.length)], gen(d + 1)]));
  };
  const shape = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(shape) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)])) : 0;
  let bad = 0;
  for (let n = 0; n < 1000; n++) {
    const v = gen(0);
    const doc = rnd(2) ? JSON.stringify(v) : JSON.stringify(v, null, 1);
    // Escape some non-ASCII as \u, as some encoders do.
    const input = rnd(2) ? doc.replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')) : doc;
    const whole = json(input);
    const cuts = Array.from({ length: 1 + rnd(6) }, () => rnd(Buffer.byteLength(input))).sort((a, b) => a - b);
    if (json(input, cuts) !== whole) { bad++; if (process.env.DBG) console.error("SPLIT", JSON.stringify(input), cuts, whole, json(input, cuts)); }
    let parsed: unknown;
    try {
      parsed = JSON.parse(whole);
    } catch {
      bad++;
      if (process.env.DBG) console.error('PARSE', JSON.stringify(input), whole);
      continue;
    }
    if (JSON.stringify(shape(parsed)) !== JSON.stringify(shape(JSON.parse(input)))) {
      bad++;
      if (process.env.DBG) console.error('SHAPE', JSON.stringify(input), whole);
    }
  }
  tt.equal(bad, 0, 'no split changes the output; every output parses with the input shape');
});
