// A seeded, deterministic mutator for wire input. A case is a list of VALID
// messages (from a protocol's corpus) mutated by a few stacked operators
// (bit flips, truncation, length-field lies, duplicated, garbage and
// retyped messages, oversized fields, inserted and deleted bytes), then split
// into chunks (whole, at every byte, or at random boundaries). The same seed
// and case number always give the same bytes and the same chunks, so any
// finding is reproduced with `npm run fuzz -- --seed S --replay <protocol>:<tier>:<case>`.

/** mulberry32: small, fast, good enough to drive a fuzzer. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = Math.imul(this.s ^ (this.s >>> 15), 1 | this.s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return max <= 1 ? 0 : Math.floor((this.next() / 4294967296) * max);
  }
  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Buffer {
    if (n > 256) {
      // Long runs come from a fixed random pool at a random offset: as random for a parser, far cheaper.
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; ) {
        const at = this.int(POOL.length - 1);
        i += POOL.copy(b, i, at, Math.min(POOL.length, at + n - i));
      }
      return b;
    }
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

const POOL = (() => {
  const r = new Rng(0x9e3779b9);
  const b = Buffer.allocUnsafe(1 << 20);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(r.next(), i);
  return b;
})();

/** The rng of one case: a function of the run's seed, the protocol tier and the case number only. */
export function caseRng(seed: number, stream: string, n: number): Rng {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ n, 0x01000193) ^ Math.imul(n >>> 16, 0x85ebca6b);
  return new Rng(h);
}

/** How a message is framed, so length fields can be found and lied about. */
export interface Framing {
  /** Offset of the length field in a message (Postgres typed: 1, untyped startup: 0, sftp/ssh: 0). */
  lengthAt(msg: Buffer): number | null;
  /** Whether the length counts itself (Postgres: yes; SSH/sftp: no). */
  lengthIncludesSelf: boolean;
  /** Builds a message of a random type around a body (for garbage and retyped messages). */
  make(type: number, body: Buffer): Buffer;
  /** Type byte offset, when messages have one. */
  typeAt: number | null;
}

const INTERESTING32 = [0, 1, 3, 4, 5, 7, 8, 9, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0x7fff, 0x8000, 0xffff, 0x10000, 10_000, 10_001, 1 << 20, (1 << 20) + 1, 0x3fffffff, 0x7ffffffe, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

export interface Mutated {
  bytes: Buffer;
  /** Operators applied, for the report of a finding. */
  ops: string[];
}

export interface MutateOptions {
  /** Largest oversized field, bytes. */
  maxOversize?: number;
  /** Operators to leave out (e.g. those that break framing, for in-session content mutation). */
  framingSafe?: boolean;
}

/** Mutates a sequence of valid messages into one byte stream. */
export function mutate(rng: Rng, msgs: readonly Buffer[], framing: Framing, opts: MutateOptions = {}): Mutated {
  const list: Buffer[] = msgs.map((m) => Buffer.from(m));
  const ops: string[] = [];
  const nOps = 1 + rng.int(rng.chance(0.2) ? 8 : 3);
  const maxOversize = opts.maxOversize ?? 70_000;
  for (let k = 0; k < nOps; k++) {
    const op = opts.framingSafe ? rng.pick(SAFE_OPS) : rng.pick(OPS);
    ops.push(op);
    const i = list.length ? rng.int(list.length) : 0;
    const m = list[i];
    switch (op) {
      case 'bitflip': {
        if (!m || !m.length) break;
        for (let f = 1 + rng.int(8); f > 0; f--) {
          const at = bodyStart(m, framing) + rng.int(Math.max(1, m.length - bodyStart(m, framing)));
          if (at < m.length) m[at]! ^= 1 << rng.int(8);
        }
        if (opts.framingSafe) fixLength(list, i, framing);
        break;
      }
      case 'bitflip-any': {
        if (!m || !m.length) break;
        for (let f = 1 + rng.int(4); f > 0; f--) m[rng.int(m.length)]! ^= 1 << rng.int(8);
        break;
      }
      case 'interesting-byte': {
        if (!m || !m.length) break;
        const at = opts.framingSafe ? bodyStart(m, framing) + rng.int(Math.max(1, m.length - bodyStart(m, framing))) : rng.int(m.length);
        if (at < m.length) m[at] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x27, 0x22, 0x5c, 0x3b, 0x24, 0x60]);
        break;
      }
      case 'truncate-msg': {
        if (!m) break;
        list[i] = m.subarray(0, rng.int(m.length));
        break;
      }
      case 'truncate-stream': {
        // Applied at the end (below) so that it cuts the whole stream.
        break;
      }
      case 'length-lie': {
        if (!m) break;
        const at = framing.lengthAt(m);
        if (at === null || at + 4 > m.length) break;
        const real = m.length - at - (framing.lengthIncludesSelf ? 0 : 4);
        const v = rng.chance(0.5) ? rng.pick(INTERESTING32) : rng.chance(0.5) ? real + rng.int(9) - 4 : rng.next();
        m.writeUInt32BE(v >>> 0, at);
        break;
      }
      case 'duplicate': {
        if (!m) break;
        const times = rng.chance(0.9) ? 1 + rng.int(3) : 1 + rng.int(200);
        list.splice(i, 0, ...Array.from({ length: times }, () => Buffer.from(m)));
        break;
      }
      case 'garbage-msg': {
        const type = rng.chance(0.5) ? rng.int(256) : rng.pick(TYPE_BYTES);
        list.splice(i, 0, framing.make(type, rng.bytes(rng.chance(0.8) ? rng.int(64) : rng.int(4096))));
        break;
      }
      case 'retype': {
        if (!m || framing.typeAt === null || m.length <= framing.typeAt) break;
        m[framing.typeAt] = rng.chance(0.5) ? rng.int(256) : rng.pick(TYPE_BYTES);
        break;
      }
      case 'oversize': {
        if (!m) break;
        const n = rng.chance(0.9) ? 256 + rng.int(4096) : rng.int(maxOversize);
        const fill = rng.chance(0.5) ? Buffer.alloc(n, rng.pick([0x41, 0x00, 0xff, 0x27, 0x28])) : rng.bytes(n);
        const at = bodyStart(m, framing) + rng.int(Math.max(1, m.length - bodyStart(m, framing)));
        list[i] = Buffer.concat([m.subarray(0, at), fill, m.subarray(at)]);
        if (opts.framingSafe || rng.chance(0.6)) fixLength(list, i, framing);
        break;
      }
      case 'insert-bytes': {
        if (!m) break;
        const at = rng.int(m.length + 1);
        list[i] = Buffer.concat([m.subarray(0, at), rng.bytes(1 + rng.int(16)), m.subarray(at)]);
        break;
      }
      case 'delete-bytes': {
        if (!m || !m.length) break;
        const at = rng.int(m.length);
        list[i] = Buffer.concat([m.subarray(0, at), m.subarray(at + 1 + rng.int(16))]);
        if (opts.framingSafe) fixLength(list, i, framing);
        break;
      }
      case 'swap': {
        if (list.length < 2) break;
        const j = rng.int(list.length);
        [list[i], list[j]] = [list[j]!, list[i]!];
        break;
      }
      case 'drop': {
        if (list.length > 1) list.splice(i, 1);
        break;
      }
      case 'splice-other': {
        // A copy of another message of the same stream, with a random prefix of this one.
        if (!m || list.length < 2) break;
        const o = list[rng.int(list.length)]!;
        list[i] = Buffer.concat([m.subarray(0, rng.int(m.length)), o.subarray(rng.int(o.length))]);
        break;
      }
    }
  }
  let bytes = Buffer.concat(list);
  if (ops.includes('truncate-stream') && bytes.length) bytes = bytes.subarray(0, rng.int(bytes.length));
  return { bytes, ops };
}

const OPS = [
  'bitflip', 'bitflip', 'bitflip-any', 'interesting-byte', 'truncate-msg', 'truncate-stream', 'length-lie', 'length-lie',
  'duplicate', 'garbage-msg', 'retype', 'oversize', 'insert-bytes', 'delete-bytes', 'swap', 'drop', 'splice-other',
] as const;
/** Operators that keep every message's length field right (content fuzzing inside a live session). */
const SAFE_OPS = ['bitflip', 'bitflip', 'interesting-byte', 'oversize', 'delete-bytes', 'duplicate', 'swap', 'drop'] as const;
/** Type bytes of both protocols' messages (Postgres frontend and backend letters, SSH and SFTP numbers). */
const TYPE_BYTES = [...'BCdcfDEHFPpQSXRKGWNAZTv'].map((c) => c.charCodeAt(0)).concat([1, 2, 3, 4, 5, 6, 20, 21, 30, 31, 50, 80, 90, 94, 98, 101, 102, 103, 104, 105, 200, 201]);

function bodyStart(m: Buffer, framing: Framing): number {
  const at = framing.lengthAt(m);
  return Math.min(m.length, at === null ? 0 : at + 4);
}

function fixLength(list: Buffer[], i: number, framing: Framing): void {
  const m = list[i]!;
  const at = framing.lengthAt(m);
  if (at === null || at + 4 > m.length) return;
  m.writeUInt32BE(m.length - at - (framing.lengthIncludesSelf ? 0 : 4), at);
}

/** Splits bytes into chunks: whole, one byte at a time (short inputs), or at random boundaries. */
const MAX_PIECES = 4096;

export function split(rng: Rng, bytes: Buffer): Buffer[] {
  const mode = rng.int(10);
  if (mode < 3 || bytes.length < 2) return [bytes];
  if (mode === 3 && bytes.length <= 2048) return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  if (mode === 4) {
    // Every boundary near the start (headers), then the rest whole.
    const k = Math.min(bytes.length, 16);
    return [...Array.from({ length: k }, (_, i) => bytes.subarray(i, i + 1)), ...(k < bytes.length ? [bytes.subarray(k)] : [])];
  }
  const out: Buffer[] = [];
  const max = 1 + rng.int(Math.min(bytes.length, mode < 8 ? 64 : 4096));
  // At most MAX_PIECES pieces: a message grown to tens of MB (oversize, then duplicate x200) cut into
  // 1-64 byte pieces made millions of writes and Buffers (1 GB of harness heap, a live worker busy
  // for minutes past its deadline). Up to MAX_PIECES bytes nothing changes.
  const least = Math.ceil(bytes.length / MAX_PIECES);
  let i = 0;
  while (i < bytes.length) {
    const n = Math.max(least, 1 + rng.int(max));
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}
