// Stream masking needs to know, for a custom (RE2) detector, where a match may
// still be under way at the end of the bytes seen so far. RE2 has no partial
// matching, so the pattern is rewritten into one that matches every prefix of
// every match ("prefix closure"): `ORD-[0-9]{8}` becomes, in effect,
// `(?:O(?:R(?:D(?:-(?:[0-9]{0,7}[0-9]?)?)?)?)?)?`. Searching `(?:closure)$` in
// the held bytes gives the leftmost offset from which the rest could still turn
// into a match.
//
// The closure is built on a small parse of the pattern (the syntax node-re2
// accepts: RE2's plus JavaScript's escapes and named groups). Zero-width
// assertions (^ $ \b \B \A \z) are dropped, which only widens the closure: more
// is held, never less. A pattern this parser does not follow gives null (the
// caller then holds conservatively).

type Node =
  | { t: 'atom'; src: string }
  | { t: 'assert' }
  | { t: 'flags'; src: string }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; alts: Node[] }
  | { t: 'group'; open: string; body: Node }
  | { t: 'rep'; node: Node; min: number; max: number };

class Unsupported extends Error {}

/** Largest closure source accepted (nested repetitions grow it). */
const MAX_SOURCE = 32 * 1024;

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  parse(): Node {
    const n = this.alt();
    if (this.i < this.s.length) throw new Unsupported(`unexpected ${this.s[this.i]}`);
    return n;
  }

  private alt(): Node {
    // A flag group like (?i) holds to the end of its group, later alternatives included.
    const flags: Node[] = [];
    const alts = [this.cat(flags)];
    while (this.s[this.i] === '|') {
      this.i++;
      alts.push(this.cat(flags));
    }
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts };
  }

  private cat(flags: Node[]): Node {
    const items: Node[] = [...flags];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      for (const a of this.atom()) {
        items.push(a);
        if (a.t === 'flags') flags.push(a);
      }
      // Quantifiers apply to the last item.
      for (;;) {
        const q = this.quant();
        if (!q) break;
        const last = items.pop();
        if (!last) throw new Unsupported('quantifier without operand');
        items.push({ t: 'rep', node: last, min: q[0], max: q[1] });
      }
    }
    return items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  private quant(): [number, number] | null {
    const c = this.s[this.i];
    let q: [number, number] | null = null;
    if (c === '*') q = [0, Infinity];
    else if (c === '+') q = [1, Infinity];
    else if (c === '?') q = [0, 1];
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      if (!m) return null; // a literal '{'
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      this.i += m[0].length - 1;
      q = [min, max];
    }
    if (!q) return null;
    this.i++;
    if (this.s[this.i] === '?') this.i++; // lazy: the same strings
    return q;
  }

  /** One atom (or several, for \Q…\E). */
  private atom(): Node[] {
    const s = this.s;
    const start = this.i;
    const c = s[this.i]!;
    if (c === '(') return [this.group()];
    if (c === '[') {
      this.klass();
      return [{ t: 'atom', src: s.slice(start, this.i) }];
    }
    if (c === '^' || c === '$') {
      this.i++;
      return [{ t: 'assert' }];
    }
    if (c === '\\') return this.escape();
    if (c === '*' || c === '+' || c === '?') throw new Unsupported('quantifier without operand');
    this.i += this.charLen(this.i);
    return [{ t: 'atom', src: s.slice(start, this.i) }];
  }

  private charLen(i: number): number {
    const code = this.s.charCodeAt(i);
    return code >= 0xd800 && code <= 0xdbff && i + 1 < this.s.length ? 2 : 1;
  }

  private group(): Node {
    const s = this.s;
    this.i++; // (
    let open = '(?:';
    if (s[this.i] === '?') {
      const rest = s.slice(this.i);
      const named = /^\?P?<[A-Za-z_][A-Za-z0-9_]*>/.exec(rest);
      const flags = /^\?([imsU]*(?:-[imsU]*)?)([:)])/.exec(rest);
      if (named) this.i += named[0].length;
      else if (flags && flags[1] !== '') {
        this.i += flags[0].length;
        if (flags[2] === ')') return { t: 'flags', src: `(?${flags[1]})` };
        open = `(?${flags[1]}:`;
      } else if (rest.startsWith('?:')) this.i += 2;
      else throw new Unsupported(`group (${rest.slice(0, 3)}`);
    }
    const body = this.alt();
    if (s[this.i] !== ')') throw new Unsupported('unclosed group');
    this.i++;
    return { t: 'group', open, body };
  }

  private klass(): void {
    const s = this.s;
    this.i++; // [
    if (s[this.i] === '^') this.i++;
    if (s[this.i] === ']') this.i++; // a literal ']' first
    while (this.i < s.length && s[this.i] !== ']') {
      if (s[this.i] === '\\') this.i += 1 + this.charLen(this.i + 1);
      else if (s[this.i] === '[' && s[this.i + 1] === ':') {
        const e = s.indexOf(':]', this.i + 2);
        if (e < 0) throw new Unsupported('unclosed [:class:]');
        this.i = e + 2;
      } else this.i += this.charLen(this.i);
    }
    if (s[this.i] !== ']') throw new Unsupported('unclosed class');
    this.i++;
  }

  private escape(): Node[] {
    const s = this.s;
    const start = this.i;
    const c = s[this.i + 1];
    if (c === undefined) throw new Unsupported('trailing backslash');
    if ('bBAzZG'.includes(c)) {
      this.i += 2;
      return [{ t: 'assert' }];
    }
    if (c === 'Q') {
      const e = s.indexOf('\\E', this.i + 2);
      const lit = s.slice(this.i + 2, e < 0 ? s.length : e);
      this.i = e < 0 ? s.length : e + 2;
      return [...lit].map((ch) => ({ t: 'atom', src: `\\x{${ch.codePointAt(0)!.toString(16)}}` }));
    }
    this.i += 2;
    if ((c === 'p' || c === 'P') && s[this.i] === '{') this.until('}');
    else if (c === 'p' || c === 'P') this.i += 1;
    else if ((c === 'x' || c === 'u') && s[this.i] === '{') this.until('}');
    else if (c === 'x') this.i += 2;
    else if (c === 'u') this.i += 4;
    else if (c === 'c') this.i += 1;
    else if (c >= '0' && c <= '7') while (this.i < start + 4 && s[this.i]! >= '0' && s[this.i]! <= '7') this.i++;
    else if (c === 'k') throw new Unsupported('backreference');
    else this.i = start + 1 + this.charLen(start + 1);
    if (this.i > s.length) throw new Unsupported('truncated escape');
    return [{ t: 'atom', src: s.slice(start, this.i) }];
  }

  private until(ch: string): void {
    const e = this.s.indexOf(ch, this.i);
    if (e < 0) throw new Unsupported(`missing ${ch}`);
    this.i = e + 1;
  }
}

/** The pattern itself (assertions dropped, captures made non-capturing). */
function full(n: Node): string {
  switch (n.t) {
    case 'atom':
    case 'flags':
      return n.src;
    case 'assert':
      return '';
    case 'cat':
      return n.items.map(full).join('');
    case 'alt':
      return `(?:${n.alts.map(full).join('|')})`;
    case 'group':
      return `${n.open}${full(n.body)})`;
    case 'rep': {
      const q = n.max === Infinity ? (n.min === 0 ? '*' : n.min === 1 ? '+' : `{${n.min},}`) : n.min === n.max ? `{${n.min}}` : `{${n.min},${n.max}}`;
      return `(?:${full(n.node)})${q}`;
    }
  }
}

/** Every prefix of every string the node matches (the empty string included). */
function prefix(n: Node): string {
  switch (n.t) {
    case 'atom':
      return `(?:${n.src})?`;
    case 'assert':
      return '';
    case 'flags':
      return n.src;
    case 'cat': {
      // p(x1 x2 … xn) = p(x1) | x1 p(x2 … xn); zero-width items just pass through.
      let acc = '';
      for (let k = n.items.length - 1; k >= 0; k--) {
        const x = n.items[k]!;
        if (x.t === 'assert') continue;
        if (x.t === 'flags') acc = `${x.src}${acc}`;
        else acc = acc === '' ? prefix(x) : `(?:${prefix(x)}|${full(x)}${acc})`;
      }
      return acc;
    }
    case 'alt':
      return `(?:${n.alts.map(prefix).join('|')})`;
    case 'group':
      return `${n.open}${prefix(n.body)})`;
    case 'rep': {
      if (n.max === 0) return '';
      const inner = full(n.node);
      const head = n.max === Infinity ? `(?:${inner})*` : n.max === 1 ? '' : `(?:${inner}){0,${n.max - 1}}`;
      return `${head}${prefix(n.node)}`;
    }
  }
}

/**
 * Source of a regex matching, at the end of the input, the longest suffix that
 * is a prefix of some match of `pattern` (or the empty string): its match index
 * is where a match may still be under way. null when the pattern is not understood.
 */
export function prefixClosure(pattern: string): string | null {
  try {
    const src = `(?:${prefix(new Parser(pattern).parse())})$`;
    return src.length <= MAX_SOURCE ? src : null;
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
}
