// Validators for numbers: payment cards, US SSNs and phone numbers.
// Each matcher is called at a candidate position with the value's bounds
// [lo, hi) and returns the end of the match (exclusive) or -1; matchers whose
// match may begin before the candidate position store the start in M.start.
import {
  at,
  CONT_DASH,
  CONT_DOT,
  CT,
  ALNUM,
  DASH,
  DOT,
  isDigit,
  LPAREN,
  numberContinues,
  RPAREN,
  SP,
} from './bytes.js';

/** Start of the last successful match of matchNanp / matchE164. */
export const M = { start: 0 };

const MAX_CARD = 19;
const DG = new Uint8Array(MAX_CARD + 1); // digit values of the candidate
const GEND = new Int32Array(MAX_CARD + 1); // end offset of each digit group
const GCUM = new Int32Array(MAX_CARD + 1); // digits up to and including each group

/**
 * Issuer prefixes (IIN) and lengths accepted as payment cards:
 * Visa 4 (13, 16, 19); Mastercard 51–55 and 2221–2720 (16); Amex 34, 37 (15);
 * Diners 300–305, 3095, 36, 38, 39 (14–19); JCB 3528–3589 (16–19);
 * Maestro 50, 56–59 (13–19); and 60–69 (13–19), which covers Discover
 * (6011, 644–649, 65), UnionPay (62) and Maestro (6x).
 * Not accepted: prefixes 0, 1 (UATP), 7, 8, 9 and other 2x/3x ranges.
 */
export function iinOk(d: Uint8Array, n: number): boolean {
  const d2 = d[0]! * 10 + d[1]!;
  const d3 = d2 * 10 + d[2]!;
  const d4 = d3 * 10 + d[3]!;
  switch (d[0]) {
    case 4:
      return n === 13 || n === 16 || n === 19;
    case 5:
      return d2 >= 51 && d2 <= 55 ? n === 16 : true;
    case 2:
      return d4 >= 2221 && d4 <= 2720 && n === 16;
    case 3:
      if (d2 === 34 || d2 === 37) return n === 15;
      if (d4 >= 3528 && d4 <= 3589) return n >= 16;
      if (d2 === 36 || d2 === 38 || d2 === 39 || (d3 >= 300 && d3 <= 305) || d4 === 3095) return n >= 14;
      return false;
    case 6:
      return true;
    default:
      return false;
  }
}

export function luhnOk(d: Uint8Array, n: number): boolean {
  let sum = 0;
  for (let i = n - 1, dbl = false; i >= 0; i--, dbl = !dbl) {
    let v = d[i]!;
    if (dbl) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
  }
  return sum % 10 === 0;
}

/**
 * A card number starting at digit p: digit groups joined by one consistent
 * separator (single space or single dash) or none, every group >= 3 digits.
 * The card is the longest run of whole groups from p with 13–19 digits that
 * passes the IIN table and Luhn. An unseparated run of more than 19 digits is
 * never a card. The number must not touch a letter or digit, nor continue with
 * '.'+digit on either side (decimals, versions).
 */
export function matchCard(buf: Buffer, p: number, lo: number, hi: number): number {
  if (numberContinues(buf, p - 1, -1, lo, hi, CONT_DOT)) return -1;
  let n = 0;
  let g = 0;
  let j = p;
  let sep = -1;
  let final = true; // the last recorded group ends the number
  for (;;) {
    const s = j;
    let over = false;
    while (j < hi && isDigit(buf[j]!)) {
      if (n === MAX_CARD + 1) {
        over = true;
        break;
      }
      DG[n++] = buf[j]! - 48;
      j++;
    }
    // A run of more than 19 digits is not a card; a short or overlong later
    // group ends the card at the previous group.
    if (over || j - s < 3) {
      if (g === 0) return -1;
      final = false;
      break;
    }
    GEND[g] = j;
    GCUM[g++] = n;
    const c = j < hi ? buf[j]! : -1;
    if ((c === SP || c === DASH) && (sep < 0 || sep === c) && j + 1 < hi && isDigit(buf[j + 1]!)) {
      sep = c;
      j++;
      continue;
    }
    break;
  }
  for (let k = g - 1; k >= 0; k--) {
    const cnt = GCUM[k]!;
    if (cnt < 13) break;
    if (cnt > MAX_CARD) continue;
    if (k === g - 1 && final && numberContinues(buf, GEND[k]!, 1, lo, hi, CONT_DOT)) continue;
    if (iinOk(DG, cnt) && luhnOk(DG, cnt)) return GEND[k]!;
  }
  return -1;
}

function digits(buf: Buffer, p: number, n: number, hi: number): boolean {
  if (p + n > hi) return false;
  for (let i = p; i < p + n; i++) if (!isDigit(buf[i]!)) return false;
  return true;
}

function num(buf: Buffer, p: number, n: number): number {
  let v = 0;
  for (let i = p; i < p + n; i++) v = v * 10 + buf[i]! - 48;
  return v;
}

/**
 * US SSN at p: AAA-GG-SSSS with dashes only (bare 9-digit numbers and spaced
 * forms are too ambiguous). Area not 000, 666 or 900–999; group not 00;
 * serial not 0000. Not touching letters/digits, nor '.'/'-' + digit.
 */
export function matchSsn(buf: Buffer, p: number, lo: number, hi: number): number {
  if (p + 11 > hi || buf[p + 3] !== DASH || buf[p + 6] !== DASH) return -1;
  if (!digits(buf, p, 3, hi) || !digits(buf, p + 4, 2, hi) || !digits(buf, p + 7, 4, hi)) return -1;
  const area = num(buf, p, 3);
  if (area === 0 || area === 666 || area >= 900) return -1;
  if (num(buf, p + 4, 2) === 0 || num(buf, p + 7, 4) === 0) return -1;
  const cont = CONT_DOT | CONT_DASH;
  if (numberContinues(buf, p - 1, -1, lo, hi, cont) || numberContinues(buf, p + 11, 1, lo, hi, cont)) return -1;
  return p + 11;
}

/**
 * North American number with digit group g as the area code (first digit 2–9):
 *   (AAA) EEE-NNNN, (AAA)EEE-NNNN, (AAA) EEE.NNNN, (AAA) EEE NNNN,
 *   AAA-EEE-NNNN, AAA.EEE.NNNN, optionally prefixed 1- / 1. (same separator).
 * Unbracketed forms need the same separator twice; bare 10 digits and
 * space-only forms are not phones here (use E.164 with '+').
 */
export function matchNanp(buf: Buffer, g: number, lo: number, hi: number): number {
  const cont = CONT_DOT | CONT_DASH;
  let start = g;
  let end: number;
  if (at(buf, g - 1, lo, hi) === LPAREN) {
    if (!digits(buf, g, 3, hi) || buf[g] === 0x30 || buf[g] === 0x31 || at(buf, g + 3, lo, hi) !== RPAREN) return -1;
    let j = g + 4;
    if (at(buf, j, lo, hi) === SP) j++;
    const s = at(buf, j + 3, lo, hi);
    if (!digits(buf, j, 3, hi) || !(s === DASH || s === DOT || s === SP) || !digits(buf, j + 4, 4, hi)) return -1;
    const before = at(buf, g - 2, lo, hi);
    if (before >= 0 && (CT[before]! & ALNUM) !== 0) return -1;
    start = g - 1;
    end = j + 8;
  } else {
    let j = g;
    let s = at(buf, g + 1, lo, hi);
    if (buf[g] === 0x31 && (s === DASH || s === DOT) && isDigit(at(buf, g + 2, lo, hi))) j = g + 2;
    else s = at(buf, g + 3, lo, hi);
    if (!(s === DASH || s === DOT)) return -1;
    if (!digits(buf, j, 3, hi) || buf[j] === 0x30 || buf[j] === 0x31) return -1;
    if (at(buf, j + 3, lo, hi) !== s || !digits(buf, j + 4, 3, hi) || at(buf, j + 7, lo, hi) !== s) return -1;
    if (!digits(buf, j + 8, 4, hi)) return -1;
    if (numberContinues(buf, g - 1, -1, lo, hi, cont)) return -1;
    end = j + 12;
  }
  if (numberContinues(buf, end, 1, lo, hi, cont)) return -1;
  M.start = start;
  return end;
}

/**
 * E.164 at the '+' at p: '+', first digit 1–9, then digit groups joined by a
 * single space, dash or dot, or bracketed groups like "(0)" / "(555)";
 * 8–15 digits in all. '+' must not follow a letter or digit; the number must
 * not continue with letters/digits; a date after '+' ("+2024-01-15") is not a phone.
 */
export function matchE164(buf: Buffer, p: number, lo: number, hi: number): number {
  const before = at(buf, p - 1, lo, hi);
  if (before >= 0 && (CT[before]! & ALNUM) !== 0) return -1;
  let j = p + 1;
  const first = at(buf, j, lo, hi);
  if (first < 0x31 || first > 0x39) return -1;
  if (digits(buf, j, 4, hi) && at(buf, j + 4, lo, hi) === DASH && digits(buf, j + 5, 2, hi) && at(buf, j + 7, lo, hi) === DASH) {
    return -1; // +YYYY-MM-…
  }
  let n = 0;
  let end = j;
  for (;;) {
    while (j < hi && isDigit(buf[j]!)) {
      j++;
      n++;
    }
    end = j;
    if (n > 15) return -1;
    let c = at(buf, j, lo, hi);
    if (c === SP || c === DASH || c === DOT) {
      const d = at(buf, j + 1, lo, hi);
      if (isDigit(d)) {
        j++;
        continue;
      }
      if (d !== LPAREN) break;
      j++;
      c = d;
    }
    if (c !== LPAREN) break;
    let k = j + 1;
    while (k < hi && isDigit(buf[k]!)) k++;
    if (k === j + 1 || at(buf, k, lo, hi) !== RPAREN) break;
    n += k - j - 1;
    end = k + 1;
    j = k + 1;
    const s = at(buf, j, lo, hi);
    if ((s === SP || s === DASH || s === DOT) && isDigit(at(buf, j + 1, lo, hi))) j++;
    else if (!isDigit(s)) break;
  }
  if (n < 8 || n > 15) return -1;
  const after = at(buf, end, lo, hi);
  if (after >= 0 && (CT[after]! & ALNUM) !== 0) return -1;
  M.start = p;
  return end;
}
