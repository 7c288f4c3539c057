// The masker of one HTTP body, picked by its Content-Type and Content-Encoding:
//   application/json, */*+json                         JSON (json-stream.ts)
//   application/x-ndjson, application/jsonl, …-seq     JSON values one after another
//   text/csv                                           CSV by its header row (csv-stream.ts)
//   text/event-stream                                  server-sent events (sse-stream.ts)
//   other text/*, XML, JavaScript, form data, YAML     text (StreamMasker: detectors)
// gzip, x-gzip, deflate and br bodies are decoded, masked and encoded again with
// the same coding (fast settings; every chunk is flushed through so streamed
// responses are not held back by the encoder).
//
// A body masking applies to but that cannot be masked (a binary or unknown
// type, no Content-Type, a charset other than UTF-8/ASCII, an unknown or stacked
// Content-Encoding) is refused, unless every rule set that applies allows
// binary copies (`allow_binary_copy: true`): then it passes unmasked.

import { Duplex, Transform, pipeline, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import type { MaskingCounts } from '../../session/session.js';
import { CsvStreamMasker } from '../../policy/masking/csv-stream.js';
import { JsonStreamMasker } from '../../policy/masking/json-stream.js';
import type { MaskingSet } from '../../policy/masking/ruleset.js';
import { SseStreamMasker } from '../../policy/masking/sse-stream.js';
import type { MaskContext } from '../../policy/masking/strategies.js';
import { StreamMasker } from '../../policy/masking/stream.js';

export interface BodyMaskerOptions {
  contentType: string | null | undefined;
  contentEncoding: string | null | undefined;
  set: MaskingSet | null;
  ctx: MaskContext;
  /** Longest single value (JSON string, CSV cell) held for masking; longer ones go out as "****". Default 1 MiB. */
  maxValue?: number;
}

export interface BodyMaskFlags {
  /** JSON or CSV that was not well formed from some byte on: the rest was masked as text (detectors only). */
  malformed: boolean;
  /** Values too long to hold, sent as "****". */
  oversized: number;
}

export type BodyMasker =
  | { kind: 'none' }
  | { kind: 'refuse'; reason: string }
  | {
      kind: 'mask';
      /** Body bytes in (as received, still encoded), masked body bytes out (in the same encoding). */
      stream: Duplex;
      /** What was masked so far (read it when the stream has finished). */
      readonly counts: MaskingCounts;
      readonly flags: BodyMaskFlags;
      /** Whether the masked body differs from the original (decoded) body. */
      changed(): boolean;
    };

type Format = 'json' | 'multi' | 'csv' | 'sse' | 'text';

const MULTI_JSON = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonlines', 'application/jsonlines', 'application/json-seq']);
const TEXT_LIKE = new Set([
  'application/xml',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'application/x-www-form-urlencoded',
  'application/yaml',
  'application/x-yaml',
  'application/graphql',
  'application/sql',
]);
const UTF8 = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);

function formatOf(mime: string): Format | null {
  if (mime === 'application/json' || mime.endsWith('+json')) return 'json';
  if (MULTI_JSON.has(mime)) return 'multi';
  if (mime === 'text/csv') return 'csv';
  if (mime === 'text/event-stream') return 'sse';
  if (mime.startsWith('text/') || TEXT_LIKE.has(mime) || mime.endsWith('+xml')) return 'text';
  return null;
}

/** Whether the set has anything that applies to a body of this format. */
function applies(set: MaskingSet, f: Format): boolean {
  if (set.scanner !== null) return true;
  if (f === 'text') return false;
  if (set.hasBareColumnRules) return true;
  return f !== 'csv' && set.jsonFields.length > 0;
}

type Classified = { kind: 'none' } | { kind: 'refuse'; reason: string } | { kind: 'ok'; format: Format; codec: Codec | null; set: MaskingSet };

/** Whether and how a body of this type and encoding is masked. */
function classify(o: BodyMaskerOptions): Classified {
  const set = o.set;
  if (set === null) return { kind: 'none' };
  const sets = set.names.join(', ');
  const bypass = `, or set allow_binary_copy: true on masking rule set${set.names.length > 1 ? 's' : ''} ${sets} to pass such bodies unmasked`;
  const [rawType, ...params] = (o.contentType ?? '').split(';');
  const mime = rawType!.trim().toLowerCase();
  const format = mime === '' ? null : formatOf(mime);
  if (format === null) {
    if (set.allowBinaryCopy) return { kind: 'none' };
    const what = mime === '' ? 'a response body without Content-Type' : `a ${mime} response body`;
    return { kind: 'refuse', reason: `masking (${sets}) applies but ${what} cannot be masked; have the upstream send JSON, CSV or text${bypass}` };
  }
  if (!applies(set, format)) return { kind: 'none' };
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const cs = p.slice(eq + 1).trim().replace(/^"|"$/g, '').toLowerCase();
    if (!UTF8.has(cs)) {
      if (set.allowBinaryCopy) return { kind: 'none' };
      return { kind: 'refuse', reason: `masking (${sets}) applies but a ${mime} body in charset ${cs} cannot be masked (only UTF-8 and US-ASCII can)${bypass}` };
    }
  }
  const codings = (o.contentEncoding ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'identity');
  if (codings.length > 1 || (codings.length === 1 && !CODECS[codings[0]!])) {
    if (set.allowBinaryCopy) return { kind: 'none' };
    return {
      kind: 'refuse',
      reason:
        `masking (${sets}) applies but a body with Content-Encoding "${o.contentEncoding}" cannot be decoded for masking ` +
        `(gzip, deflate and br can, one at a time); have the upstream use one of them or none (Accept-Encoding)${bypass}`,
    };
  }

  return { kind: 'ok', format, codec: codings.length === 1 ? CODECS[codings[0]!]! : null, set };
}

/**
 * For an unencoded body, the push-style masker itself (no stream: the HTTP relay pushes the
 * upstream's chunks and writes what `emit` gets); null when the body is encoded (use
 * createBodyMasker's stream then).
 */
export function createBodySink(o: BodyMaskerOptions, emit: (b: Buffer) => void): { kind: 'none' } | { kind: 'refuse'; reason: string } | { kind: 'sink'; sink: Sink; flags: BodyMaskFlags } | null {
  const c = classify(o);
  if (c.kind !== 'ok') return c;
  if (c.codec !== null) return null;
  const flags: BodyMaskFlags = { malformed: false, oversized: 0 };
  return { kind: 'sink', sink: makeSink(c.format, c.set, o, emit, flags), flags };
}

export function createBodyMasker(o: BodyMaskerOptions): BodyMasker {
  const c = classify(o);
  if (c.kind !== 'ok') return c;
  const { format, set } = c;
  const flags: BodyMaskFlags = { malformed: false, oversized: 0 };
  let masker: Sink | null = null;
  const mask = new MaskTransform((emit) => (masker = makeSink(format, set, o, emit, flags)));
  const codec = c.codec;
  const stream = codec === null ? mask : chain(codec.decode(), mask, codec.encode());
  return {
    kind: 'mask',
    stream,
    get counts() {
      return masker?.counts ?? { columns: {}, detectors: {} };
    },
    flags,
    changed: () => masker?.changed ?? false,
  };
}

interface StreamSink {
  push(b: Buffer): void;
  end(): void;
}

export type Sink = StreamSink & { counts: MaskingCounts; changed: boolean };

/** The push-style masker of one body format. */
function makeSink(format: Format, set: MaskingSet, o: BodyMaskerOptions, emit: (b: Buffer) => void, flags: BodyMaskFlags): Sink {
  const opts = { maxString: o.maxValue };
  switch (format) {
    case 'json':
    case 'multi': {
      const m = new JsonStreamMasker(set, o.ctx, emit, { ...opts, multi: format === 'multi' });
      return withFlags(m, () => {
        flags.malformed = m.flags.malformed;
        flags.oversized = m.flags.oversized;
      });
    }
    case 'csv': {
      const m = new CsvStreamMasker(set, o.ctx, emit, { maxCell: o.maxValue });
      return withFlags(m, () => {
        flags.malformed = m.flags.malformed;
        flags.oversized = m.flags.oversized;
      });
    }
    case 'sse': {
      const m = new SseStreamMasker(set, o.ctx, emit, opts);
      return withFlags(m, () => (flags.malformed = m.malformedLines > 0));
    }
    case 'text': {
      const m = new StreamMasker(set.scanner!, set.strategyFor, o.ctx, emit);
      return {
        push: (b) => m.push(b),
        end: () => m.end(),
        get counts() {
          return { columns: {}, detectors: { ...m.counts } };
        },
        get changed() {
          return Object.keys(m.counts).length > 0;
        },
      };
    }
  }
}

/**
 * A whole, unencoded body masked at once (a request body for the recording, a websocket text
 * message): the masked bytes and the counts, null when nothing applies, or why it cannot be masked.
 */
export function maskWhole(o: Omit<BodyMaskerOptions, 'contentEncoding'>, body: Buffer): { body: Buffer; counts: MaskingCounts } | { refuse: string } | null {
  const probe = createBodyMasker({ ...o, contentEncoding: undefined });
  if (probe.kind === 'none') return null;
  if (probe.kind === 'refuse') return { refuse: probe.reason };
  probe.stream.destroy();
  const mime = (o.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const parts: Buffer[] = [];
  const sink = makeSink(formatOf(mime)!, o.set!, { ...o, contentEncoding: undefined }, (b) => parts.push(b), { malformed: false, oversized: 0 });
  sink.push(body);
  sink.end();
  return { body: parts.length === 1 ? parts[0]! : Buffer.concat(parts), counts: sink.counts };
}

/** Keeps the flags object up to date after every push and at the end. */
function withFlags<T extends StreamSink & { counts: MaskingCounts; changed: boolean }>(m: T, sync: () => void): StreamSink & { counts: MaskingCounts; changed: boolean } {
  return {
    push: (b) => {
      m.push(b);
      sync();
    },
    end: () => {
      m.end();
      sync();
    },
    get counts() {
      return m.counts;
    },
    get changed() {
      return m.changed;
    },
  };
}

/**
 * A push-style masker as a Transform: what it emits while taking one chunk goes
 * out as one chunk (the chunk itself when nothing changed), so backpressure is
 * the stream's own.
 */
class MaskTransform extends Transform {
  private pieces: Buffer[] = [];
  private readonly sink: StreamSink;

  constructor(make: (emit: (b: Buffer) => void) => StreamSink) {
    super();
    this.sink = make((b) => this.pieces.push(b));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.sink.push(chunk);
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.sink.end();
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private drain(): void {
    const p = this.pieces;
    if (p.length === 0) return;
    this.pieces = [];
    this.push(p.length === 1 ? p[0] : Buffer.concat(p));
  }
}

interface Codec {
  decode(): Transform;
  encode(): Transform;
}

// Fast settings: masking re-encodes every byte, and an API response is read once (see the bench).
// Every write is flushed through, so a streamed response (SSE, NDJSON) is not held in the encoder.
const CODECS: Record<string, Codec | undefined> = {
  gzip: {
    decode: () => zlib.createGunzip(),
    encode: () => zlib.createGzip({ level: 1, flush: zlib.constants.Z_SYNC_FLUSH }),
  },
  deflate: {
    decode: () => zlib.createInflate(),
    encode: () => zlib.createDeflate({ level: 1, flush: zlib.constants.Z_SYNC_FLUSH }),
  },
  br: {
    decode: () => zlib.createBrotliDecompress(),
    encode: () =>
      zlib.createBrotliCompress({
        flush: zlib.constants.BROTLI_OPERATION_FLUSH,
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 }, // q1: ~140 MB/s, ratio 3.7 on JSON; q4: ~27 MB/s, 4.3 (bench/masking-json.ts)
      }),
  },
};
CODECS['x-gzip'] = CODECS.gzip;

/** decode → mask → encode as one Duplex: bytes in at the decoder, out of the encoder; an error in any ends all. */
function chain(decode: Transform, mask: Transform, encode: Transform): Duplex {
  const d = Duplex.from({ writable: decode, readable: encode });
  pipeline(decode, mask, encode, (err) => {
    if (err) d.destroy(err);
  });
  return d;
}
