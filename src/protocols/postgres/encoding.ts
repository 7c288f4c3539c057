// The client's text encoding (client_encoding), as the server reports it in
// ParameterStatus: SQL text, names in RowDescription and error fields reach
// Sluice in it. Sluice's parser, its policy names and the catalog are UTF-8, so
// text is decoded with the client's encoding before it is read.
//
// Only encodings whose multibyte characters never contain an ASCII byte can get
// here while a statement policy applies (parser-safety.ts refuses the others):
// SQL structure (quotes, semicolons, backslashes) is then the same bytes in any
// of them, and only the characters of non-ASCII names and literals differ.

import { TextDecoder } from 'node:util';

/** One client encoding: how its bytes become text and back. */
export interface PgTextCodec {
  /** The server's name for it, as reported (e.g. "UTF8", "LATIN1"). */
  readonly name: string;
  /** UTF-8: detectors and strategies see whole UTF-8 characters. */
  readonly utf8: boolean;
  /** Every byte is one character (single-byte encodings). */
  readonly singleByte: boolean;
  /** Sluice decodes it exactly as the server does (false: non-ASCII characters are not readable here). */
  readonly exact: boolean;
  decode(buf: Buffer, start?: number, end?: number): string;
  /** Text to bytes; characters the encoding cannot hold become '?'. */
  encode(text: string): Buffer;
}

const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

const UTF8: PgTextCodec = {
  name: 'UTF8',
  utf8: true,
  singleByte: false,
  exact: true,
  decode: (buf, start = 0, end = buf.length) => buf.toString('utf8', start, end),
  encode: (text) => Buffer.from(text, 'utf8'),
};

/** A single-byte encoding from its 256 characters (U+FFFD for bytes it leaves undefined). */
function singleByte(name: string, chars: string[], exact = true): PgTextCodec {
  const back = new Map<string, number>();
  for (let b = 255; b >= 0; b--) if (chars[b] !== '\ufffd') back.set(chars[b]!, b);
  let ascii = true;
  for (let b = 0; b < 128; b++) if (chars[b] !== String.fromCharCode(b)) ascii = false;
  return {
    name,
    utf8: false,
    singleByte: true,
    exact,
    decode(buf, start = 0, end = buf.length) {
      let i = start;
      if (ascii) {
        while (i < end && buf[i]! < 0x80) i++;
        if (i === end) return buf.toString('latin1', start, end);
      }
      let out = buf.toString('latin1', start, i);
      for (; i < end; i++) out += chars[buf[i]!];
      return out;
    },
    encode(text) {
      const out = Buffer.allocUnsafe(text.length);
      let n = 0;
      for (const ch of text) out[n++] = back.get(ch) ?? 0x3f;
      return out.subarray(0, n);
    },
  };
}

/** The 256 characters of a single-byte encoding; `c1Controls`: 0x80-0x9F are U+0080-U+009F (ISO 8859). */
function tableOf(label: string, c1Controls = false): string[] | null {
  let d: TextDecoder;
  try {
    d = new TextDecoder(label);
  } catch {
    return null;
  }
  const chars: string[] = [];
  for (let b = 0; b < 256; b++) chars.push(c1Controls && b >= 0x80 && b < 0xa0 ? String.fromCharCode(b) : d.decode(Uint8Array.of(b)));
  return chars;
}

const LATIN1_CHARS = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b));

/** Node's TextDecoder reads windows-1252 as latin1: its 0x80-0x9F (U+FFFD where it defines none). */
const WIN1252_C1 = [
  0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0xfffd, 0x017d, 0xfffd,
  0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0xfffd, 0x017e, 0x0178,
];
const WIN1252_CHARS = LATIN1_CHARS.map((c, b) => (b >= 0x80 && b < 0xa0 ? String.fromCharCode(WIN1252_C1[b - 0x80]!) : c));

/** Postgres encoding names and aliases (normalised) → WHATWG labels of single-byte encodings. */
const SINGLE_BYTE: Record<string, string> = {
  latin2: 'iso-8859-2', iso88592: 'iso-8859-2',
  latin3: 'iso-8859-3', iso88593: 'iso-8859-3',
  latin4: 'iso-8859-4', iso88594: 'iso-8859-4',
  latin5: 'iso-8859-9', iso88599: 'iso-8859-9',
  latin6: 'iso-8859-10', iso885910: 'iso-8859-10',
  latin7: 'iso-8859-13', iso885913: 'iso-8859-13',
  latin8: 'iso-8859-14', iso885914: 'iso-8859-14',
  latin9: 'iso-8859-15', iso885915: 'iso-8859-15',
  latin10: 'iso-8859-16', iso885916: 'iso-8859-16',
  iso88595: 'iso-8859-5', iso88596: 'iso-8859-6', iso88597: 'iso-8859-7', iso88598: 'iso-8859-8',
  win1250: 'windows-1250', windows1250: 'windows-1250',
  win1251: 'windows-1251', windows1251: 'windows-1251', win: 'windows-1251',
  win1252: 'windows-1252', windows1252: 'windows-1252',
  win1253: 'windows-1253', windows1253: 'windows-1253',
  win1254: 'windows-1254', windows1254: 'windows-1254',
  win1255: 'windows-1255', windows1255: 'windows-1255',
  win1256: 'windows-1256', windows1256: 'windows-1256',
  win1257: 'windows-1257', windows1257: 'windows-1257',
  win1258: 'windows-1258', windows1258: 'windows-1258', abc: 'windows-1258', tcvn: 'windows-1258', tcvn5712: 'windows-1258', vscii: 'windows-1258',
  win866: 'ibm866', windows866: 'ibm866', alt: 'ibm866',
  win874: 'windows-874', windows874: 'windows-874',
  koi8r: 'koi8-r', koi8: 'koi8-r',
  koi8u: 'koi8-u',
};

/** ASCII-safe multibyte encodings with a decoder here. */
const MULTI_BYTE: Record<string, string> = {
  eucjp: 'euc-jp',
  euckr: 'euc-kr',
  euccn: 'gbk', // EUC-CN is a subset of GBK
};

function multiByte(name: string, label: string): PgTextCodec {
  const d = new TextDecoder(label);
  return {
    name,
    utf8: false,
    singleByte: false,
    exact: true,
    decode: (buf, start = 0, end = buf.length) => d.decode(buf.subarray(start, end)),
    // Sluice writes only ASCII of its own in these (markers, masks); anything else becomes '?'.
    encode: (text) => Buffer.from(text.replace(/[^\x00-\x7f]/g, '?'), 'latin1'),
  };
}

/** An encoding Sluice cannot decode (EUC_TW, EUC_JIS_2004, MULE_INTERNAL, ...): ASCII is read, other bytes are not. */
function opaque(name: string): PgTextCodec {
  return { ...singleByte(name, LATIN1_CHARS, false), singleByte: false };
}

const cache = new Map<string, PgTextCodec>([['UTF8', UTF8]]);

/** The codec for a client_encoding value as the server reports it. */
export function textCodec(name: string | undefined): PgTextCodec {
  if (!name) return UTF8;
  let c = cache.get(name);
  if (c) return c;
  const n = norm(name);
  if (n === 'utf8' || n === 'unicode') c = UTF8;
  // SQL_ASCII: the server does not convert, so the bytes may be in any encoding: read as UTF-8, but not exact.
  else if (n === 'sqlascii') c = { ...UTF8, name, exact: false };
  else if (n === 'latin1' || n === 'iso88591') c = singleByte(name, LATIN1_CHARS);
  else if (SINGLE_BYTE[n]) {
    // WHATWG reads iso-8859-9 as windows-1254; Postgres' LATIN5 has C1 controls at 0x80-0x9F.
    const label = SINGLE_BYTE[n]!;
    const chars = label === 'windows-1252' ? WIN1252_CHARS : tableOf(label, label === 'iso-8859-9');
    // No decoder here (LATIN10): ASCII is read, other bytes are not.
    c = chars ? singleByte(name, chars) : singleByte(name, LATIN1_CHARS, false);
  } else if (MULTI_BYTE[n]) c = multiByte(name, MULTI_BYTE[n]!);
  else c = opaque(name);
  if (cache.size < 64) cache.set(name, c);
  return c;
}

/** The client_encoding among raw ParameterStatus messages (type, length, name\0value\0). */
export function clientEncodingOf(parameterStatus: readonly Buffer[]): string | undefined {
  let found: string | undefined;
  for (const m of parameterStatus) {
    const z = m.indexOf(0, 5);
    if (z < 0 || m.toString('latin1', 5, z) !== 'client_encoding') continue;
    const z2 = m.indexOf(0, z + 1);
    found = m.toString('latin1', z + 1, z2 < 0 ? m.length : z2);
  }
  return found;
}

/** Holds the session's current client encoding; updated from the server's ParameterStatus. */
export class ClientText {
  codec: PgTextCodec;

  constructor(name?: string) {
    this.codec = textCodec(name);
  }

  set(name: string): void {
    if (name !== this.codec.name) this.codec = textCodec(name);
  }
}
