// The relay codec fed every message split at every byte boundary, and random
// multi-way splits: output bytes and the messages seen must not depend on how
// TCP chopped the stream.
import t from 'tap';
import pgProtocol from 'pg-protocol';

// Default import: the named export is not visible under every ESM loader (ts-node's, for one).
const { serialize } = pgProtocol;
import { Framer, ProtocolViolation, type FrameHandler } from '../src/protocols/postgres/framer.js';

const stream = Buffer.concat([
  serialize.query('select 1; -- a comment with DROP TABLE'),
  serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }),
  serialize.bind({ statement: 's1', values: ['42'] }),
  serialize.describe({ type: 'P' }),
  serialize.execute({}),
  serialize.sync(),
  serialize.copyData(Buffer.alloc(300, 7)),
  serialize.copyDone(),
  serialize.flush(),
  serialize.query(''),
  serialize.end(),
]);

interface Seen {
  type: number;
  body: string;
}

class Recorder implements FrameHandler {
  seen: Seen[] = [];
  headers: number[] = [];
  constructor(
    private readonly want: Set<number>,
    private readonly drop = new Set<number>(),
    private readonly framer?: () => Framer,
  ) {}
  wantsMessage(type: number): boolean {
    this.headers.push(type);
    return this.want.has(type);
  }
  onMessage(type: number, buf: Buffer, start: number, end: number): boolean {
    this.seen.push({ type, body: buf.subarray(start, end).toString('hex') });
    if (this.drop.has(type)) {
      this.framer!().emit(Buffer.from('REPLACED'));
      return false;
    }
    return true;
  }
}

function run(chunks: Buffer[], want: Set<number>, drop?: Set<number>) {
  let f!: Framer;
  const rec = new Recorder(want, drop, () => f);
  f = new Framer(rec, 1 << 20);
  const out: Buffer[] = [];
  for (const c of chunks) {
    f.push(c);
    out.push(...f.take());
  }
  return { out: Buffer.concat(out), rec, idle: f.idle };
}

const Q = 0x51;
const P = 0x50;
const d = 0x64;
const wanted = new Set([Q, P]);
const whole = run([stream], wanted);

t.test('one chunk: output is the input, wanted messages seen whole', async (t) => {
  t.ok(whole.out.equals(stream));
  t.same(
    whole.rec.seen.map((s) => s.type),
    [Q, P, Q],
  );
  t.equal(whole.rec.headers.length, 11);
  t.ok(whole.idle);
});

t.test('an untouched chunk goes out as the same Buffer (zero copy)', async (t) => {
  const f = new Framer({ wantsMessage: () => false, onMessage: () => true }, 1 << 20);
  f.push(stream);
  const out = f.take();
  t.equal(out.length, 1);
  t.equal(out[0], stream);
});

t.test('every two-way split gives the same result', async (t) => {
  let bad = 0;
  for (let k = 1; k < stream.length; k++) {
    const r = run([stream.subarray(0, k), stream.subarray(k)], wanted);
    if (!r.out.equals(stream) || JSON.stringify(r.rec.seen) !== JSON.stringify(whole.rec.seen) || !r.idle) bad++;
  }
  t.equal(bad, 0, `all ${stream.length - 1} split points agree`);
});

t.test('byte-at-a-time and random splits give the same result', async (t) => {
  const bytes = [...stream].map((b) => Buffer.from([b]));
  const r = run(bytes, wanted);
  t.ok(r.out.equals(stream));
  t.same(r.rec.seen, whole.rec.seen);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let round = 0; round < 300; round++) {
    const chunks: Buffer[] = [];
    let i = 0;
    while (i < stream.length) {
      const n = 1 + Math.floor(rnd() * 40);
      chunks.push(stream.subarray(i, i + n));
      i += n;
    }
    const rr = run(chunks, wanted);
    if (!rr.out.equals(stream) || JSON.stringify(rr.rec.seen) !== JSON.stringify(whole.rec.seen)) {
      t.fail(`random split round ${round} differs`);
      return;
    }
  }
  t.pass('300 random splits agree');
});

t.test('a dropped message is replaced in place, at every split', async (t) => {
  const drop = new Set([P]);
  const expected = (() => {
    const r = run([stream], new Set([Q, P, d]), drop);
    return r.out;
  })();
  t.ok(expected.includes(Buffer.from('REPLACED')));
  t.notOk(expected.includes(Buffer.from('select $1::int')));
  t.equal(expected.length, stream.length - serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }).length + 8);
  let bad = 0;
  for (let k = 1; k < stream.length; k++) {
    const r = run([stream.subarray(0, k), stream.subarray(k)], new Set([Q, P, d]), drop);
    if (!r.out.equals(expected)) bad++;
  }
  t.equal(bad, 0);
});

t.test('malformed lengths and oversized messages are protocol violations', async (t) => {
  const f = new Framer({ wantsMessage: () => false, onMessage: () => true }, 1000);
  t.throws(() => f.push(Buffer.from([0x51, 0, 0, 0, 2])), ProtocolViolation);
  const g = new Framer({ wantsMessage: () => true, onMessage: () => true }, 1000);
  t.throws(() => g.push(Buffer.from([0x51, 0, 0, 0x10, 0])), /exceeds the limit of 1000 bytes/);
  const h = new Framer({ wantsMessage: () => false, onMessage: () => true }, 1000);
  h.push(Buffer.from([0x51, 0xff, 0xff]));
  t.throws(() => h.push(Buffer.from([0xff, 0xff])), ProtocolViolation, 'negative length split across chunks');
});

t.test('a large passthrough message streams without being buffered', async (t) => {
  const big = serialize.copyData(Buffer.alloc(5_000_000, 1));
  const f = new Framer({ wantsMessage: () => false, onMessage: () => true }, 1 << 20);
  const chunks = [big.subarray(0, 3), big.subarray(3, 65536), big.subarray(65536)];
  const out: Buffer[] = [];
  for (const c of chunks) {
    f.push(c);
    out.push(...f.take());
  }
  t.ok(Buffer.concat(out).equals(big), 'passthrough ignores the buffering limit because nothing is buffered');
  t.ok(f.idle);
});

t.test('pause holds the rest of the input in order, at every split, and resume continues', async (t) => {
  // Pause after every Parse; resume at once after taking the output.
  const expected = stream;
  let bad = 0;
  for (let k = 1; k < stream.length; k += 3) {
    let f!: Framer;
    const seen: number[] = [];
    f = new Framer(
      {
        wantsMessage: (type) => type === P,
        onMessage: (type) => {
          seen.push(type);
          f.pause();
          return true;
        },
      },
      1 << 20,
    );
    const out: Buffer[] = [];
    for (const c of [stream.subarray(0, k), stream.subarray(k)]) {
      f.push(c);
      out.push(...f.take());
    }
    while (f.isPaused) {
      f.resume();
      out.push(...f.take());
    }
    if (!Buffer.concat(out).equals(expected) || seen.length !== 1) bad++;
  }
  t.equal(bad, 0);
});

t.test('rewrites written into the slab go out in order, at every split, also when they outgrow a slab', async (t) => {
  // Every Q and P is rewritten into the slab (P grows to 200 times its size, past the slab sized
  // from its chunk, so the message in progress moves to a new one); every d is replaced by emit; the
  // rest streams through.
  const rewrite = (buf: Buffer, start: number, end: number, f: Framer) => {
    const body = buf.subarray(start + 5, end);
    const reps = buf[start] === P ? 200 : 1;
    const slab = f.slab;
    slab.begin(5);
    slab.buf[slab.pos++] = buf[start]!;
    slab.pos += 4;
    for (let r = 0; r < reps; r++) {
      slab.ensure(body.length);
      slab.pos += body.copy(slab.buf, slab.pos);
    }
    slab.buf.writeInt32BE(slab.pos - slab.messageStart - 1, slab.messageStart + 1);
  };
  const expectedFor = (): Buffer => {
    const parts: Buffer[] = [];
    let o = 0;
    while (o < stream.length) {
      const type = stream[o]!;
      const len = stream.readInt32BE(o + 1);
      const m = stream.subarray(o, o + 1 + len);
      if (type === Q || type === P) {
        const reps = type === P ? 200 : 1;
        const body = Buffer.concat(Array.from({ length: reps }, () => m.subarray(5)));
        const h = Buffer.alloc(5);
        h[0] = type;
        h.writeInt32BE(4 + body.length, 1);
        parts.push(h, body);
      } else if (type === d) parts.push(Buffer.from('REPLACED'));
      else parts.push(m);
      o += 1 + len;
    }
    return Buffer.concat(parts);
  };
  const expected = expectedFor();
  const go = (chunks: Buffer[]): Buffer => {
    let f!: Framer;
    const handler: FrameHandler = {
      wantsMessage: (type) => type === Q || type === P || type === d,
      onMessage: (type, buf, start, end) => {
        if (type === d) f.emit(Buffer.from('REPLACED'));
        else rewrite(buf, start, end, f);
        return false;
      },
    };
    f = new Framer(handler, 1 << 20);
    const out: Buffer[] = [];
    for (const c of chunks) {
      f.push(c);
      out.push(...f.take());
    }
    return Buffer.concat(out);
  };
  t.ok(go([stream]).equals(expected), 'one chunk');
  let bad = 0;
  for (let k = 1; k < stream.length; k++) if (!go([stream.subarray(0, k), stream.subarray(k)]).equals(expected)) bad++;
  t.equal(bad, 0, 'every two-way split');
  const bytes: Buffer[] = [];
  for (let k = 0; k < stream.length; k++) bytes.push(stream.subarray(k, k + 1));
  t.ok(go(bytes).equals(expected), 'byte at a time');
});

// ---- client encodings (encoding.ts) ----------------------------------------------------

t.test('client encodings: decoded as the server does, and back', async (t) => {
  const { textCodec, clientEncodingOf } = await import('../src/protocols/postgres/encoding.js');
  const { maskValue } = await import('../src/policy/masking/strategies.js');
  const cp = (s: string) => [...s].map((c) => c.codePointAt(0)!.toString(16));
  const bytes = Buffer.from([0x63, 0xe9, 0x80, 0x9f, 0xa4]);
  t.same(cp(textCodec('LATIN1').decode(bytes)), ['63', 'e9', '80', '9f', 'a4']);
  t.same(cp(textCodec('WIN1252').decode(bytes)), ['63', 'e9', '20ac', '178', 'a4'], 'windows-1252 has printable characters at 0x80-0x9F');
  t.same(cp(textCodec('LATIN9').decode(bytes)), ['63', 'e9', '80', '9f', '20ac'], 'LATIN9 has the euro sign at 0xA4');
  t.same(cp(textCodec('LATIN5').decode(bytes)), ['63', 'e9', '80', '9f', 'a4'], 'LATIN5 is ISO 8859-9 (C1 controls), not windows-1254');
  t.same(cp(textCodec('KOI8R').decode(Buffer.from([0xc1]))), ['430']);
  t.same(cp(textCodec('EUC_JP').decode(Buffer.from([0xa4, 0xa2]))), ['3042']);
  for (const name of ['LATIN1', 'WIN1252', 'LATIN9', 'WIN1251', 'KOI8R']) {
    const c = textCodec(name);
    t.ok(c.exact && c.singleByte && !c.utf8, `${name}: exact, single-byte`);
    t.same(c.encode(c.decode(bytes.subarray(0, 3))), bytes.subarray(0, 3), `${name}: round trip`);
  }
  t.equal(textCodec('UTF8').utf8, true);
  t.equal(textCodec('unicode').utf8, true);
  for (const name of ['SQL_ASCII', 'MULE_INTERNAL', 'EUC_TW']) t.equal(textCodec(name).exact, false, `${name}: not read exactly`);
  const ps = (k: string, v: string) => {
    const body = Buffer.from(`${k}\0${v}\0`);
    const m = Buffer.alloc(5);
    m[0] = 0x53;
    m.writeInt32BE(4 + body.length, 1);
    return Buffer.concat([m, body]);
  };
  t.equal(clientEncodingOf([ps('server_version', '15'), ps('client_encoding', 'LATIN1')]), 'LATIN1');
  t.equal(clientEncodingOf([ps('server_version', '15')]), undefined);

  // partial keeps the last 4 characters: in a single-byte encoding every byte is one.
  const ctx = { hmacKey: Buffer.alloc(32, 1) };
  const v = Buffer.from('abcdefgh±±±±', 'latin1'); // ± is 0xB1, a UTF-8 continuation byte
  t.equal(maskValue('partial', v, { ...ctx, bytesAreChars: true })!.toString('latin1'), '****±±±±');
  t.equal(maskValue('partial', Buffer.from('abcdefgh±±±±'), ctx)!.toString('utf8'), '****±±±±', 'the same in UTF-8');
});
