// IBAN validator: country code, check digits, BBAN, mod-97 and length table.
import { at, ALNUM, CT, DIGIT, SP, UPPER } from './bytes.js';

/**
 * IBAN lengths per country (SWIFT IBAN registry): all SEPA countries plus GB
 * and the other long-standing registry members. Countries not listed are
 * accepted with 15–34 characters when the checksum passes.
 */
const LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29,
  BY: 28, CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DK: 18, DO: 28, EE: 20, EG: 29,
  ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28,
  HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20,
  LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24, ME: 22, MK: 19,
  MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29,
  RO: 24, RS: 22, SA: 24, SC: 31, SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28,
  TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20,
};

/** Expected length by country code as a 16-bit key (c1 << 8 | c2); 0 = unknown. */
const LEN = new Uint8Array(65536);
for (const [cc, n] of Object.entries(LENGTHS)) LEN[(cc.charCodeAt(0) << 8) | cc.charCodeAt(1)] = n;

const MAX_BBAN = 30;
const V = new Uint8Array(MAX_BBAN); // BBAN character values (0–35)
const ENDS = new Int32Array(MAX_BBAN + 1); // byte end after k BBAN characters

function isUD(c: number): boolean {
  return c >= 0 && (CT[c]! & (UPPER | DIGIT)) !== 0;
}

function val(c: number): number {
  return c <= 0x39 ? c - 0x30 : c - 0x41 + 10;
}

function mod97(country1: number, country2: number, check: number, n: number): number {
  let r = 0;
  const add = (v: number): void => {
    r = v < 10 ? (r * 10 + v) % 97 : (r * 100 + v) % 97;
  };
  for (let i = 0; i < n; i++) add(V[i]!);
  add(val(country1));
  add(val(country2));
  add(Math.floor(check / 10));
  add(check % 10);
  return r;
}

/**
 * IBAN starting at p: 2 uppercase letters, 2 check digits, then the BBAN of
 * uppercase letters and digits, either compact ("DE89370400440532013000") or
 * in groups of 4 separated by single spaces ("DE89 3704 0044 0532 0130 00").
 * Valid when mod-97 == 1 and the length matches the country table (unknown
 * countries: 15–34). Uppercase only; not touching a letter or digit.
 */
export function matchIban(buf: Buffer, p: number, lo: number, hi: number): number {
  const before = at(buf, p - 1, lo, hi);
  if (before >= 0 && (CT[before]! & ALNUM) !== 0) return -1;
  if (p + 4 > hi) return -1;
  const c1 = buf[p]!;
  const c2 = buf[p + 1]!;
  const d1 = buf[p + 2]!;
  const d2 = buf[p + 3]!;
  if ((CT[c1]! & UPPER) === 0 || (CT[c2]! & UPPER) === 0 || (CT[d1]! & DIGIT) === 0 || (CT[d2]! & DIGIT) === 0) return -1;
  const want = LEN[(c1 << 8) | c2]!;
  const maxB = want > 0 ? want - 4 : MAX_BBAN;
  const spaced = at(buf, p + 4, lo, hi) === SP && isUD(at(buf, p + 5, lo, hi));
  let j = spaced ? p + 5 : p + 4;
  let n = 0;
  let inGroup = 0;
  while (n < maxB) {
    const c = at(buf, j, lo, hi);
    if (isUD(c)) {
      V[n++] = val(c);
      j++;
      ENDS[n] = j;
      inGroup++;
      continue;
    }
    if (spaced && c === SP && inGroup === 4 && isUD(at(buf, j + 1, lo, hi))) {
      j++;
      inGroup = 0;
      continue;
    }
    break;
  }
  const check = (d1 - 0x30) * 10 + (d2 - 0x30);
  // Known country: exactly its length. Unknown: the longest of 11..30 BBAN
  // characters (at a group boundary when spaced) that passes the checksum.
  const minB = want > 0 ? want - 4 : 11;
  for (let k = n; k >= minB; k--) {
    if (spaced && k !== n && k % 4 !== 0) continue;
    const after = at(buf, ENDS[k]!, lo, hi);
    if (after >= 0 && (CT[after]! & ALNUM) !== 0) continue;
    if (mod97(c1, c2, check, k) === 1) return ENDS[k]!;
  }
  return -1;
}
