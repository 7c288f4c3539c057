// The PII table the large-result benchmark fetches and the masking rules every
// masked variant uses. bench/masking-rows.ts masks the same rows in process, so
// its per-core MB/s and the end-to-end MB/s through the gateway describe one workload.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pgBinDir, type PgCluster } from '../../test/helpers/pg-cluster.js';

/** Columns of `customers`: name and type OID (as a RowDescription carries them). */
export const PII_COLUMNS: readonly (readonly [string, number])[] = [
  ['id', 23], // int4
  ['full_name', 25], // text
  ['email', 25],
  ['card_number', 25],
  ['ssn', 25],
  ['note', 25],
];

/** The masking rule set (without `match`): column rules on the PII columns, detectors on the free text. */
export const PII_MASKING = {
  name: 'pii',
  columns: [
    { column: 'email', strategy: 'partial' },
    { column: 'card_number', strategy: 'partial' },
    { column: 'ssn', strategy: 'redact' },
    { column: 'full_name', strategy: 'hash' },
  ],
  detectors: ['credit_card', 'email', 'us_ssn'],
};

const FIRST = ['Zoë', 'Anna', 'José', 'Mei', 'Olivier', 'Björn', 'Sarah', 'Ahmed', 'Łukasz', 'Priya', 'John', 'Ines'];
const ASCII_FIRST = ['zoe', 'anna', 'jose', 'mei', 'olivier', 'bjorn', 'sarah', 'ahmed', 'lukasz', 'priya', 'john', 'ines'];
const LAST = ['Müller', 'Smith', 'García', 'Nakamura', "O'Brien", 'Nowak', 'Dubois', 'Rossi', 'Kowalski', 'Øster', 'Khan', 'Silva', 'Ivanova'];
const ASCII_LAST = ['mueller', 'smith', 'garcia', 'nakamura', 'obrien', 'nowak', 'dubois', 'rossi', 'kowalski', 'oster', 'khan', 'silva', 'ivanova'];
const NOTES = [
  'Customer asked for a callback next week about the renewal of the annual plan.',
  'Delivered on time, no issues reported. Ticket closed by support.',
  'Order shipped 2024-01-15 10:20:30 via express, version 1.2.3 of the app.',
  'Prefers email contact; VIP since 2019; discount code SPRING-2024 applied twice.',
];

/** A 16-digit card number that passes the Luhn check, derived from n. */
function card(n: number): string {
  const d = ('4' + String(n * 7919 + 1_000_000).padStart(14, '0').slice(-14)).split('').map(Number);
  let sum = 0;
  for (let i = d.length - 1, dbl = true; i >= 0; i--, dbl = !dbl) {
    let v = d[i]!;
    if (dbl) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
    sum += v;
  }
  return d.join('') + String((10 - (sum % 10)) % 10);
}

/** Row i of the table, as text values (deterministic). About 2% of notes carry PII in free text. */
export function piiRow(i: number): string[] {
  const f = i % FIRST.length;
  const l = (i * 7) % LAST.length;
  const h = (i * 2654435761) >>> 0;
  const ssn = `${101 + (h % 560)}-${String(10 + (h % 89)).padStart(2, '0')}-${String(1000 + (h % 8999)).padStart(4, '0')}`;
  const note = h % 50 === 0 ? `Called from work, card ${card(i + 1)} on file; reach ${ASCII_FIRST[f]}${i}@example.org` : NOTES[h % NOTES.length]!;
  return [String(i), `${FIRST[f]} ${LAST[l]}`, `${ASCII_FIRST[f]}.${ASCII_LAST[l]}${i}@example.com`, card(i), ssn, note];
}

/** Creates and fills orders.customers (owned by `app`) with `rows` rows, through COPY. */
export async function loadPiiTable(pg: PgCluster, rows: number): Promise<void> {
  await pg.sql(
    'create table customers (id int4 primary key, full_name text, email text, card_number text, ssn text, note text); alter table customers owner to app',
    'orders',
  );
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  const psql = spawn(path.join(pgBinDir(), 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg.socketDir, '-p', String(pg.port), '-U', 'postgres', '-d', 'orders', '-c', 'copy customers from stdin'], {
    env,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let err = '';
  psql.stderr.on('data', (c) => (err += c));
  const done = new Promise<void>((resolve, reject) => psql.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`loading customers failed: ${err}`)))));
  for (let i = 1; i <= rows; ) {
    let chunk = '';
    for (const stop = Math.min(rows, i + 5000); i <= stop; i++) chunk += piiRow(i).join('\t') + '\n';
    if (!psql.stdin.write(chunk)) await new Promise((r) => psql.stdin.once('drain', r));
  }
  psql.stdin.end();
  await done;
  await pg.sql('vacuum analyze customers', 'orders');
}
