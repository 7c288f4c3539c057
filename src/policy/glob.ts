// The glob forms policy rules share (shell commands and paths written, HTTP paths and values).

const escape = (s: string) => s.replace(/[.+^${}()|[\]\\]/g, '\\$&');

/** `*` any characters, `?` one character, anything else literal; the whole string must match. */
export function anyCharsRe(glob: string, flags?: string): RegExp {
  return new RegExp('^' + glob.split('').map((c) => (c === '*' ? '[\\s\\S]*' : c === '?' ? '[\\s\\S]' : escape(c))).join('') + '$', flags);
}

/**
 * A path glob as a regex source: `*` and `?` stay within one segment, `**` crosses segments,
 * and a trailing `/**` also matches the directory itself (`/v1/**` matches `/v1`).
 */
export function pathGlobSource(glob: string): string {
  let tail = '';
  let g = glob;
  if (g.length > 3 && g.endsWith('/**')) {
    g = g.slice(0, -3);
    tail = '(?:/[\\s\\S]*)?';
  }
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*' && g[i + 1] === '*') {
      re += '[\\s\\S]*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += escape(c);
  }
  return '^' + re + tail + '$';
}
