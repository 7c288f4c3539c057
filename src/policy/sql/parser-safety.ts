// Settings that would make the server read SQL differently from Sluice's parser.
//
// Sluice decides on the text it parses (UTF-8, standard_conforming_strings on).
// Two settings could make the server see a different statement in the same bytes:
// - client encodings whose multibyte characters can end in a backslash or quote
//   byte (SJIS, BIG5, GBK, GB18030, UHC, JOHAB), so `'…<0x83 0x5c>' ; drop …`
//   is one literal to Sluice and a literal plus a DROP to the server;
// - standard_conforming_strings off, where a backslash escapes a quote.
// While a statement policy applies, both are refused.

/** Postgres encoding names and aliases, normalised (lowercase, alphanumerics only). */
const UNSAFE_ENCODINGS = new Set([
  'sjis', 'shiftjis', 'shiftjis2004', 'mskanji', 'windows932', 'win932', 'cp932',
  'big5', 'windows950', 'win950', 'cp950',
  'gbk', 'windows936', 'win936', 'cp936',
  'gb18030',
  'uhc', 'windows949', 'win949', 'cp949',
  'johab',
]);

const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

export function isUnsafeClientEncoding(name: string): boolean {
  return UNSAFE_ENCODINGS.has(norm(name));
}

/** True when setting `name` to `value` would desynchronise the parsers. `value` undefined: RESET/DEFAULT. */
export function isUnsafeSetting(name: string, value: string | undefined): boolean {
  const n = name.toLowerCase();
  if (n === 'client_encoding' || n === 'names') return value !== undefined && isUnsafeClientEncoding(value);
  if (n === 'standard_conforming_strings') return value !== undefined && !['on', 'true', 'yes', '1'].includes(value.toLowerCase().trim());
  return false;
}
