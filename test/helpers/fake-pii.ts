// Deterministic fake customers with the PII the HTTP masking tests look for:
// emails, Luhn-valid card numbers, phones, US SSNs, a nested address, and now
// and then a card or email inside free text. Shared by the nginx static files
// and the json-server API, so one set of assertions fits both upstreams.

export interface FakeCustomer {
  id: number;
  name: string;
  email: string;
  phone: string;
  ssn: string;
  card: { number: string; expiry: string; brand: string };
  address: { street: string; city: string; zip: string; country: string };
  note: string;
}

const FIRST = ['Zoë', 'Anna', 'José', 'Mei', 'Olivier', 'Björn', 'Sarah', 'Ahmed', 'Łukasz', 'Priya', 'John', 'Ines'];
const ASCII_FIRST = ['zoe', 'anna', 'jose', 'mei', 'olivier', 'bjorn', 'sarah', 'ahmed', 'lukasz', 'priya', 'john', 'ines'];
const LAST = ['Müller', 'Smith', 'García', 'Nakamura', "O'Brien", 'Nowak', 'Dubois', 'Rossi', 'Kowalski', 'Øster', 'Khan', 'Silva', 'Ivanova'];
const ASCII_LAST = ['mueller', 'smith', 'garcia', 'nakamura', 'obrien', 'nowak', 'dubois', 'rossi', 'kowalski', 'oster', 'khan', 'silva', 'ivanova'];
const CITIES = ['Springfield', 'Lyon', 'Kraków', 'Osaka', 'Porto', 'Malmö', 'Austin'];
const NOTES = [
  'Asked for a callback next week about the annual plan.',
  'Delivered on time, ticket closed by support.',
  'Order shipped 2024-01-15 via express, app version 1.2.3.',
  'Prefers email contact; VIP since 2019.',
];

/** Appends the Luhn check digit to `digits`. */
export function luhnComplete(digits: string): string {
  let sum = 0;
  for (let i = digits.length - 1, dbl = true; i >= 0; i--, dbl = !dbl) {
    let v = digits.charCodeAt(i) - 48;
    if (dbl) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
    sum += v;
  }
  return digits + String((10 - (sum % 10)) % 10);
}

/** True when the digits of `s` pass the Luhn check. */
export function luhnValid(s: string): boolean {
  const d = s.replace(/\D/g, '');
  return d.length >= 12 && luhnComplete(d.slice(0, -1)) === d;
}

/** A 16-digit Visa-style number that passes Luhn; customer 1 gets the classic 4111 1111 1111 1111. */
export function fakeCard(n: number): string {
  if (n === 1) return '4111111111111111';
  return luhnComplete('4' + String(n * 7919 + 1_000_000).padStart(14, '0').slice(-14));
}

export function fakeCustomer(i: number): FakeCustomer {
  const f = i % FIRST.length;
  const l = (i * 7) % LAST.length;
  const h = (i * 2654435761) >>> 0;
  const email = `${ASCII_FIRST[f]}.${ASCII_LAST[l]}${i}@example.com`;
  const card = fakeCard(i);
  return {
    id: i,
    name: `${FIRST[f]} ${LAST[l]}`,
    email,
    phone: `+1-555-${String(100 + (h % 900)).padStart(3, '0')}-${String(1000 + (h % 9000)).padStart(4, '0')}`,
    ssn: `${101 + (h % 560)}-${String(10 + (h % 89)).padStart(2, '0')}-${String(1000 + (h % 8999)).padStart(4, '0')}`,
    card: { number: card, expiry: `${String(1 + (h % 12)).padStart(2, '0')}/${28 + (h % 5)}`, brand: 'visa' },
    address: { street: `${1 + (h % 999)} ${LAST[(l + 3) % LAST.length]} Street`, city: CITIES[h % CITIES.length]!, zip: String(10000 + (h % 89999)), country: 'US' },
    // Every fifth customer carries PII in free text, where only detectors can find it.
    note: i % 5 === 0 ? `Called from work, card ${fakeCard(i + 1000)} on file; reach ${ASCII_FIRST[f]}${i}@example.org` : NOTES[h % NOTES.length]!,
  };
}

export function fakeCustomers(n: number, from = 1): FakeCustomer[] {
  return Array.from({ length: n }, (_, k) => fakeCustomer(from + k));
}

/** `{"customers":[…]}` with as many customers as fit in `bytes` of UTF-8 (at least one). */
export function customersJson(bytes: number): string {
  const parts: string[] = [];
  let size = '{"customers":[]}'.length;
  for (let i = 1; ; i++) {
    const s = JSON.stringify(fakeCustomer(i));
    const next = size + Buffer.byteLength(s) + (parts.length ? 1 : 0);
    if (next > bytes && parts.length) break;
    size = next;
    parts.push(s);
  }
  return `{"customers":[${parts.join(',')}]}`;
}
