// PgMasker writes rewritten DataRows straight into the relay's output slab. This checks it against
// a reference built value by value with the Buffer form of the strategies (maskValue, maskFindings)
// on random rows: every strategy, NULLs, JSON, UTF-8, values with detector findings, values larger
// than a slab (the row in progress moves), and rows that need no change (forwarded as they are).
import t from 'tap';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { configFromObject } from '../src/config/load.js';
import type { Session } from '../src/session/session.js';
import { MaskingResolver } from '../src/policy/masking/ruleset.js';
import { maskFindings, maskValue } from '../src/policy/masking/strategies.js';
import { PgMasker } from '../src/protocols/postgres/masker.js';
import { OutSlab } from '../src/protocols/postgres/out-slab.js';
import { dataRow, rowDescription } from './helpers/pg-messages.js';

const COLS: [string, number][] = [
  ['id', 23],
  ['email', 25],
  ['card', 25],
  ['ssn', 25],
  ['name', 25],
  ['gone', 25],
  ['doc', 114],
  ['note', 25],
];
const cfg = configFromObject(
  {
    masking: [
      {
        name: 'm',
        columns: [
          { column: 'email', strategy: 'partial' },
          { column: 'card', strategy: 'partial' },
          { column: 'ssn', strategy: 'redact' },
          { column: 'name', strategy: 'hash' },
          { column: 'gone', strategy: 'null' },
          { column: 'doc', strategy: 'partial' },
        ],
        detectors: ['credit_card', 'email', 'us_ssn'],
      },
    ],
  },
  '',
);
const set = new MaskingResolver(cfg.masking).resolve({ sub: 'x', groups: [], issuer: 'x', claims: {} }, 't', 'postgres')!;
const ctx = { hmacKey: Buffer.alloc(32, 9) };
const session = { masking: () => set, maskContext: ctx, maskingApplied: () => {} } as unknown as Session;
const rules: Record<string, 'partial' | 'redact' | 'hash' | 'null'> = { email: 'partial', card: 'partial', ssn: 'redact', name: 'hash', gone: 'null', doc: 'partial' };

const rd = rowDescription(COLS);

let seed = 7;
const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
const pick = <T>(a: T[]): T => a[rnd(a.length)]!;
const SAMPLES = ['', 'a', 'Zoë Müller', 'x'.repeat(7), 'abcdefgh', '4111 1111 1111 1111', '555-12-3456', '+1 (555) 123-4567', 'bob@example.com', 'a.b@c', 'me@x.io.', 'no@dots', 'a b@example.com', '日本語のテキストです', '12345678', '(555) 123'];
const NOTES = ['nothing here', 'card 4111111111111111 on file', 'mail zoe@example.org now', 'ssn 123-45-6789.', 'two: 4111 1111 1111 1111 and bob@example.com'];
function value(col: string): Buffer | null {
  if (rnd(8) === 0) return null;
  if (col === 'id') return Buffer.from(String(rnd(100000)));
  if (col === 'doc') return Buffer.from(JSON.stringify({ k: pick(SAMPLES) }));
  if (col === 'note') return Buffer.from(rnd(50) === 0 ? pick(NOTES) + ' ' + 'y'.repeat(20000 + rnd(5000)) : pick(NOTES));
  return Buffer.from(rnd(40) === 0 ? pick(SAMPLES) + 'z'.repeat(17000) : pick(SAMPLES));
}

/** The row as the masker must rewrite it, from the Buffer form of the strategies. */
function reference(values: (Buffer | null)[]): Buffer {
  return dataRow(
    values.map((v, i) => {
      if (v === null) return null;
      const [name] = COLS[i]!;
      const rule = rules[name];
      if (rule) {
        const m = maskValue(rule, v, ctx);
        return m === null ? null : name === 'doc' ? Buffer.from(JSON.stringify(m.toString('utf8'))) : m;
      }
      if (name === 'id') return v;
      return maskFindings(v, 0, v.length, set.scanner!.scan(v, 0, v.length), set.strategyFor, ctx);
    }),
  );
}

t.test('rows rewritten into the slab equal the value-by-value reference', async (t) => {
  const masker = new PgMasker(session, null);
  t.ok(masker.wants(0x54));
  t.equal(masker.onRowDescription(rd, 0), null);
  const slab = new OutSlab(() => {});
  const out: Buffer[] = [];
  const expected: Buffer[] = [];
  let forwarded = 0;
  for (let r = 0; r < 3000; r++) {
    const values = COLS.map(([n]) => value(n));
    // The row sits inside a larger chunk, as it does on the wire.
    const row = dataRow(values);
    const chunk = Buffer.concat([Buffer.alloc(11, 1), row, Buffer.alloc(3, 2)]);
    expected.push(reference(values));
    if (masker.onDataRow(chunk, 11, 11 + row.length, slab)) continue;
    // Not rewritten: only when nothing in it needed masking.
    forwarded++;
    slab.drainTo(out);
    out.push(row);
    if (rnd(10) === 0) slab.release();
  }
  slab.drainTo(out);
  t.ok(Buffer.concat(out).equals(Buffer.concat(expected)), 'same bytes');
  t.ok(forwarded > 0 && forwarded < 3000, `some rows forwarded unchanged (${forwarded})`);
});

t.test('a row with nothing to mask is forwarded, not copied', async (t) => {
  const masker = new PgMasker(session, null);
  masker.wants(0x54);
  masker.onRowDescription(rd, 0);
  const slab = new OutSlab(() => t.fail('no run opened'));
  const row = dataRow([Buffer.from('1'), null, null, null, null, null, null, Buffer.from('plain text')]);
  t.equal(masker.onDataRow(row, 0, row.length, slab), false);
  t.equal(slab.pos, 0);
});

t.test('counts cover every result set of a statement, and a column running past its row is refused', async (t) => {
  const applied: { columns: Record<string, number> }[] = [];
  const s = { masking: () => set, maskContext: ctx, maskingApplied: (c: { columns: Record<string, number> }) => applied.push(c) } as unknown as Session;
  const masker = new PgMasker(s, null);
  const slab = new OutSlab(() => {});
  const row = dataRow([Buffer.from('1'), Buffer.from('bob@example.com'), null, null, null, null, null, null]);
  for (let set = 0; set < 2; set++) {
    masker.wants(0x54);
    masker.onRowDescription(rd, 0);
    for (let r = 0; r < 3; r++) t.ok(masker.onDataRow(row, 0, row.length, slab));
  }
  masker.flush();
  t.same(applied, [{ columns: { email: 6 }, detectors: {} }], 'six emails over two result sets, one audit event');
  const bad = Buffer.from(row);
  bad.writeInt32BE(10_000, 7 + 4 + 1); // the email column's length word
  t.throws(() => masker.onDataRow(bad, 0, bad.length, slab), /runs past the end of its message/);
});
