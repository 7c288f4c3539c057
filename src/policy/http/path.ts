// The request path, decoded and normalised exactly once, for the policy and
// for the upstream alike (so the two can never read different paths).
//
// Path-confusion attacks (Orange Tsai, "Breaking Parser Logic", Black Hat 2018;
// PortSwigger's URL-validation and path-traversal research) work because a
// gateway and the server behind it decode or normalise the same bytes
// differently: `/a/..;/admin` is `/a/..;/admin` to nginx and `/admin` to
// Tomcat; `/a%2fb` is one segment to one parser and two to the next; `%252e`
// decoded twice becomes `.`. The defence here is to accept only paths that
// every reasonable parser reads the same way, and to forward the one reading
// the policy decided:
//
//   - the query is split off at the first '?'; a fragment ('#') is an error;
//   - percent-encoded bytes are decoded ONCE (so `%252e` is the literal text
//     `%2e`, forwarded as `%252e`); invalid encoding is an error;
//   - `.` and `..` segments are removed per RFC 3986 §5.2.4, also when written
//     `%2e`; `..` never climbs above `/`;
//   - errors, never silently "fixed": an encoded '/' (`%2F`) or '\' (`%5C`), a
//     raw '\', control bytes (raw or encoded, NUL included), raw non-ASCII,
//     a segment holding ';' (path parameters: the `..;/` Tomcat trick), and
//     bytes that are not valid UTF-8 once decoded (overlong `%c0%ae` included);
//   - nothing else is collapsed: `//x` stays `//x` (the policy's deny rules
//     also match such paths loosely, see match.ts).
// The canonical path sent upstream re-encodes only what a path segment may not
// hold raw (RFC 3986 pchar): space, '%', '?', '#', controls, non-ASCII, and
// `"<>\^`{|}[]`.

export interface NormalizedPath {
  /** Canonical form to forward upstream (percent-encoded where it must be). */
  path: string;
  /** The same path decoded: what rules match. */
  decoded: string;
  /** The raw query string after the first '?', without the '?' ('' when none). */
  query: string;
}

const HEX = '0123456789ABCDEF';
const hexVal = (c: number) => (c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1);

/** pchar minus pct-encoded, plus '/': the characters a canonical path keeps raw. */
const RAW_OK = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") RAW_OK[c.charCodeAt(0)] = 1;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const show = (s: string) => JSON.stringify(s.length > 80 ? s.slice(0, 77) + '...' : s);

/**
 * The common case, checked without allocating: only characters a canonical path keeps raw, no
 * '%' and no ';', and no '.' or '..' segment. Such a path decodes and normalises to itself.
 */
function isCanonical(p: string): boolean {
  if (p.length === 0) return false;
  let segStart = 0;
  for (let i = 0; i <= p.length; i++) {
    const c = i < p.length ? p.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const n = i - segStart;
      if ((n === 1 && p.charCodeAt(segStart) === 0x2e) || (n === 2 && p.charCodeAt(segStart) === 0x2e && p.charCodeAt(segStart + 1) === 0x2e)) return false;
      segStart = i + 1;
      continue;
    }
    if (c >= 128 || RAW_OK[c] !== 1 || c === 0x3b /* ; */) return false;
  }
  return true;
}

export function normalizePath(raw: string): NormalizedPath | { error: string } {
  if (raw.includes('#')) return { error: `the request target ${show(raw)} has a fragment ('#')` };
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q + 1);
  for (let i = 0; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return { error: `the query string holds a control character (0x${c.toString(16).padStart(2, '0')})` };
  }
  if (rawPath !== '' && rawPath[0] !== '/') return { error: `the request path ${show(rawPath)} does not start with '/'` };
  if (isCanonical(rawPath)) return { path: rawPath, decoded: rawPath, query };

  const bytes: number[] = [];
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === 0x25) {
      const h = i + 2 < rawPath.length ? hexVal(rawPath.charCodeAt(i + 1)) : -1;
      const l = h >= 0 ? hexVal(rawPath.charCodeAt(i + 2)) : -1;
      if (l < 0) return { error: `invalid percent-encoding ${show(rawPath.slice(i, i + 3))} in the request path` };
      const b = h * 16 + l;
      if (b === 0x2f) return { error: `an encoded '/' (${rawPath.slice(i, i + 3)}) in the request path is refused: servers disagree whether it separates segments` };
      if (b === 0x5c) return { error: `an encoded '\\' (${rawPath.slice(i, i + 3)}) in the request path is refused: some servers read it as '/'` };
      if (b < 0x20 || b === 0x7f) return { error: `an encoded control byte (${rawPath.slice(i, i + 3)}) in the request path is refused` };
      bytes.push(b);
      i += 2;
      continue;
    }
    if (c === 0x5c) return { error: `a '\\' in the request path is refused: some servers read it as '/'` };
    if (c < 0x20 || c === 0x7f) return { error: `a control character (0x${c.toString(16).padStart(2, '0')}) in the request path is refused` };
    if (c > 0x7e) return { error: `a raw non-ASCII character in the request path is refused (percent-encode it as UTF-8)` };
    if (c === 0x20) return { error: `a raw space in the request path is refused` };
    bytes.push(c);
  }
  let decoded: string;
  try {
    decoded = utf8.decode(Uint8Array.from(bytes));
  } catch {
    return { error: `the request path ${show(rawPath)} is not valid UTF-8 once decoded (overlong or truncated sequences are refused)` };
  }
  // Every segment as sent, also one a later `..` removes (Tomcat strips `;…` before resolving dots).
  for (const s of decoded.split('/')) {
    if (s.includes(';')) return { error: `a path segment with ';' (${show(s)}) is refused: servers such as Tomcat strip it as a path parameter` };
  }
  const segments = removeDotSegments(decoded === '' ? '/' : decoded);
  const out = '/' + segments.join('/');
  return { path: encodePath(out), decoded: out, query };
}

/**
 * RFC 3986 §5.2.4 on an absolute path, returned as its segments after the
 * leading '/': a trailing `.` or `..` leaves an empty last segment (`/a/b/..`
 * is `/a/`), and `..` at the root stays at the root.
 */
function removeDotSegments(path: string): string[] {
  const input = path.split('/').slice(1);
  const out: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const s = input[i]!;
    const last = i === input.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return out.length ? out : [''];
}

/** The decoded path in canonical form: UTF-8 percent-encoding of every character outside pchar and '/'. */
export function encodePath(decoded: string): string {
  let out = '';
  let start = 0;
  for (let i = 0; i < decoded.length; i++) {
    const c = decoded.charCodeAt(i);
    if (c < 128 && RAW_OK[c]) continue;
    out += decoded.slice(start, i);
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < decoded.length) {
      cp = decoded.codePointAt(i)!;
      if (cp > 0xffff) i++;
    }
    for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) out += '%' + HEX[b >> 4] + HEX[b & 15];
    start = i + 1;
  }
  return start === 0 ? decoded : out + decoded.slice(start);
}
