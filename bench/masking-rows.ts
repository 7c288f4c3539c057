// Masking throughput on Postgres DataRow traffic, one core: the real PgMasker
// over ~64 MB of DataRows (text format) per scenario, MB/s of rows in per CPU second.
// - a mixed table (~2% of rows with PII in free text), detectors only, then with a
//   column rule that rewrites every row;
// - the PII table bench/large-result.ts fetches through the gateway (lib/pii.ts),
//   with the masking rules of the masked gateway variants: every row rewritten.
//   node --import tsx bench/masking-rows.ts
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { configFromObject } from '../src/config/load.js';
import type { Session } from '../src/session/session.js';
import { MaskingResolver } from '../src/policy/masking/ruleset.js';
import { PgMasker } from '../src/protocols/postgres/masker.js';
import { OutSlab } from '../src/protocols/postgres/out-slab.js';
import { machineLine, median, writeResult } from './lib/env.js';
import { PII_COLUMNS, PII_MASKING, piiRow } from './lib/pii.js';
import { dataRow, rowDescription } from '../test/helpers/pg-messages.js';

const MB = Number(process.env.MASK_BENCH_MB ?? 64);
const ALL = ['credit_card', 'email', 'us_ssn', 'phone', 'iban', 'aws_access_key', 'jwt', 'private_key'];

let set: ReturnType<MaskingResolver['resolve']> = null;
let maskedValues = 0;
const session = {
  masking: () => set,
  maskContext: { hmacKey: Buffer.alloc(32, 7) },
  maskingApplied: (c: { columns: Record<string, number>; detectors: Record<string, number> }) => {
    for (const v of Object.values(c.columns)) maskedValues += v;
    for (const v of Object.values(c.detectors)) maskedValues += v;
  },
} as unknown as Session;

interface Corpus {
  rd: Buffer;
  rows: Buffer[];
  bytes: number;
}

/** A RowDescription (computed columns: no table, matched by name) and ~MB of DataRows. */
function corpus(cols: readonly (readonly [string, number])[], values: (i: number) => string[]): Corpus {
  const rd = rowDescription(cols);
  const rows: Buffer[] = [];
  let bytes = 0;
  while (bytes < MB << 20) {
    const m = dataRow(values(rows.length + 1));
    rows.push(m);
    bytes += m.length;
  }
  return { rd, rows, bytes };
}

let seed = 1;
const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
const notes = [
  'Customer asked for a callback next week about the renewal of the annual plan.',
  'Delivered on time, no issues reported. Ticket 3f2504e0-4f89-11d3-9a0c-0305e82c3301 closed.',
  'Order 1234567812345678 shipped 2024-01-15 10:20:30 via express, version 1.2.3 of the app.',
  'Prefers email contact; VIP since 2019; discount code SPRING-2024 applied twice.',
];
const mixed = corpus(
  [['id', 23], ['name', 25], ['email', 25], ['note', 25], ['status', 25], ['created', 1184]],
  (i) => {
    const sensitive = rnd(50) === 0; // ~2% of rows carry PII in free text
    return [
      String(i),
      `Person ${i} Lastname`,
      sensitive ? `person${i}@example.com` : `user-${i}`,
      sensitive ? `paid with 4111 1111 1111 1111, mail person${i}@example.org` : notes[rnd(notes.length)]!,
      'active',
      '2024-01-15 10:20:30.123456+00',
    ];
  },
);
const pii = corpus(PII_COLUMNS, piiRow);

const scenarios: { name: string; masking: Record<string, unknown>; data: Corpus }[] = [
  { name: 'mixed table, detectors only (rows without PII pass untouched)', masking: { name: 'pii', detectors: ALL }, data: mixed },
  { name: 'mixed table, a column rule on every row + detectors (every row rebuilt)', masking: { name: 'pii', columns: [{ column: 'status', strategy: 'redact' }], detectors: ALL }, data: mixed },
  { name: 'PII table of large-result, the gateway variants\' rules (every row rebuilt)', masking: PII_MASKING, data: pii },
];

/** MB/s of rows in, per CPU second of this process. */
function run(masker: PgMasker, data: Corpus): number {
  const c0 = process.cpuUsage();
  let out = 0;
  const sink: Buffer[] = [];
  const slab = new OutSlab(() => {});
  slab.hint = 80_000;
  for (const r of data.rows) {
    if (!masker.onDataRow(r, 0, r.length, slab)) out += r.length;
    // As the relay does per input chunk (~64 KB of rows).
    if (slab.pos > 60_000) {
      out += slab.drainTo(sink);
      sink.length = 0;
      slab.release();
    }
  }
  out += slab.drainTo(sink);
  masker.flush();
  const c = process.cpuUsage(c0);
  if (out === 0) throw new Error('no output');
  return data.bytes / 2 ** 20 / ((c.user + c.system) / 1e6);
}

const lines: string[] = [];
const json: Record<string, number> = {};
// MASK_BENCH_ONLY=<substring of a scenario name> runs just that one (for profiling).
const only = process.env.MASK_BENCH_ONLY;
for (const s of scenarios.filter((x) => !only || x.name.includes(only))) {
  const cfg = configFromObject({ masking: [s.masking] }, '');
  set = new MaskingResolver(cfg.masking).resolve({ sub: 'b', groups: [], issuer: 'x', claims: {} }, 't', 'postgres');
  const masker = new PgMasker(session, null);
  masker.wants(0x54);
  masker.onRowDescription(s.data.rd, 0);
  run(masker, s.data); // warm up
  const m = median([run(masker, s.data), run(masker, s.data), run(masker, s.data)]);
  json[s.name] = m;
  lines.push(`| ${s.name} | ${Math.round(s.data.bytes / s.data.rows.length)} | ${m.toFixed(0)} |`);
}
const md =
  `DataRow masking (PgMasker), one core, MB/s of rows per CPU second, median of 3; ~${MB} MB of rows per scenario; ${machineLine()}\n\n` +
  `| scenario | bytes/row | MB/s |\n|---|---:|---:|\n${lines.join('\n')}\n`;
writeResult('masking-rows', md, { mb: MB, mb_per_s: json, masked_values: maskedValues });
