// Masking core: content detectors (positives in several formats, decoys),
// overlap resolution, byte offsets around multibyte text, the prefilter's
// word/pair paths at every alignment, strategies, custom RE2 detectors.
import t, { type Test } from 'tap';
import { createHmac } from 'node:crypto';
import { Scanner, resolveOverlaps } from '../src/policy/masking/scanner.js';
import { findingRoom, maskFindingInto, maskFindings, maskValue, redactMarker } from '../src/policy/masking/strategies.js';
import { DETECTOR_NAMES, type DetectorName, type Finding, type Strategy } from '../src/policy/masking/types.js';
import { M, matchCard, matchE164, matchNanp, matchSsn } from '../src/policy/masking/numeric.js';
import { matchIban } from '../src/policy/masking/iban.js';
import { matchAwsKey, matchEmail, matchPrivateKey } from '../src/policy/masking/text.js';

const all = new Scanner(DETECTOR_NAMES, []);

/** "detector:matched text" for every finding in s. */
function found(s: string, scanner: Scanner = all): string[] {
  const b = Buffer.from(s);
  return scanner.scan(b, 0, b.length).map((f) => `${f.detector}:${b.toString('utf8', f.start, f.end)}`);
}

/** Each value is exactly one finding of `detector`, covering all of it. */
function expectOnly(tt: Test, detector: string, values: string[]): void {
  for (const v of values) tt.same(found(v), [`${detector}:${v}`], v);
}

const ctx = { hmacKey: Buffer.alloc(32, 7) };

t.test('credit_card: formats, brands, validation', async (t) => {
  expectOnly(t, 'credit_card', [
    '4111 1111 1111 1111',
    '4111-1111-1111-1111',
    '4111111111111111',
    '4222222222222', // Visa 13
    '5555555555554444', // Mastercard
    '2223003122003222', // Mastercard 2-series
    '378282246310005', // Amex
    '3782 822463 10005', // Amex 4-6-5
    '6011111111111117', // Discover
    '3530111333300000', // JCB
    '30569309025904', // Diners 14
    '6200000000000005', // UnionPay
    '6759649826438453', // Maestro
    '6799990100000000019', // 19 digits
  ]);
  t.same(found('pay with 4111111111111111 today'), ['credit_card:4111111111111111']);
  t.same(found('cards 4111111111111111,5500000000000004.'), [
    'credit_card:4111111111111111',
    'credit_card:5500000000000004',
  ]);
  t.same(found('card 4111 1111 1111 1111 2024'), ['credit_card:4111 1111 1111 1111'], 'group-aligned inside a longer spaced run');
  for (const decoy of [
    '4111111111111112', // Luhn fails
    '1234567812345678', // order number: no IIN, no Luhn
    '9111111111111113', // Luhn passes, no issuer starts with 9
    '5105105105105', // Mastercard must have 16 digits
    '41111111111111111234', // 20 digits containing a valid card
    '0.4111111111111111', // decimal
    '4111111111111111.5', // decimal
    'a4111111111111111f', // inside a hex string
    '41-11-11-11-11-11-11-11', // groups shorter than 3
    'order 1234-5678-9012-3456',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('email', async (t) => {
  expectOnly(t, 'email', ['john.doe@example.com', 'JOHN@EXAMPLE.CO.UK', 'a+tag@sub.example.org', 'x_y-z%1@mail-01.example.io']);
  t.same(found('contact: <jane_doe99@mail.example.io>, thanks'), ['email:jane_doe99@mail.example.io']);
  t.same(found('{"email":"ann@example.com"}'), ['email:ann@example.com']);
  t.same(found("WHERE email = 'bob@example.net'"), ['email:bob@example.net']);
  t.same(found('end of sentence: bob@example.net.'), ['email:bob@example.net']);
  for (const decoy of [
    'user@localhost',
    'a @ b',
    'x@y.z',
    'foo@bar',
    '@example.com',
    'user@-example.com',
    'user@example-.com',
    'user@example.c0m',
    'user.@example.com',
    'price @ 10.50',
    'follow @sluice on social',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('us_ssn', async (t) => {
  expectOnly(t, 'us_ssn', ['123-45-6789', '078-05-1120', '899-99-9999']);
  t.same(found('SSN: 078-05-1120.'), ['us_ssn:078-05-1120']);
  for (const decoy of [
    '000-12-3456',
    '666-12-3456',
    '900-12-3456',
    '123-00-4567',
    '123-45-0000',
    '123456789', // bare 9 digits: too ambiguous
    '123 45 6789', // spaces: not accepted
    '1123-45-6789',
    '123-45-67890',
    '1-123-45-6789',
    '123-45-6789.5',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('phone', async (t) => {
  expectOnly(t, 'phone', [
    '+1 (555) 123-4567',
    '+44 20 7946 0958',
    '+44 (0)20 7946 0958',
    '+49-30-1234567',
    '+33 1 23 45 67 89',
    '+14155552671',
    '(555) 123-4567',
    '(555)123-4567',
    '555-123-4567',
    '555.123.4567',
    '1-800-555-1234',
  ]);
  t.same(found('call tel:555-123-4567; thanks'), ['phone:555-123-4567']);
  for (const decoy of [
    '2024-01-15',
    '2024-01-15 10:20:30',
    '2024-01-15T10:20:30.123+02:00',
    '2024-01-15 10:20:30.123456+00',
    '1.2.3',
    '10.4.12-MariaDB',
    '192.168.100.200',
    '10.0.0.1',
    '123-456-7890', // area code cannot start with 1
    '555-123-45678',
    '555-123.4567',
    '5551234567', // bare 10 digits
    '555 123 4567', // spaces only
    '+2024-01-15',
    '+00',
    '+1234567', // 7 digits
    '+1234567890123456', // 16 digits
    'x+14155552671',
    '20240115103000',
    'ISBN 978-3-16-148410-0',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('iban', async (t) => {
  expectOnly(t, 'iban', [
    'DE89 3704 0044 0532 0130 00',
    'DE89370400440532013000',
    'GB82WEST12345698765432',
    'GB82 WEST 1234 5698 7654 32',
    'NL91ABNA0417164300',
    'NL91 ABNA 0417 1643 00',
    'FR1420041010050500013M02606',
    'BE68539007547034',
    'CH9300762011623852957',
    'NO9386011117947',
    'IT60X0542811101000000123456',
    'AT611904300234573201',
    'PL61109010140000071219812874',
    'ES9121000418450200051332',
    'MT84MALT011000012345MTLCAST001S',
  ]);
  t.same(found('IBAN: DE89 3704 0044 0532 0130 00 (EUR)'), ['iban:DE89 3704 0044 0532 0130 00']);
  t.same(found('to GB82 WEST 1234 5698 7654 32 EUR'), ['iban:GB82 WEST 1234 5698 7654 32']);
  for (const decoy of [
    'DE89370400440532013001', // checksum
    'DE8937040044053201300', // DE is 22 characters
    'DE893704004405320130000',
    'de89370400440532013000', // lowercase
    'XDE89370400440532013000',
    'DE89 3704 0044 0532 0130 01',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('aws_access_key', async (t) => {
  expectOnly(t, 'aws_access_key', ['AKIAIOSFODNN7EXAMPLE', 'ASIAY34FZKBOKMUTVV7A', 'ABIA1234567890ABCDEF', 'ACCAZZZZZZZZZZZZZZZZ']);
  t.same(found('aws_access_key_id=AKIAIOSFODNN7EXAMPLE;'), ['aws_access_key:AKIAIOSFODNN7EXAMPLE']);
  for (const decoy of ['AKIAIOSFODNN7EXAMPL', 'XAKIAIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLEX', 'akiaiosfodnn7example', 'AKIA_IOSFODNN7EXAMPLE']) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('jwt', async (t) => {
  const jws =
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  const unsecured = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"1"}').toString('base64url')}.`;
  const jwe = `${Buffer.from('{"alg":"dir","enc":"A128GCM"}').toString('base64url')}..aXZpdml2aXZpdg.Y2lwaGVydGV4dA.dGFndGFndGFn`;
  expectOnly(t, 'jwt', [jws, unsecured, jwe]);
  t.same(found(`Authorization: Bearer ${jws}.`), [`jwt:${jws}`], 'sentence dot is not a segment');
  const noAlg = `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"1234567"}').toString('base64url')}.c2lnbmF0dXJl`;
  for (const decoy of ['eyJhbGciOiJIUzI1NiJ9', noAlg, 'eyJhbGciOiJIUzI1NiJ9.eyJ4Ijox', 'eyJhIjoxfQ.eyJiIjoyfQ.c2ln', `x${jws}`]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('private_key', async (t) => {
  const rsa = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----';
  const pkcs8 = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----';
  const openssh = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----';
  const pgp = '-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF4\n-----END PGP PRIVATE KEY BLOCK-----';
  expectOnly(t, 'private_key', [rsa, pkcs8, openssh, pgp]);
  t.same(found(`key: ${rsa}\nafter`), [`private_key:${rsa}`]);
  const truncated = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3y';
  t.same(found(`x ${truncated}`), [`private_key:${truncated}`], 'no END: masked to the end of the value');
  for (const decoy of [
    '-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----',
    '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----',
    '------------+-------------',
    '-----BEGIN PRIVATE KEY',
  ]) {
    t.same(found(decoy), [], decoy);
  }
});

t.test('decoys: ordinary row values are not findings', async (t) => {
  const decoys = [
    '4111111111111112',
    '2024-01-15',
    '2024-01-15 10:20:30',
    '2024-01-15 10:20:30.123456+00',
    'Mon, 15 Jan 2024 10:20:30 GMT',
    '550e8400-e29b-41d4-a716-446655440000',
    '00000000-0000-0000-0000-000000000000',
    '1.2.3',
    '10.4.12-MariaDB',
    'PostgreSQL 16.2 on x86_64-pc-linux-gnu',
    '192.168.1.1',
    '255.255.255.0',
    '10.20.30.40:5432',
    'DE89370400440532013001',
    'user@localhost',
    'a @ b',
    '123456789',
    '1234567890',
    '12345678901234567890123',
    'd41d8cd98f00b204e9800998ecf8427e',
    'da39a3ee5e6b4b0d3255bfef95601890afd80709',
    '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    '1234567.89',
    '-1234567890.12',
    '0.30000000000000004',
    '1e+21',
    '{"id":12345678,"at":"2024-01-15T10:20:30Z","tags":["a","b"]}',
    'The quick brown fox jumps over the lazy dog (1, 2, 3)',
    '(1,2,3,4,5,6,7,8,9,10)',
    '{1,2,3,4,5,6,7,8,9}',
    'ORDER BY 1, 2, 3',
    '\\x4141414141414141',
    'Zoë Müller — 東京 — naïve café',
  ];
  for (const d of decoys) t.same(found(d), [], d);
});

t.test('findings in the middle of text and multibyte byte offsets', async (t) => {
  const s = "Zoë's card: 4111 1111 1111 1111 — ok ✓";
  const b = Buffer.from(s);
  const f = all.scan(b, 0, b.length);
  const start = Buffer.byteLength("Zoë's card: ");
  t.same(f, [{ start, end: start + 19, detector: 'credit_card' }]);
  t.equal(b.toString('utf8', f[0]!.start, f[0]!.end), '4111 1111 1111 1111');

  const multi = Buffer.from('日本語 mail: ユーザー <zoë.x@example.com> and jörg@example.de 東京');
  const got = all.scan(multi, 0, multi.length).map((x) => multi.toString('utf8', x.start, x.end));
  t.same(got, ['zoë.x@example.com', 'jörg@example.de'], 'UTF-8 local parts');

  // A sub-range: offsets are relative to start; bytes outside the range are not part of the value.
  const outer = Buffer.from('99994111111111111111AKIA');
  const r = all.scan(outer, 4, 20);
  t.same(r, [{ start: 0, end: 16, detector: 'credit_card' }]);
  t.same(all.scan(outer, 0, outer.length), [], 'the whole buffer is a 20-digit run');
});

t.test('scan returns a shared frozen empty array when nothing is found', async (t) => {
  const a = all.scan(Buffer.from('nothing here'), 0, 12);
  const b = all.scan(Buffer.from('2024-01-15'), 0, 10);
  t.equal(a, b);
  t.ok(Object.isFrozen(a));
  t.equal(a.length, 0);
});

t.test('overlap resolution: longest wins, then earliest; losers are trimmed', async (t) => {
  const f = (start: number, end: number, detector: string): Finding => ({ start, end, detector });
  t.same(resolveOverlaps([f(0, 10, 'a'), f(5, 20, 'b')]), [f(0, 5, 'a'), f(5, 20, 'b')]);
  t.same(resolveOverlaps([f(5, 15, 'b'), f(0, 10, 'a')]), [f(0, 10, 'a'), f(10, 15, 'b')], 'tie: earliest wins');
  t.same(resolveOverlaps([f(2, 4, 'in'), f(0, 10, 'out')]), [f(0, 10, 'out')], 'contained: dropped');
  t.same(resolveOverlaps([f(0, 4, 'x'), f(0, 4, 'y')]), [f(0, 4, 'x')], 'duplicate span: one');
  t.same(resolveOverlaps([f(0, 5, 'a'), f(8, 12, 'b'), f(3, 10, 'c')]), [f(0, 3, 'a'), f(3, 10, 'c'), f(10, 12, 'b')], 'both sides trimmed');

  // Through the scanner: a custom detector and built-ins compete.
  const s = new Scanner(DETECTOR_NAMES, [{ name: 'order_ref', pattern: 'ORD-[0-9]+', strategy: 'redact' }]);
  t.same(found('ref ORD-4111111111111111 ok', s), ['order_ref:ORD-4111111111111111'], 'card inside a longer custom match');
  t.same(found('4111111111111111@example.com'), ['email:4111111111111111@example.com'], 'card inside an email');
  const p = new Scanner(DETECTOR_NAMES, [{ name: 'acct', pattern: 'acct [0-9]{3}-[0-9]{2}', strategy: 'redact' }]);
  t.same(found('acct 123-45-6789', p), ['acct:acct 123-45', 'us_ssn:-6789'], 'partial overlap: the loser keeps what the winner does not cover');
});

t.test('prefilter: every alignment, long and short values, range edges', async (t) => {
  const samples = [
    ['4111 1111 1111 1111', 'credit_card'],
    ['123-45-6789', 'us_ssn'],
    ['(555) 123-4567', 'phone'],
    ['+44 20 7946 0958', 'phone'],
    ['john@example.com', 'email'],
    ['DE89 3704 0044 0532 0130 00', 'iban'],
    ['AKIAIOSFODNN7EXAMPLE', 'aws_access_key'],
  ] as const;
  const filler = 'lorem ipsum dolor sit amet, consectetur adipiscing elit sed do ';
  let checked = 0;
  for (const [v, d] of samples) {
    for (const padLen of [0, 1, 2, 3, 5, 70, 71, 72, 73]) {
      for (const lead of [0, 1, 2, 3]) {
        const pad = filler.repeat(2).slice(0, padLen);
        const text = `${pad}${pad ? ' ' : ''}${v} ${pad}`;
        const buf = Buffer.concat([Buffer.alloc(lead, 0x7a), Buffer.from(text)]);
        const fs = all.scan(buf, lead, buf.length);
        const want = Buffer.byteLength(pad ? `${pad} ` : '');
        if (fs.length !== 1 || fs[0]!.start !== want || fs[0]!.end !== want + v.length || fs[0]!.detector !== d) {
          t.fail(`${d} at pad ${padLen} lead ${lead}: ${JSON.stringify(fs)}`);
        }
        checked++;
      }
    }
  }
  t.equal(checked, samples.length * 36);
  // Digits separated by 3+ spaces never form one number.
  t.same(found('4111   1111   1111   1111 and more text to make this value long enough'), []);
  t.same(found(`${'x'.repeat(61)}   4111111111111111`), ['credit_card:4111111111111111']);
  // Empty and tiny ranges.
  t.same(all.scan(Buffer.alloc(0), 0, 0), []);
  t.same(all.scan(Buffer.from('@'), 0, 1), []);
  t.same(all.scan(Buffer.from('+1'), 0, 2), []);
});

t.test('prefilter: random values with embedded secrets match a per-value reference', async (t) => {
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = 'abcXYZ0123456789 -.()+@:/_AJey';
  const secrets = ['4111111111111111', '123-45-6789', '555-123-4567', 'a@example.com', 'GB82WEST12345698765432', 'AKIAIOSFODNN7EXAMPLE'];
  let hits = 0;
  for (let n = 0; n < 2000; n++) {
    let s = '';
    for (let k = rnd(80); k > 0; k--) s += alphabet[rnd(alphabet.length)];
    const secret = secrets[rnd(secrets.length)]!;
    const text = `${s} ${secret} ${s.slice(0, rnd(20))}`;
    const b = Buffer.from(text);
    // The same value scanned at another alignment and inside a larger buffer must give the same findings.
    const shifted = Buffer.concat([Buffer.from('xyz'), b, Buffer.from('q')]);
    const a1 = all.scan(b, 0, b.length);
    const a2 = all.scan(shifted, 3, 3 + b.length);
    if (JSON.stringify(a1) !== JSON.stringify(a2)) t.fail(`alignment changed findings for ${JSON.stringify(text)}`);
    const start = s.length + 1;
    if (a1.some((f) => f.start <= start && f.end >= start + secret.length)) hits++;
  }
  t.ok(hits > 1900, `embedded secrets found in ${hits}/2000 random values`);
});

t.test('prefilter never hides a match: validators run at every position agree', async (t) => {
  // Reference: every validator at every plausible start, no prefilter. Each
  // byte of each reference match must be inside some finding of the scanner,
  // for short values and long ones (word skip) at varying alignments.
  let seed = 11;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = ['4111111111111111', '5555 5555 5555 4444', '123-45-6789', '555-123-4567', '(555) 123-4567', '+44 20 7946 0958',
    'DE89370400440532013000', 'GB82 WEST 1234 5698 7654 32', 'a@b.co', 'AKIAIOSFODNN7EXAMPLE', '-----BEGIN PRIVATE KEY-----x',
    '1', '12', '123', '2024', ' ', '-', '.', '(', ')', '+', 'A', 'DE', 'x', 'é', ':', '0'];
  const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
  let checked = 0;
  let missed = 0;
  for (let n = 0; n < 20000; n++) {
    let str = '';
    for (let k = 1 + rnd(8); k > 0; k--) str += pieces[rnd(pieces.length)];
    const pad = 'lorem ipsum dolor '.repeat(5).slice(0, rnd(90));
    const v = Buffer.from(str);
    const b = Buffer.concat([Buffer.from(pad), v, Buffer.from(pad)]);
    const lo = pad.length;
    const hi = lo + v.length;
    const got = all.scan(b, lo, hi);
    const covered = (a: number, e: number): boolean => {
      for (let q = a - lo; q < e - lo; q++) if (!got.some((f) => f.start <= q && f.end > q)) return false;
      return true;
    };
    for (let g = lo; g < hi; g++) {
      const c = b[g]!;
      const ref: [number, number][] = [];
      const add = (a: number, e: number): void => {
        if (e > 0) ref.push([a, e]);
      };
      if (isDigit(c) && !(g > lo && isDigit(b[g - 1]!))) {
        add(g, matchCard(b, g, lo, hi));
        add(g, matchSsn(b, g, lo, hi));
        const e = matchNanp(b, g, lo, hi);
        add(M.start, e);
      }
      if (c === 0x2b) add(g, matchE164(b, g, lo, hi));
      if (c === 0x40) {
        const e = matchEmail(b, g, lo, hi);
        add(M.start, e);
      }
      if (c === 0x41) add(g, matchAwsKey(b, g, lo, hi));
      if (c === 0x2d) add(g, matchPrivateKey(b, g, lo, hi));
      add(g, matchIban(b, g, lo, hi));
      for (const [a, e] of ref) {
        checked++;
        if (!covered(a, e) && missed++ < 5) t.fail(`missed ${JSON.stringify(b.toString('utf8', a, e))} in ${JSON.stringify(str)}`);
      }
    }
  }
  t.equal(missed, 0, `${checked} reference matches, all masked`);
  t.ok(checked > 5000);
});

t.test('strategies: redact and null', async (t) => {
  const v = Buffer.from('4111 1111 1111 1111');
  t.equal(maskValue('redact', v, ctx)!.toString(), '****');
  t.equal(maskValue('redact', v, ctx, 'credit_card')!.toString(), '[REDACTED:credit_card]');
  t.equal(redactMarker('order_ref').toString(), '[REDACTED:order_ref]');
  t.equal(maskValue('null', v, ctx), null);
  t.equal(maskValue('null', v, ctx, 'credit_card'), null);
  const text = Buffer.from('card 4111 1111 1111 1111 ok');
  const f = all.scan(text, 0, text.length);
  t.equal(maskFindings(text, 0, text.length, f, () => 'null', ctx).toString(), 'card [REDACTED:credit_card] ok');
  t.throws(() => maskValue('bogus' as Strategy, v, ctx), /unknown strategy/);
});

t.test('strategies: partial', async (t) => {
  const p = (s: string, d?: string): string => maskValue('partial', Buffer.from(s), ctx, d)!.toString();
  t.equal(p('4111 1111 1111 1111', 'credit_card'), '**** **** **** 1111');
  t.equal(p('4111-1111-1111-1234', 'credit_card'), '****-****-****-1234');
  t.equal(p('378282246310005', 'credit_card'), '***********0005');
  t.equal(p('123-45-6789', 'us_ssn'), '***-**-6789');
  t.equal(p('+1 (555) 123-4567', 'phone'), '+* (***) ***-4567');
  t.equal(p('john.doe@example.com', 'email'), '****@example.com');
  t.equal(p('DE89 3704 0044 0532 0130 00', 'iban'), '**** **** **** **** **30 00');
  t.equal(p('AKIAIOSFODNN7EXAMPLE', 'aws_access_key'), '****MPLE');
  t.equal(p('-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----', 'private_key'), '[REDACTED:private_key]');
  // whole values (no detector)
  t.equal(p('jane@example.org'), '****@example.org');
  t.equal(p('4111111111111111'), '************1111');
  t.equal(p('+1 555 123 4567'), '+* *** *** 4567');
  t.equal(p('Zoë Müller-Lüdenscheidt'), '****eidt');
  t.equal(p('résumé café'), '****café', 'keeps whole UTF-8 characters');
  t.equal(p('Bob'), '****', 'short values keep nothing');
  t.equal(p('1234567'), '****', 'short numbers keep nothing');
});

t.test('strategies: hash tokens are keyed, stable and normalised', async (t) => {
  const h = (s: string, d?: string, key = ctx): string => maskValue('hash', Buffer.from(s), key, d)!.toString();
  const tok = h('4111 1111 1111 1111', 'credit_card');
  t.match(tok, /^h:[0-9a-f]{12}$/);
  t.equal(h('4111 1111 1111 1111', 'credit_card'), tok, 'stable');
  t.equal(h('4111-1111-1111-1111', 'credit_card'), tok, 'separators do not matter for cards');
  t.equal(h('4111111111111111'), tok, 'a whole value in compact form joins with findings');
  t.equal(h('John@Example.COM', 'email'), h('john@example.com', 'email'), 'emails are case-insensitive');
  t.equal(h('de89 3704 0044 0532 0130 00', 'iban'), h('DE89370400440532013000', 'iban'));
  t.not(h('4111111111111111'), h('5555555555554444'));
  t.not(h('4111111111111111', undefined, { hmacKey: Buffer.alloc(32, 8) }), tok, 'another key, another token');
  const long = 'x'.repeat(1000);
  t.equal(h(long), h(long), 'long values (not cached) are stable too');
  t.throws(() => h('x', undefined, { hmacKey: Buffer.alloc(8) }), /hmacKey/);
  // The token cache (4096 entries, FIFO) never changes a token: every value, before and after it
  // was evicted, gets the HMAC computed directly.
  const direct = (s: string) => 'h:' + createHmac('sha256', ctx.hmacKey).update(s).digest('hex').slice(0, 12);
  let bad = 0;
  for (let pass = 0; pass < 2; pass++) for (let i = 0; i < 10_000; i++) if (h(`v${i}`) !== direct(`v${i}`)) bad++;
  t.equal(bad, 0, 'cached tokens equal direct HMACs across evictions');
});

t.test('masked output keeps nothing of the original beyond partial', async (t) => {
  const secrets: [string, DetectorName][] = [
    ['5555 5555 5555 4444', 'credit_card'],
    ['123-45-6789', 'us_ssn'],
    ['(555) 987-6543', 'phone'],
    ['DE89 3704 0044 0532 0130 00', 'iban'],
  ];
  for (const [s, d] of secrets) {
    const text = Buffer.from(`before ${s} after`);
    const f = all.scan(text, 0, text.length);
    t.equal(f.length, 1, s);
    for (const strategy of ['redact', 'hash', 'null'] as const) {
      const out = maskFindings(text, 0, text.length, f, () => strategy, ctx).toString();
      t.ok(out.startsWith('before ') && out.endsWith(' after'), out);
      const middle = out.slice(7, -6);
      if (strategy === 'hash') t.match(middle, /^h:[0-9a-f]{12}$/);
      else t.equal(middle, `[REDACTED:${d}]`);
    }
    const partial = maskFindings(text, 0, text.length, f, () => 'partial', ctx).toString().slice(7, -6);
    const kept = partial.replace(/[^0-9A-Z]/g, '');
    t.equal(kept, s.replace(/[^0-9A-Z]/g, '').slice(-4), `partial keeps only the last 4: ${partial}`);
  }
});

t.test('maskFindings: identity when nothing to mask, several findings, sub-ranges', async (t) => {
  const buf = Buffer.from('hello world');
  t.equal(maskFindings(buf, 0, buf.length, [], () => 'redact', ctx), buf, 'same Buffer object');
  const row = Buffer.from('ID|mail a@example.com, card 4111111111111111, ssn 123-45-6789|END');
  const s = row.indexOf('|') + 1;
  const e = row.lastIndexOf('|');
  const f = all.scan(row, s, e);
  t.same(
    f.map((x) => x.detector),
    ['email', 'credit_card', 'us_ssn'],
  );
  const strat = (d: string): Strategy => (d === 'email' ? 'partial' : d === 'credit_card' ? 'hash' : 'redact');
  const out = maskFindings(row, s, e, f, strat, ctx).toString();
  t.match(out, /^mail \*\*\*\*@example\.com, card h:[0-9a-f]{12}, ssn \[REDACTED:us_ssn\]$/);
  t.throws(() => maskFindings(row, s, e, [{ start: 5, end: 3, detector: 'x' }], strat, ctx), RangeError);
  t.throws(() => maskFindings(row, s, e, [{ start: 0, end: 999, detector: 'x' }], strat, ctx), RangeError);
});

t.test('custom detectors (RE2)', async (t) => {
  const s = new Scanner(['email'], [
    { name: 'order_ref', pattern: 'ORD-[0-9]{4}', strategy: 'redact' },
    { name: 'emp_id', pattern: '(?i)emp#[a-z]{2}[0-9]{3}', strategy: 'hash' },
  ]);
  const b = Buffer.from('Zoë ORD-1234 and EMP#ab123, x@example.com; ORD-12');
  const f = s.scan(b, 0, b.length);
  t.same(
    f.map((x) => `${x.detector}:${b.toString('utf8', x.start, x.end)}`),
    ['order_ref:ORD-1234', 'emp_id:EMP#ab123', 'email:x@example.com'],
  );
  t.equal(f[0]!.start, Buffer.byteLength('Zoë '), 'byte offsets');
  t.same(s.scan(Buffer.from('nothing'), 0, 7), []);

  t.throws(() => new Scanner([], [{ name: 'bad', pattern: '(abc', strategy: 'redact' }]), /custom detector "bad": invalid RE2 pattern/);
  t.throws(() => new Scanner([], [{ name: 'look', pattern: 'a(?=b)', strategy: 'redact' }]), /custom detector "look": invalid RE2 pattern/);
  t.throws(() => new Scanner([], [{ name: 'empty', pattern: 'x*', strategy: 'redact' }]), /matches the empty string/);
  t.throws(() => new Scanner([], [{ name: 'email', pattern: 'x', strategy: 'redact' }]), /built-in/);
  t.throws(() => new Scanner([], [{ name: 'bad name]', pattern: 'x', strategy: 'redact' }]), /name/);
  t.throws(() => new Scanner([], [{ name: 'x', pattern: 'x', strategy: 'wipe' as Strategy }]), /strategy/);
  t.throws(() => new Scanner(['credit_card', 'bogus' as DetectorName], []), /unknown detector "bogus"/);
});

t.test('custom detectors: the documented AWS secret key recipe', async (t) => {
  const s = new Scanner(['aws_access_key'], [
    { name: 'aws_secret', pattern: `(?i)aws_?secret_?access_?key["']?\\s*[:=]\\s*["']?[A-Za-z0-9/+]{40}`, strategy: 'redact' },
  ]);
  const cfg = '[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n';
  t.same(found(cfg, s), [
    'aws_access_key:AKIAIOSFODNN7EXAMPLE',
    'aws_secret:aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  ]);
});

t.test('custom detectors: a pathological pattern stays linear', async (t) => {
  const s = new Scanner([], [{ name: 'evil', pattern: '(a+)+$', strategy: 'redact' }]);
  const b = Buffer.from('a'.repeat(200_000) + '!');
  const t0 = process.hrtime.bigint();
  const f = s.scan(b, 0, b.length);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  t.same(f, []);
  t.ok(ms < 1000, `finished in ${ms.toFixed(1)} ms`);
  const m = s.scan(Buffer.from('xaaa'), 0, 4);
  t.same(m, [{ start: 1, end: 4, detector: 'evil' }]);
});

t.test('disabled detectors find nothing', async (t) => {
  const only = new Scanner(['email'], []);
  t.same(found('4111111111111111 123-45-6789 AKIAIOSFODNN7EXAMPLE a@example.com', only), ['email:a@example.com']);
  const none = new Scanner([], []);
  t.same(found('4111111111111111 a@example.com', none), []);
  const cards = new Scanner(['credit_card'], []);
  t.same(found('+44 20 7946 0958 4111111111111111 DE89370400440532013000', cards), ['credit_card:4111111111111111']);
});

t.test('maskFindingInto writes what maskValue gives a finding (the marker for null), at an offset, within findingRoom', async (t) => {
  const values: [string, string][] = [
    ['4111 1111 1111 1111', 'credit_card'],
    ['123-45-6789', 'us_ssn'],
    ['+1 (555) 987-6543', 'phone'],
    ['DE89 3704 0044 0532 0130 00', 'iban'],
    ['Zoë.Müller@Example.com', 'email'],
    ['not-an-email', 'email'],
    ['AKIAIOSFODNN7EXAMPLE', 'aws_access_key'],
    ['-----BEGIN PRIVATE KEY-----x', 'private_key'],
    ['short', 'custom_x'],
    ['ünïcödé-längër-välüe', 'custom_x'],
  ];
  const bytewise = { ...ctx, bytesAreChars: true };
  for (const [s, d] of values) {
    for (const c of [ctx, bytewise]) {
      for (const strategy of ['redact', 'hash', 'null', 'partial'] as const) {
        const v = Buffer.from(`..${s}..`);
        const want = maskValue(strategy, v.subarray(2, v.length - 2), c, d) ?? redactMarker(d);
        const room = findingRoom(v.length - 4, d);
        const dst = Buffer.alloc(3 + room + 3, 0x7e);
        const end = maskFindingInto(strategy, v, 2, v.length - 2, d, c, dst, 3);
        t.ok(end - 3 <= room, `${strategy} ${d} ${s}: within room`);
        t.equal(dst.subarray(3, end).toString('latin1'), want.toString('latin1'), `${strategy} ${d} ${s}`);
        t.equal(dst.subarray(0, 3).toString(), '~~~', 'nothing before the offset');
      }
    }
  }
});
