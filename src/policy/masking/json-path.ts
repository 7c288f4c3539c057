// JSON paths of `fields:` masking rules: `$`, `.name`, `['name']`, `[*]`,
// `.*`, `[n]` and `..` (descendant) before any of them. Compiled to steps the
// streaming JSON masker (json-stream.ts) runs as a small NFA, one bitmask of
// live positions per path and nesting level, so a path costs nothing per byte.

/** One step: a member name, an array index, or any child (name null, index -1); desc: at any depth below. */
export interface PathStep {
  desc: boolean;
  name: string | null;
  index: number;
}

export interface JsonPath {
  source: string;
  steps: PathStep[];
}

/** Paths run as 32-bit masks of positions, so a path has at most this many steps. */
export const MAX_PATH_STEPS = 30;

const IDENT_STOP = new Set(['.', '[', ']', '*', "'", '"', ' ', '\t', '\n', '\r']);

/** Parses a JSON path; a string is the error, written for a config message. */
export function parseJsonPath(src: string): JsonPath | string {
  if (src[0] !== '$') return `a JSON path starts with "$" (e.g. $.customers[*].email), got ${JSON.stringify(src)}`;
  const steps: PathStep[] = [];
  let i = 1;
  const bad = (what: string): string => `invalid JSON path ${JSON.stringify(src)} at character ${i + 1}: ${what}`;
  while (i < src.length) {
    let desc = false;
    if (src.startsWith('..', i)) {
      desc = true;
      i += 2;
      if (src[i] === '.') return bad('three dots');
    } else if (src[i] === '.') i++;
    else if (src[i] !== '[') return bad(`expected ".", ".." or "[", got ${JSON.stringify(src[i])}`);
    if (src[i] === '[') {
      i++;
      const c = src[i];
      if (c === '*') {
        i++;
        steps.push({ desc, name: null, index: -1 });
      } else if (c !== undefined && c >= '0' && c <= '9') {
        let j = i;
        while (j < src.length && src[j]! >= '0' && src[j]! <= '9') j++;
        const n = Number(src.slice(i, j));
        if (!Number.isSafeInteger(n) || n > 0x7fffffff) return bad('index too large');
        steps.push({ desc, name: null, index: n });
        i = j;
      } else if (c === "'" || c === '"') {
        let name = '';
        let j = i + 1;
        for (; j < src.length && src[j] !== c; j++) {
          if (src[j] === '\\' && j + 1 < src.length) j++;
          name += src[j];
        }
        if (j >= src.length) return bad('unterminated quoted name');
        steps.push({ desc, name, index: -1 });
        i = j + 1;
      } else return bad("expected *, an index or a quoted name after '['");
      if (src[i] !== ']') return bad("expected ']'");
      i++;
    } else if (src[i] === '*') {
      i++;
      steps.push({ desc, name: null, index: -1 });
    } else {
      let j = i;
      while (j < src.length && !IDENT_STOP.has(src[j]!)) j++;
      if (j === i) return bad('expected a member name, * or [');
      steps.push({ desc, name: src.slice(i, j), index: -1 });
      i = j;
    }
    if (steps.length > MAX_PATH_STEPS) return `JSON path ${JSON.stringify(src)} has more than ${MAX_PATH_STEPS} steps`;
  }
  return { source: src, steps };
}

/** undefined when src is a valid JSON path, else the error (for the config loader). */
export function jsonPathError(src: string): string | undefined {
  const p = parseJsonPath(src);
  return typeof p === 'string' ? p : undefined;
}
