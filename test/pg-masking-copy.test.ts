// Masking of COPY … TO STDOUT on a real server with real clients (psql \copy,
// pg-copy-streams), text and CSV; binary COPY refused; the row splitter and the
// CopyData rebuild under arbitrary chunking.
import t from 'tap';
import { mock } from 'node:test';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { withPostgres } from './helpers/pg-cluster.js';
import { ordersTarget, prepareOrders, psql, startSluice, type Sluice } from './helpers/sluice.js';
import {
  CopyMasker,
  CopyRowSplitter,
  CopyRowTooLong,
  copyOptions,
  copySpecs,
  escapeCsv,
  escapeText,
  splitFields,
  unescapeCsv,
  unescapeText,
} from '../src/protocols/postgres/copy-masker.js';
import { PgMasker } from '../src/protocols/postgres/masker.js';
import { MaskingSet } from '../src/policy/masking/ruleset.js';
import { initSqlAnalysis } from '../src/policy/sql/facts.js';
import type { Session } from '../src/session/session.js';
import type { CatalogCache, DescribedColumn } from '../src/protocols/postgres/catalog.js';
import type { MaskingConfig } from '../src/config/types.js';

await initSqlAnalysis();

// ---------------------------------------------------------------- unit: statements, fields, splitter

t.test('COPY statements: options and columns from the parse tree', async (t) => {
  const [a] = copySpecs(`COPY (SELECT 'x)' AS "a)b", f(1) FROM t WHERE (1=1)) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x', QUOTE '''', ESCAPE '\\', FORCE_QUOTE *)`);
  t.equal(a!.describe, `SELECT 'x)' AS "a)b", f(1) FROM t WHERE (1=1)`);
  t.same({ ...a!.options!, null: a!.options!.null.toString() }, { format: 'csv', delimiter: 0x3b, quote: 0x27, escape: 0x5c, null: 'x', header: true, forceQuote: '*', encoding: undefined });
  const [b] = copySpecs('copy public."Cust" (a, "B") to stdout csv header delimiter as \'|\' force quote a');
  t.equal(b!.describe, 'SELECT "a", "B" FROM "public"."Cust"');
  t.equal(b!.wholeTable, false);
  t.same(b!.options!.forceQuote, ['a']);
  t.equal(b!.options!.delimiter, 0x7c);
  const [c] = copySpecs('copy t to stdout');
  t.equal(c!.describe, 'SELECT * FROM "t"');
  t.equal(c!.wholeTable, true);
  t.equal(c!.options!.delimiter, 9);
  t.equal(c!.options!.null.toString(), '\\N');
  t.equal(copySpecs('COPY t TO STDOUT BINARY')[0]!.options!.format, 'binary');
  t.equal(copySpecs('copy t to stdout (header 0)')[0]!.options!.header, false);
  t.equal(copySpecs('select 1; copy t from stdin; copy t to \'/tmp/x\'; copy (select é) to stdout; copy u to stdout').length, 2, 'only COPY TO STDOUT, in order');
  t.equal(copySpecs('select 1; copy (select \'é\' as "(") to stdout')[0]!.describe, `select 'é' as "("`);
  t.same(copySpecs('not sql copy'), []);
  t.equal(copyOptions([{ DefElem: { defname: 'delimiter', arg: { String: { sval: 'ab' } } } }]), null, 'multi-byte delimiter: unreadable');
});

t.test('text and CSV fields: split, unescape, escape round-trip', async (t) => {
  const text = copyOptions([])!;
  const csv = copyOptions([{ DefElem: { defname: 'format', arg: { String: { sval: 'csv' } } } }])!;
  const row = Buffer.from('1\ta\\tb\\\\c\\nd\t\\N\t\\101\\x41z\t');
  const b: number[] = [];
  t.equal(splitFields(row, 0, row.length, text, b), 5);
  const f = (i: number) => unescapeText(row, b[2 * i]!, b[2 * i + 1]!).toString();
  t.same([f(0), f(1), f(3), f(4)], ['1', 'a\tb\\c\nd', 'AAz', '']);
  for (const v of ['plain', 'tab\there', 'nl\nand\rcr', 'back\\slash', '\\N', 'ctl\x01\x08\x0b\x0c']) {
    const e = escapeText(Buffer.from(v), 9);
    t.notOk(e.includes(9) || e.includes(10), `no raw tab/newline: ${JSON.stringify(v)}`);
    t.equal(unescapeText(e, 0, e.length).toString(), v);
  }
  const crow = Buffer.from('1,"a,b","say ""hi""",,"","x\ny",plain');
  t.equal(splitFields(crow, 0, crow.length, csv, b), 7);
  const g = (i: number) => unescapeCsv(crow, b[2 * i]!, b[2 * i + 1]!, 0x22, 0x22).toString();
  t.same([0, 1, 2, 3, 4, 5, 6].map(g), ['1', 'a,b', 'say "hi"', '', '', 'x\ny', 'plain']);
  for (const v of ['plain', 'a,b', 'say "hi"', '', 'x\ny', 'cr\r']) {
    const e = escapeCsv(Buffer.from(v), csv, false, false);
    t.equal(unescapeCsv(e, 0, e.length, 0x22, 0x22).toString(), v);
    if (v === '') t.equal(e.toString(), '""', 'empty is quoted: unquoted empty is NULL');
  }
  const bs = copyOptions([
    { DefElem: { defname: 'format', arg: { String: { sval: 'csv' } } } },
    { DefElem: { defname: 'escape', arg: { String: { sval: '\\' } } } },
  ])!;
  const e = escapeCsv(Buffer.from('q"\\z'), bs, false, false);
  t.equal(e.toString(), '"q\\"\\\\z"');
  t.equal(unescapeCsv(e, 0, e.length, 0x22, 0x5c).toString(), 'q"\\z');
});

/** Splits `data` at the given cut points. */
function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  for (const c of [...cuts, data.length]) {
    out.push(data.subarray(p, c));
    p = c;
  }
  return out;
}

function randomCuts(n: number, len: number, seed: number): number[] {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const cuts = new Set<number>();
  for (let i = 0; i < n; i++) cuts.add(1 + Math.floor(rnd() * (len - 1)));
  return [...cuts].sort((a, b) => a - b);
}

const TEXT_STREAM = Buffer.from('1\tplain\t\\N\n2\ttab\\there\\nnl\tx\n3\t\\\\\t\n\n4\tend\\\\\t\\\\N\n');
const CSV_STREAM = Buffer.from('id,v\n1,"multi\nline, with ""quotes"""\n2,,""\n3,"""",x\n4,"\n\n",""""""\n');
const CSV_BS_STREAM = Buffer.from('1,"a\\"\nb\\\\"\n2,"\\\\"\n3,"x\\y\n"\n');

t.test('row splitter: any chunking gives the same rows', async (t) => {
  const cases: [string, Buffer, boolean, number, number][] = [
    ['text', TEXT_STREAM, false, 0x22, 0x22],
    ['csv', CSV_STREAM, true, 0x22, 0x22],
    ['csv, escape \\', CSV_BS_STREAM, true, 0x22, 0x5c],
  ];
  for (const [name, data, csv, q, esc] of cases) {
    const rows = (parts: Buffer[]) => {
      const sp = new CopyRowSplitter(csv, q, esc, 1 << 20);
      const out: string[] = [];
      for (const p of parts) sp.feed(p, 0, p.length, (b, s, e) => out.push(b.toString('latin1', s, e)));
      t.equal(sp.pending, 0, 'nothing left over');
      return out;
    };
    const whole = rows([data]);
    t.equal(whole.join(''), data.toString('latin1'), `${name}: rows cover the stream`);
    // Every single cut position, every byte alone, and random chunkings.
    for (let c = 1; c < data.length; c++) t.same(rows(chunks(data, [c])), whole);
    t.same(rows(chunks(data, Array.from({ length: data.length - 1 }, (_, i) => i + 1))), whole, `${name}: one byte at a time`);
    for (let seed = 1; seed < 50; seed++) t.same(rows(chunks(data, randomCuts(1 + (seed % 7), data.length, seed))), whole);
  }
  t.same(
    (() => {
      const sp = new CopyRowSplitter(true, 0x22, 0x22, 1 << 20);
      const out: number[] = [];
      sp.feed(CSV_STREAM, 0, CSV_STREAM.length, () => out.push(1));
      return out.length;
    })(),
    5,
    'csv: newlines inside quotes do not end rows',
  );
  const sp = new CopyRowSplitter(false, 0x22, 0x22, 10);
  sp.feed(Buffer.from('short\nabcdef'), 0, 12, () => {});
  let err: unknown;
  try {
    sp.feed(Buffer.from('ghijk'), 0, 5, () => {});
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof CopyRowTooLong, 'a partial row beyond the limit fails closed');
});

// ---------------------------------------------------------------- unit: CopyData rebuild through CopyMasker

const maskCfg = (over: Partial<MaskingConfig> = {}): MaskingConfig => ({
  name: 'pii',
  match: {},
  columns: [
    { column: 'customers.ssn', strategy: 'redact' },
    { column: 'customers.score', strategy: 'null' },
  ],
  fields: [],
  detectors: [
    { name: 'email', strategy: 'partial' },
    { name: 'credit_card', strategy: 'partial' },
  ],
  custom: [],
  allow_binary_copy: false,
  ...over,
});

function msg(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
const cstr = (s: string) => Buffer.from(s + '\0');
const copyOut = (format: number, n: number) => {
  const b = Buffer.alloc(3 + 2 * n);
  b[0] = format;
  b.writeInt16BE(n, 1);
  for (let i = 0; i < n; i++) b.writeInt16BE(format, 3 + 2 * i);
  return msg('H', b);
};

/** A CopyMasker wired to fakes; `backend` runs server messages through it the way BackendHandler does. */
function harness(cols: DescribedColumn[], cfg = maskCfg()) {
  const set = new MaskingSet([cfg]);
  const applied: unknown[] = [];
  const session = { masking: () => set, maskContext: { hmacKey: Buffer.alloc(32, 7) }, maskingApplied: (c: unknown) => applied.push(c) } as unknown as Session;
  const tables = new Map([[1000, new Map(cols.map((c) => [c.attnum, { schema: 'public', table: 'customers', column: c.name }]))]]);
  const catalog = {
    describedCached: () => cols,
    describe: async () => cols,
    cached: (oid: number) => tables.get(oid),
    load: async () => {},
    generatedColumns: async () => new Set<number>(),
  } as unknown as CatalogCache;
  const masker = new PgMasker(session, catalog);
  const out: Buffer[] = [];
  const copy = new CopyMasker(session, catalog, masker, (b) => out.push(b), { maxPartialRow: 1 << 20, maxMessage: 4096 });
  const backend = async (m: Buffer) => {
    const type = m[0]!;
    if (!copy.wantsBackend(type)) return void out.push(m);
    const r = copy.onBackend(type, m, 0, m.length);
    if (r === true) out.push(m);
    else if (r !== false) await r;
  };
  const query = (sql: string) => copy.forwarded(0x51, msg('Q', cstr(sql)), 0, 5 + Buffer.byteLength(sql) + 1);
  /** The CopyData payloads sent to the client, concatenated, and the other message types in order. */
  const result = () => ({
    data: Buffer.concat(out.filter((m) => m[0] === 0x64).map((m) => m.subarray(5))).toString(),
    types: out.filter((m) => m[0] !== 0x64).map((m) => String.fromCharCode(m[0]!)).join(''),
  });
  return { copy, out, backend, query, result, masker, applied };
}

const custCols: DescribedColumn[] = ['id', 'email', 'ssn', 'score', 'note'].map((name, i) => ({ name, tableOid: 1000, attnum: i + 1, typeOid: [23, 25, 25, 23, 25][i]! }));
const custText = Buffer.from(
  '1\tjane.doe@example.com\t123-45-6789\t10\tpay 4111 1111 1111 1111\\tthen\\\\done\n' +
    '2\t\\N\t\\N\t\\N\tnothing here\\nat all\n' +
    '3\tbob@mail.example.net\t234-56-7890\t30\tplain\n',
);

t.test('CopyData rebuilt per row whatever the chunking; untouched messages are the same slice', async (t) => {
  const run = async (parts: Buffer[], sql = 'COPY customers TO STDOUT') => {
    const h = harness(custCols);
    h.query(sql);
    await h.backend(copyOut(0, 5));
    for (const p of parts) await h.backend(msg('d', p));
    await h.backend(msg('c', Buffer.alloc(0)));
    await h.backend(msg('C', cstr('COPY 3')));
    await h.backend(msg('Z', Buffer.from('I')));
    return h;
  };
  const whole = (await run([custText])).result();
  t.equal(whole.types, 'HcCZ');
  t.equal(
    whole.data,
    '1\t****@example.com\t****\t\\N\tpay **** **** **** 1111\\tthen\\\\done\n' + '2\t\\N\t\\N\t\\N\tnothing here\\nat all\n' + '3\t****@mail.example.net\t****\t\\N\tplain\n',
  );
  for (let c = 1; c < custText.length; c++) t.equal((await run(chunks(custText, [c]))).result().data, whole.data, `cut at ${c}`);
  for (let seed = 1; seed < 40; seed++) t.equal((await run(chunks(custText, randomCuts(1 + (seed % 9), custText.length, seed)))).result().data, whole.data);
  // A row with nothing to mask (and no column rule hit) goes out as the very same message.
  const h = harness(custCols, maskCfg({ columns: [] }));
  h.query('COPY customers TO STDOUT');
  await h.backend(copyOut(0, 5));
  const plain = msg('d', Buffer.from('2\t\\N\t\\N\t\\N\tnothing here\\nat all\n'));
  await h.backend(plain);
  t.equal(h.out[1], plain, 'same Buffer forwarded');
  // Accounting goes to the statement's counts, flushed at ReadyForQuery.
  const a = await run([custText]);
  a.masker.flush();
  t.same(a.applied, [{ columns: { 'customers.ssn': 2, 'customers.score': 2 }, detectors: { email: 2, credit_card: 1 } }]);
});

t.test('COPY: a value split across CopyData messages is held until its row completes, whatever the pause (fake timers)', async (t) => {
  // Rows are masked whole: a partial row is held (bounded) until its newline or CopyDone, never released by time.
  const secrets = ['jane.doe', '4111 1111', '123-45-6789', 'bob@mail', '234-56-7890'];
  const whole = await (async () => {
    const h = harness(custCols);
    h.query('COPY customers TO STDOUT');
    await h.backend(copyOut(0, 5));
    await h.backend(msg('d', custText));
    await h.backend(msg('c', Buffer.alloc(0)));
    return h.result().data;
  })();
  let bad = 0;
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  try {
    for (let c = 1; c < custText.length; c++) {
      const h = harness(custCols);
      h.query('COPY customers TO STDOUT');
      await h.backend(copyOut(0, 5));
      await h.backend(msg('d', custText.subarray(0, c)));
      mock.timers.tick(60_000);
      const early = h.result().data;
      await h.backend(msg('d', custText.subarray(c)));
      await h.backend(msg('c', Buffer.alloc(0)));
      const done = h.result().data;
      if (!whole.startsWith(early) || secrets.some((x) => early.includes(x)) || done !== whole) bad++;
    }
  } finally {
    mock.timers.reset();
  }
  t.equal(bad, 0, `all ${custText.length - 1} split points: nothing in clear before the row is complete`);
});

t.test('CSV with header: the header passes, quoted fields are re-quoted', async (t) => {
  const h = harness(custCols);
  h.query('select 1; COPY customers TO STDOUT (FORMAT csv, HEADER)');
  await h.backend(msg('C', cstr('SELECT 1')));
  await h.backend(copyOut(0, 5));
  const data = 'id,email,ssn,score,note\n1,"jane.doe@example.com, x",123-45-6789,10,"a\nb ""q"" 4111111111111111"\n2,,,,""\n';
  for (const p of chunks(Buffer.from(data), [30, 31, 60])) await h.backend(msg('d', p));
  await h.backend(msg('c', Buffer.alloc(0)));
  t.equal(h.result().data, 'id,email,ssn,score,note\n1,"****@example.com, x",****,,"a\nb ""q"" ************1111"\n2,,,,""\n');
});

t.test('binary COPY refused; unknown statements refused; the stream goes on', async (t) => {
  const h = harness(custCols);
  h.query('COPY customers TO STDOUT (FORMAT binary)');
  await h.backend(copyOut(1, 5));
  await h.backend(msg('d', Buffer.from('PGCOPY\n\xff\r\n\0')));
  await h.backend(msg('c', Buffer.alloc(0)));
  await h.backend(msg('C', cstr('COPY 3')));
  await h.backend(msg('Z', Buffer.from('I')));
  t.equal(h.result().types, 'EZ');
  t.equal(h.result().data, '');
  t.match(h.out[0]!.toString(), /binary COPY is refused while masking applies \(masking rule set "pii"\)/);
  // A CopyOutResponse Sluice cannot pair with a COPY statement it read.
  const u = harness(custCols);
  u.query('selec garbage');
  await u.backend(copyOut(0, 5));
  await u.backend(msg('d', custText));
  await u.backend(msg('c', Buffer.alloc(0)));
  await u.backend(msg('C', cstr('COPY 3')));
  t.equal(u.result().types, 'E');
  t.equal(u.result().data, '');
  // A Query too large to buffer streams through unread: a COPY in it is refused.
  const big = harness(custCols);
  const sql = 'COPY customers TO STDOUT -- ' + 'x'.repeat(5000);
  t.equal(big.copy.wantsFrontend(0x51, 4 + sql.length + 1), false, 'not buffered');
  big.copy.forwarded(0x51, null, 0, 0);
  await big.backend(copyOut(0, 5));
  await big.backend(msg('d', custText));
  t.equal(big.result().types, 'E');
  t.equal(big.result().data, '');
    // A row whose field count does not match stops the COPY.
  const m = harness(custCols);
  m.query('COPY customers TO STDOUT');
  await m.backend(copyOut(0, 5));
  await m.backend(msg('d', Buffer.from('1\tonly two\n')));
  await m.backend(msg('d', custText));
  await m.backend(msg('c', Buffer.alloc(0)));
  await m.backend(msg('C', cstr('COPY 3')));
  await m.backend(msg('Z', Buffer.from('I')));
  t.equal(m.result().types, 'HEZ');
  t.equal(m.result().data, '');
  // A last row without its newline is masked at CopyDone; a malformed one stops the COPY there.
  const l = harness(custCols);
  l.query('COPY customers TO STDOUT');
  await l.backend(copyOut(0, 5));
  await l.backend(msg('d', Buffer.from('3\tbob@mail.example.net\t234-56')));
  await l.backend(msg('d', Buffer.from('-7890\t30\tplain')));
  await l.backend(msg('c', Buffer.alloc(0)));
  t.equal(l.result().data, '3\t****@mail.example.net\t****\t\\N\tplain');
  t.equal(l.result().types, 'Hc');
  const k = harness(custCols);
  k.query('COPY customers TO STDOUT');
  await k.backend(copyOut(0, 5));
  await k.backend(msg('d', Buffer.from('3\tbob@mail.example.net')));
  await k.backend(msg('c', Buffer.alloc(0)));
  await k.backend(msg('C', cstr('COPY 1')));
  await k.backend(msg('Z', Buffer.from('I')));
  t.equal(k.result().types, 'HEZ');
  t.equal(k.result().data, '');
});

t.test('extended protocol: Execute pairs with its portal; pipelined failures do not shift the pairing', async (t) => {
  const h = harness(custCols);
  const parse = (name: string, sql: string) => h.copy.forwarded(0x50, msg('P', Buffer.concat([cstr(name), cstr(sql), Buffer.alloc(2)])), 0, 5 + name.length + sql.length + 4);
  const bind = (portal: string, stmt: string) => {
    const m = msg('B', Buffer.concat([cstr(portal), cstr(stmt), Buffer.alloc(6)]));
    h.copy.forwarded(0x42, m, 0, m.length);
  };
  const exec = (portal: string) => {
    const m = msg('E', Buffer.concat([cstr(portal), Buffer.alloc(4)]));
    h.copy.forwarded(0x45, h.copy.wantsFrontend(0x45) ? m : null!, 0, m.length);
  };
  // Batch 1: a failing select, then (skipped by the server) a COPY. Batch 2: select, COPY.
  parse('', 'select 1/0');
  bind('', '');
  exec('');
  parse('c', 'COPY customers TO STDOUT');
  bind('', 'c');
  exec('');
  h.copy.forwarded(0x53, null, 0, 0);
  parse('', 'select 2');
  bind('', '');
  exec('');
  bind('p', 'c');
  exec('p');
  h.copy.forwarded(0x53, null, 0, 0);
  for (const m of [msg('1', Buffer.alloc(0)), msg('2', Buffer.alloc(0)), msg('E', Buffer.from('SERROR\0C22012\0Mdivision by zero\0\0')), msg('Z', Buffer.from('I'))]) await h.backend(m);
  for (const m of [msg('1', Buffer.alloc(0)), msg('2', Buffer.alloc(0)), msg('C', cstr('SELECT 1')), msg('2', Buffer.alloc(0)), copyOut(0, 5), msg('d', custText), msg('c', Buffer.alloc(0)), msg('C', cstr('COPY 3')), msg('Z', Buffer.from('I'))]) await h.backend(m);
  t.match(h.result().data, /^1\t\*\*\*\*@example\.com\t\*\*\*\*\t\\N/);
  t.equal(h.result().types, '12EZ12C2HcCZ');
});

// ---------------------------------------------------------------- end to end

const cluster = await withPostgres(t);
await prepareOrders(cluster);

const SECRETS = ['jane.doe@example.com', 'bob@mail.example.net', '4111 1111 1111 1111', '4111111111111111', '5500-0000-0000-0004', '123-45-6789', '234-56-7890', 'jane@corp.example.org', '378282246310005'];
const leaks = (s: string) => SECRETS.filter((x) => s.includes(x));

await cluster.sql(
  String.raw`create table customers (id int primary key, email text, card text, ssn text, score int, note text, memo text, profile jsonb);
   insert into customers values
     (1, 'jane.doe@example.com', '4111 1111 1111 1111', '123-45-6789', 10, E'tab\there, newline\nthere, back\\slash, "quoted", comma, ok', E'reach me:\tjane@corp.example.org\nbye\\', '{"contact": "jane.doe@example.com", "tier": "gold"}'),
     (2, 'bob@mail.example.net', '5500-0000-0000-0004', '234-56-7890', 20, E'semi;colon, \\N literal, \r carriage', 'card 378282246310005 on file, "quote", comma', null),
     (3, null, null, null, null, null, null, null),
     (4, '', '', '', 0, '', E'\\N', '{}');
   create table accounts (id int, email text, ssn text, shout text generated always as (upper(ssn)) stored);
   insert into accounts (id, email, ssn) values (1, 'jane.doe@example.com', '123-45-6789');
   create table t2 (like customers); create table t3 (id int, email text, ssn text, note text, memo text);
   alter table customers owner to app; alter table accounts owner to app; alter table t2 owner to app; alter table t3 owner to app;`,
  'orders',
);

const masking = [
  {
    name: 'pii',
    match: { groups: ['ci'] },
    columns: [
      { column: 'customers.ssn', strategy: 'redact' },
      { column: 'accounts.ssn', strategy: 'redact' },
      { column: 'customers.score', strategy: 'null' },
      { column: 'customers.card', strategy: 'partial' },
    ],
    detectors: ['email', 'credit_card', 'us_ssn'],
  },
];
const targets = { orders: ordersTarget(cluster, { allow: ['group:ci', 'group:dba-breakglass'] }) };
const gw = await startSluice(t, { cluster, config: { masking, targets } });
const ci = await gw.mint('ci-job', ['ci']);
const breakglass = await gw.mint('oncall', ['dba-breakglass']);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-copy-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const direct = (sql: string) => cluster.sql(sql, 'orders');
const textRows = (s: string) => s.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));

/** Minimal independent CSV reader (RFC 4180 quoting), rows of [value | null]. */
function parseCsv(s: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let f = '';
  let quoted = false;
  let inq = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (inq) {
      if (c === '"' && s[i + 1] === '"') (f += '"'), i++;
      else if (c === '"') inq = false;
      else f += c;
    } else if (c === '"') (inq = true), (quoted = true);
    else if (c === ',' || c === '\n') {
      row.push(f === '' && !quoted ? null : f);
      f = '';
      quoted = false;
      if (c === '\n') rows.push(row), (row = []);
    } else f += c;
  }
  return rows;
}

const CUST_COLS = ['id', 'email', 'card', 'ssn', 'score', 'note', 'memo', 'profile'];

t.test('psql \\copy table to file (text): masked, the rest byte-identical, re-importable', async (t) => {
  const file = path.join(tmp, 'cust.txt');
  const r = await psql(gw, ci, ['-c', `\\copy customers to '${file}'`]);
  t.equal(r.code, 0, r.stderr);
  const got = fs.readFileSync(file, 'utf8');
  t.same(leaks(got), [], 'no sensitive value in the file');
  const want = await direct('copy customers to stdout');
  const g = textRows(got);
  const w = textRows(want);
  t.equal(g.length, 4);
  t.equal(w.length, 4);
  const col = (name: string) => CUST_COLS.indexOf(name);
  for (let i = 0; i < 4; i++) {
    t.equal(g[i]!.length, 8, 'eight fields');
    for (const c of ['id', 'note']) t.equal(g[i]![col(c)], w[i]![col(c)], `row ${i + 1} ${c}: byte-identical`);
    t.equal(g[i]![col('score')], '\\N', 'score: null strategy');
  }
  t.same(g.map((x) => x[col('ssn')]), ['****', '****', '\\N', '****'], 'ssn redacted, NULL stays NULL');
  t.same(g.map((x) => x[col('card')]), ['**** **** **** 1111', '****-****-****-0004', '\\N', '****'], 'card partial');
  t.same(g.map((x) => x[col('email')]), ['****@example.com', '****@mail.example.net', '\\N', ''], 'email column: detector');
  t.equal(g[0]![col('memo')], 'reach me:\\t****@corp.example.org\\nbye\\\\', 'masked free text re-escaped');
  t.equal(g[3]![col('memo')], w[3]![col('memo')], 'a "\\N" string is not NULL');
  t.match(g[0]![col('profile')], /"contact": "\*\*\*\*@example\.com"/);
  // Re-import through the gateway: same rows, values readable.
  const imp = await psql(gw, ci, ['-c', 'truncate t2', '-c', `\\copy t2 from '${file}'`]);
  t.equal(imp.code, 0, imp.stderr);
  t.equal((await direct('select count(*) from t2')).trim(), '4');
  t.equal((await direct("select memo = E'reach me:\\t****@corp.example.org\\nbye\\\\' from t2 where id = 1")).trim(), 't');
  t.equal((await direct('select note from customers except select note from t2')).trim(), '', 'notes identical after the round trip');
  t.equal((await direct("select count(*) from t2 where memo = E'\\\\N'")).trim(), '1');
});

t.test('psql \\copy (query) to file csv header: masked per column through the query', async (t) => {
  const file = path.join(tmp, 'q.csv');
  const q = 'select id, email, ssn as s, note, memo from customers order by id';
  const r = await psql(gw, ci, ['-c', `\\copy (${q}) to '${file}' csv header`]);
  t.equal(r.code, 0, r.stderr);
  const got = fs.readFileSync(file, 'utf8');
  t.same(leaks(got), []);
  const g = parseCsv(got);
  const w = parseCsv(await direct(`copy (${q}) to stdout csv header`));
  t.same(g[0], ['id', 'email', 's', 'note', 'memo'], 'header line');
  t.equal(g.length, 5);
  t.same(g.map((x) => x[2]), ['s', '****', '****', null, '****'], 'aliased ssn still redacted');
  for (let i = 0; i < 5; i++) {
    t.equal(g[i]![0], w[i]![0]);
    t.equal(g[i]![3], w[i]![3], `row ${i}: note identical`);
  }
  t.equal(g[2]![4], 'card ***********0005 on file, "quote", comma', 'masked memo keeps its quotes and commas');
  // Unmasked rows are the same bytes as a direct COPY of the same query.
  const gotLines = got.split('\n');
  const wantText = await direct(`copy (${q}) to stdout csv header`);
  t.equal(gotLines[0], wantText.split('\n')[0]);
  const imp = await psql(gw, ci, ['-c', 'truncate t3', '-c', `\\copy t3 from '${file}' csv header`]);
  t.equal(imp.code, 0, imp.stderr);
  t.equal((await direct('select count(*) from t3')).trim(), '4');
  t.equal((await direct("select note = E'tab\\there, newline\\nthere, back\\\\slash, \"quoted\", comma, ok' from t3 where id = 1")).trim(), 't');
  t.equal((await direct("select count(*) from t3 where note = '' and id = 4")).trim(), '1', 'empty string stays empty, not NULL');
});

t.test('generated columns: COPY table leaves them out, the columns still line up', async (t) => {
  const r = await psql(gw, ci, ['-c', 'copy accounts to stdout']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '1\t****@example.com\t****\n');
  // The table changes: the cached description no longer fits, Sluice describes it again.
  await direct("alter table accounts add column extra text default 'x'");
  const r2 = await psql(gw, ci, ['-c', 'copy accounts to stdout']);
  t.equal(r2.code, 0, r2.stderr);
  t.equal(r2.stdout, '1\t****@example.com\t****\tx\n');
});

const connect = async (token: string) => {
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'u', database: 'orders', password: token, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  await c.connect();
  return c;
};
const collect = (c: pg.Client, sql: string) =>
  new Promise<Buffer>((resolve, reject) => {
    const s = c.query(copyTo(sql));
    const parts: Buffer[] = [];
    s.on('data', (b: Buffer) => parts.push(b));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });

t.test('pg-copy-streams to(): text and csv masked; binary refused, the connection goes on', async (t) => {
  const c = await connect(ci);
  t.teardown(() => c.end());
  const text = (await collect(c, 'COPY customers TO STDOUT')).toString();
  t.same(leaks(text), []);
  t.equal(textRows(text).length, 4);
  t.match(text, /^1\t\*\*\*\*@example\.com\t\*\*\*\* \*\*\*\* \*\*\*\* 1111\t\*\*\*\*\t\\N\t/);
  const csv = (await collect(c, "COPY (select id, memo, card from customers order by id) TO STDOUT WITH (FORMAT csv, DELIMITER ';', FORCE_QUOTE *)")).toString();
  t.same(leaks(csv), []);
  t.match(csv, /^"1";"reach me:\t\*\*\*\*@corp\.example\.org\nbye\\";"\*\*\*\* \*\*\*\* \*\*\*\* 1111"\n/);
  const err = await collect(c, 'COPY customers TO STDOUT (FORMAT binary)').catch((e) => e);
  t.equal(err.code, '42501');
  t.match(err.message, /sluice: binary COPY is refused while masking applies \(masking rule set "pii"\); use FORMAT text or csv, or set allow_binary_copy: true/);
  const ok = await c.query('select count(*)::int as n from customers');
  t.equal(ok.rows[0].n, 4, 'same connection still works');
  const again = (await collect(c, 'COPY customers (id, ssn) TO STDOUT')).toString();
  t.equal(again, '1\t****\n2\t****\n3\t\\N\n4\t****\n');
});

t.test('settings and tables Sluice cannot follow: refused, never sent in clear', async (t) => {
  const c = await connect(ci);
  t.teardown(() => c.end());
  await c.query('set standard_conforming_strings = off');
  const scs = await collect(c, 'COPY customers (id, ssn) TO STDOUT').catch((e) => e);
  t.equal(scs.code, '42501');
  t.match(scs.message, /standard_conforming_strings is off/);
  await c.query('set standard_conforming_strings = on');
  t.equal((await collect(c, 'COPY customers (id, ssn) TO STDOUT')).toString().split('\n')[0], '1\t****');
  const enc = await collect(c, "COPY customers TO STDOUT (ENCODING 'SJIS')").catch((e) => e);
  t.match(enc.message, /encoding SJIS is refused/);
  // A temporary table is not visible to Sluice's catalog connection.
  await c.query('create temp table tt as select * from customers');
  const tmpErr = await collect(c, 'COPY tt TO STDOUT').catch((e) => e);
  t.equal(tmpErr.code, '42501');
  t.match(tmpErr.message, /its columns could not be resolved/);
  t.equal((await c.query('select count(*)::int as n from tt')).rows[0].n, 4, 'the session goes on');
});

t.test('psql: binary \\copy refused with a clear message, the session goes on', async (t) => {
  const file = path.join(tmp, 'bin.dat');
  const r = await psql(gw, ci, ['-v', 'ON_ERROR_STOP=0', '-c', `\\copy customers to '${file}' binary`, '-Atc', 'select 42']);
  t.match(r.stderr, /ERROR:\s+sluice: binary COPY is refused while masking applies/);
  t.match(r.stdout, /^42$/m);
  const size = fs.existsSync(file) ? fs.statSync(file).size : 0;
  t.equal(size, 0, 'no data written');
});

t.test('an exempt group gets clear data, binary included', async (t) => {
  const file = path.join(tmp, 'clear.txt');
  const r = await psql(gw, breakglass, ['-c', `\\copy customers to '${file}'`, '-c', `\\copy customers to '${file}.bin' binary`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(fs.readFileSync(file, 'utf8'), await direct('copy customers to stdout'));
  t.ok(fs.statSync(`${file}.bin`).size > 0);
});

t.test('COPY FROM STDIN is not touched', async (t) => {
  const r = await psql(gw, ci, ['-c', 'truncate t3', '-c', 'copy t3 from stdin', '-c', 'select ssn from t3'], { input: '9\tjane.doe@example.com\t123-45-6789\tn\tm\n\\.\n' });
  t.equal(r.code, 0, r.stderr);
  t.equal((await direct('select ssn, email from t3')).trim(), '123-45-6789|jane.doe@example.com', 'stored as sent');
});

/** A bare protocol client (no TLS) for the extended protocol. */
async function rawClient(g: Sluice, token: string) {
  const sock = net.connect(g.port, g.host);
  await new Promise((r) => sock.once('connect', r));
  let buf = Buffer.alloc(0);
  const waiters: (() => void)[] = [];
  sock.on('data', (c) => {
    buf = Buffer.concat([buf, c]);
    waiters.splice(0).forEach((w) => w());
  });
  const read = async (): Promise<{ type: string; body: Buffer }> => {
    while (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) await new Promise<void>((r) => waiters.push(r));
    const len = buf.readInt32BE(1);
    const m = { type: String.fromCharCode(buf[0]!), body: buf.subarray(5, 1 + len) };
    buf = buf.subarray(1 + len);
    return m;
  };
  const params = Buffer.concat([cstr('user'), cstr('u'), cstr('database'), cstr('orders'), Buffer.from([0])]);
  const start = Buffer.alloc(8);
  start.writeInt32BE(8 + params.length, 0);
  start.writeInt32BE(196608, 4);
  sock.write(Buffer.concat([start, params]));
  await read(); // AuthenticationCleartextPassword
  sock.write(msg('p', cstr(token)));
  for (let m = await read(); m.type !== 'Z'; m = await read()) if (m.type === 'E') throw new Error(m.body.toString());
  /** Sends, then reads up to the n-th ReadyForQuery. */
  const exchange = async (msgs: Buffer[], n = 1) => {
    sock.write(Buffer.concat(msgs));
    const got: { type: string; body: Buffer }[] = [];
    for (let m = await read(); ; m = await read()) {
      got.push(m);
      if (m.type === 'Z' && --n === 0) return got;
    }
  };
  return { exchange, close: () => sock.destroy() };
}

t.test('extended protocol through the gateway: prepared COPY, pipelined with a failing statement', async (t) => {
  const policies = [{ name: 'ci', match: { groups: ['ci'] }, rules: [{ deny: { tables: ['t2'] } }, { allow: {} }] }];
  const g2 = await startSluice(t, { cluster, tls: false, config: { masking, targets, policies } });
  const c = await rawClient(g2, await g2.mint('ci-job', ['ci']));
  t.teardown(() => c.close());
  const P = (name: string, sql: string) => msg('P', Buffer.concat([cstr(name), cstr(sql), Buffer.alloc(2)]));
  const Bd = (portal: string, stmt: string) => msg('B', Buffer.concat([cstr(portal), cstr(stmt), Buffer.alloc(6)]));
  const E = (portal: string) => msg('E', Buffer.concat([cstr(portal), Buffer.alloc(4)]));
  const S = msg('S', Buffer.alloc(0));
  const data = (ms: { type: string; body: Buffer }[]) => Buffer.concat(ms.filter((m) => m.type === 'd').map((m) => m.body)).toString();
  const types = (ms: { type: string }[]) => ms.map((m) => m.type).join('').replace(/d+/g, 'd');
  const r1 = await c.exchange([P('cp', 'COPY customers (id, ssn, email) TO STDOUT'), Bd('', 'cp'), E(''), S]);
  t.equal(data(r1), '1\t****\t****@example.com\n2\t****\t****@mail.example.net\n3\t\\N\t\\N\n4\t****\t\n');
  t.equal(types(r1), '12HdcCZ');
  // A failing Execute before a COPY in the same batch (the server skips the COPY); then the COPY in the next batch.
  const r2 = await c.exchange([P('', 'select 1/count(*) from customers where false'), Bd('', ''), E(''), Bd('', 'cp'), E(''), S, Bd('p2', 'cp'), E('p2'), S], 2);
  t.equal(types(r2), '12EZ2HdcCZ');
  t.equal(data(r2), data(r1));
  // Simple and extended requests pipelined in one write.
  const Q = (sql: string) => msg('Q', cstr(sql));
  const r3 = await c.exchange([Q('select 1; copy customers (id, email) to stdout'), Bd('', 'cp'), E(''), S, Q('copy (select ssn from customers order by id) to stdout')], 3);
  t.same(leaks(JSON.stringify(r3.map((m) => m.body.toString()))), []);
  t.equal(data(r3), '1\t****@example.com\n2\t****@mail.example.net\n3\t\\N\n4\t\n' + data(r1) + '****\n****\n\\N\n****\n');
  // Statements the policy denies (Sluice sends a marker the server rejects) do not shift the pairing.
  const r4 = await c.exchange([Q('copy t2 to stdout'), P('', 'copy t2 to stdout'), Bd('', ''), E(''), S, Bd('', 'cp'), E(''), S, Q('copy customers (id, ssn) to stdout')], 4);
  t.equal(types(r4), 'EZEZ2HdcCZHdcCZ');
  t.match(r4[0]!.body.toString(), /statement denied/);
  t.equal(data(r4), data(r1) + '1\t****\n2\t****\n3\t\\N\n4\t****\n');
});

t.test('audit events include COPY, with counts and no values', async (t) => {
  const ev = gw.logs().filter((l) => l.event === 'masking.applied');
  t.ok(ev.some((e) => ((e.columns as Record<string, number>)['customers.ssn'] ?? 0) >= 3), 'ssn counted for COPY');
  t.ok(ev.some((e) => ((e.detectors as Record<string, number>).email ?? 0) > 0));
  t.same(leaks(gw.output()), [], 'nothing sensitive in any log line');
});
