// The scanner's prefilter automaton (see scanner.ts): a byte table over a few
// dozen states, and the same automaton over pairs of byte classes.
import { DASH, PLUS } from './bytes.js';
import type { DetectorName } from './types.js';

// Table values: a state (< NSTATES); REGION; SPECIAL | state at a trigger
// byte (state = where to go on when the validator finds nothing).
export const NSTATES = 64;
export const REGION = 64;
export const SPECIAL = 128;
/** Digits in runs of >= 3, after a separator, that make a numeric region. */
const MIN_BIG = 7;
/** A contiguous run of this many digits makes a numeric region. */
const MIN_RUN = 13;

/**
 * Builds the prefilter automaton (triggers: see scanner.ts). States:
 *   S0:r      no separator since the last reset, current digit run r (0..12);
 *             a run of MIN_RUN (13) digits is a region
 *   S1:nb:run a separator came after a digit run; nb = digits in runs of >= 3
 *             (a region at 7), run = current run length (0..3)
 *   D:nb, D0  as S1 / S0:0, the last byte was '-' (a second '-' triggers)
 *   ARMED, ARMED_D  nb >= 7 and the last byte a separator: a digit is a region
 *   PLUS      after '+' (a digit 1-9 triggers E.164)
 *   C1, C2    after one / two or more capitals (a digit after C2 triggers IBAN)
 */
export function buildAutomaton(on: Record<DetectorName, boolean>, t: Uint8Array): void {
  const regions = on.credit_card || on.us_ssn || on.phone;
  const numeric = regions || on.iban;
  const ids = new Map<string, number>();
  const queue: string[] = [];
  const id = (k: string): number => {
    let v = ids.get(k);
    if (v === undefined) {
      ids.set(k, (v = ids.size));
      queue.push(k);
    }
    return v;
  };
  const big = (r: number): number => (r >= 3 ? r : 0); // digits of a run counted in nb
  id('S0:0');
  while (queue.length > 0) {
    const k = queue.shift()!;
    const [kind, a = 0, b = 0] = k.split(':').map((x, i) => (i === 0 ? x : Number(x))) as [string, number?, number?];
    const st = ids.get(k)!;
    if (st >= NSTATES) throw new Error('masking: automaton too large');
    for (let c = 0; c < 256; c++) {
      let next: string | null = 'S0:0'; // null = region
      let special = false;
      if (c >= 0x30 && c <= 0x39 && numeric) {
        if (kind === 'PLUS') special = on.phone && c !== 0x30;
        if (kind === 'C2') special = on.iban;
        if (!regions) next = 'S0:0';
        else if (kind === 'S0') next = a + 1 >= MIN_RUN ? null : `S0:${a + 1}`;
        else if (kind === 'S1' || kind === 'D') {
          const run = (kind === 'S1' ? b : 0) + 1;
          const nb = a + (run === 3 ? 3 : run > 3 ? 1 : 0);
          next = nb >= MIN_BIG ? null : `S1:${nb}:${Math.min(run, 3)}`;
        } else if (kind === 'ARMED' || kind === 'ARMED_D') next = null;
        else next = 'S0:1';
      } else if (c === DASH) {
        special = on.private_key && (kind === 'D' || kind === 'D0' || kind === 'ARMED_D');
        if (!regions) next = 'D0';
        else if (kind === 'S0') next = a === 0 ? 'D0' : big(a) >= MIN_BIG ? 'ARMED_D' : `D:${big(a)}`;
        else if (kind === 'S1' || kind === 'D') next = `D:${a}`;
        else if (kind === 'ARMED' || kind === 'ARMED_D') next = 'ARMED_D';
        else next = 'D0';
      } else if (regions && (c === 0x20 || c === 0x2e || c === 0x28 || c === 0x29)) {
        if (kind === 'S0') next = a === 0 ? 'S0:0' : big(a) >= MIN_BIG ? 'ARMED' : `S1:${big(a)}:0`;
        else if (kind === 'S1' || kind === 'D') next = `S1:${a}:0`;
        else if (kind === 'ARMED' || kind === 'ARMED_D') next = 'ARMED';
      } else if (c >= 0x41 && c <= 0x5a) {
        if (on.iban) next = kind === 'C1' || kind === 'C2' ? 'C2' : 'C1';
        special = (c === 0x41 && on.aws_access_key) || (c === 0x4a && on.jwt);
      } else if (c === PLUS && on.phone) {
        next = 'PLUS';
      } else {
        special = c === 0x40 && on.email;
      }
      t[(st << 8) | c] = next === null ? REGION : special ? SPECIAL | id(next) : id(next);
    }
  }
}

/** Pair automaton: t2[st, (c1, c2)] = t[t[st, c1], c2], or 255 when either step triggers. */
export function buildPairs(t: Uint8Array, t2: Uint8Array, hi: Uint8Array, lo: Uint8Array): void {
  const classes = new Map<string, number>();
  const rep: number[] = []; // a byte of each class
  for (let c = 0; c < 256; c++) {
    const col: number[] = [];
    for (let st = 0; st < NSTATES; st++) col.push(t[(st << 8) | c]!);
    const k = col.join(',');
    let cls = classes.get(k);
    if (cls === undefined) {
      classes.set(k, (cls = classes.size));
      rep.push(c);
    }
    hi[c] = cls << 4;
    lo[c] = cls;
  }
  if (classes.size > 16) throw new Error('masking: too many byte classes');
  t2.fill(255);
  for (let st = 0; st < NSTATES; st++) {
    for (let a = 0; a < rep.length; a++) {
      const s1 = t[(st << 8) | rep[a]!]!;
      if (s1 >= NSTATES) continue;
      for (let b = 0; b < rep.length; b++) {
        const s2 = t[(s1 << 8) | rep[b]!]!;
        if (s2 < NSTATES) t2[(st << 8) | (a << 4) | b] = s2;
      }
    }
  }
}
