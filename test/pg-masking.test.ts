// In-stream masking on a real server: psql output, node-postgres in text and
// binary, aliases resolved through the catalog, error details, exempt groups.
import t from 'tap';
import pg from 'pg';
import fs from 'node:fs';
import { withPostgres } from './helpers/pg-cluster.js';
import { ordersTarget, prepareOrders, psql, startSluice } from './helpers/sluice.js';

const cluster = await withPostgres(t);
await prepareOrders(cluster);

// PII in many formats; decoys that must survive untouched.
const people = [
  { id: 1, email: 'jane.doe@example.com', card: '4111 1111 1111 1111', ssn: '123-45-6789', phone: '+1 (415) 555-0132', iban: 'DE89 3704 0044 0532 0130 00', note: 'call me at jane@corp.example.org' },
  { id: 2, email: 'bob@mail.example.net', card: '5500-0000-0000-0004', ssn: '234-56-7890', phone: '+44 20 7946 0958', iban: 'GB82WEST12345698765432', note: 'card 378282246310005 on file' },
  { id: 3, email: 'eve+test@example.co.uk', card: '6011000990139424', ssn: '345-67-8901', phone: '415-555-0199', iban: 'FR1420041010050500013M02606', note: 'order 1234567812345678 shipped 2024-01-15, ticket 3f2504e0-4f89-11d3-9a0c-0305e82c3301, v1.2.3' },
];
const secrets = people.flatMap((p) => [p.email, p.card, p.ssn, p.iban, 'jane@corp.example.org', '378282246310005']);
await cluster.sql(
  `create table customers (id int primary key, email text unique, card varchar(40), ssn char(11), phone text, iban text, note text, profile jsonb, score int, born date);
   ${people
     .map(
       (p) =>
         `insert into customers values (${p.id}, '${p.email}', '${p.card}', '${p.ssn}', '${p.phone}', '${p.iban}', '${p.note}', '{"contact": "${p.email}", "tier": "gold"}', ${p.id * 10}, '1980-01-0${p.id}');`,
     )
     .join('\n')}
   alter table customers owner to app;`,
  'orders',
);

const masking = [
  {
    name: 'pii',
    match: { groups: ['ci', 'analysts'] },
    columns: [
      { column: 'customers.ssn', strategy: 'redact' },
      { column: '*.score', strategy: 'null' },
      { column: 'customers.born', strategy: 'redact' },
      { column: 'customers.iban', strategy: 'hash' },
    ],
    detectors: ['credit_card', 'email', 'us_ssn', 'phone', 'iban'],
  },
];
const targets = { orders: ordersTarget(cluster, { allow: ['group:ci', 'group:analysts', 'group:dba-breakglass'] }) };
const gw = await startSluice(t, { cluster, config: { masking, targets } });
const ci = await gw.mint('ci-job', ['ci']);
const breakglass = await gw.mint('oncall', ['dba-breakglass']);

const connect = async (token: string) => {
  const c = new pg.Client({ host: gw.host, port: gw.port, user: 'u', database: 'orders', password: token, ssl: { ca: fs.readFileSync(gw.ca!.cert), servername: 'localhost' } });
  await c.connect();
  return c;
};
const leaks = (s: string) => secrets.filter((x) => s.includes(x));

t.test('psql output contains no sensitive value', async (t) => {
  const r = await psql(gw, ci, ['-c', 'select * from customers order by id', '-c', 'select email as e, note as n from customers', '-c', 'select c.email, upper(c.note) from customers c join customers d on d.id = c.id']);
  t.equal(r.code, 0, r.stderr);
  t.same(leaks(r.stdout), [], 'no secret in the output');
  t.match(r.stdout, /\*\*\*\*@example\.com/, 'email keeps its domain');
  t.match(r.stdout, /\*\*\*\* \*\*\*\* \*\*\*\* 1111/, 'card keeps its last 4');
  t.match(r.stdout, /order 1234567812345678 shipped 2024-01-15, ticket 3f2504e0-4f89-11d3-9a0c-0305e82c3301, v1\.2\.3/, 'decoys untouched');
  t.match(r.stdout, /h:[0-9a-f]{12}/, 'iban hashed');
});

t.test('the hash strategy is stable, so joins and group-bys still work', async (t) => {
  const r = await psql(gw, ci, ['-Atc', 'select iban from customers where id = 1', '-Atc', 'select iban from customers where id = 1']);
  const [a, b] = r.stdout.trim().split('\n');
  t.equal(a, b);
  t.match(a!, /^h:[0-9a-f]{12}$/);
});

t.test('node-postgres text mode: valid, masked rows; aliases are still caught', async (t) => {
  const c = await connect(ci);
  t.teardown(() => c.end());
  const r = await c.query('select id, email as contact, ssn as s, score, born, profile, card from customers order by id');
  t.equal(r.rows.length, 3);
  t.same(leaks(JSON.stringify(r.rows)), []);
  t.equal(r.rows[0].s, '****', 'ssn column rule through an alias');
  t.equal(r.rows[0].score, null, 'non-text column rule gives NULL');
  t.equal(r.rows[0].born, null, 'a date cannot hold "****": NULL keeps the row parseable');
  t.equal(typeof r.rows[0].profile, 'object', 'jsonb still parses');
  t.equal(r.rows[0].profile.tier, 'gold');
  t.match(r.rows[0].profile.contact, /^\*\*\*\*@example\.com$/);
  const p = await c.query({ text: 'select email from customers where id = $1', values: [2] });
  t.equal(p.rows[0].email, '****@mail.example.net', 'extended protocol');
});

t.test('node-postgres binary mode: rows parse and are masked', async (t) => {
  const c = await connect(ci);
  t.teardown(() => c.end());
  const r = await c.query({ text: 'select id, email, ssn, score, profile::text as p, card from customers order by id', values: [], binary: true });
  t.equal(r.rows.length, 3);
  const asText = JSON.stringify(r.rows, (_k, v) => (Buffer.isBuffer(v) ? v.toString() : v));
  t.same(leaks(asText), []);
  t.equal(r.rows[0].score, null);
});

t.test('error details are masked', async (t) => {
  const c = await connect(ci);
  t.teardown(() => c.end());
  const err = await c.query("insert into customers (id, email) values (99, 'jane.doe@example.com')").catch((e) => e);
  t.equal(err.code, '23505');
  t.notMatch(err.detail, /jane\.doe/);
  t.match(err.detail, /already exists/);
  const n = await c.query("do $$ begin raise notice 'contact %', 'bob@mail.example.net'; end $$").then(
    () => 'ok',
    (e) => e,
  );
  t.equal(n, 'ok');
});

t.test('an exempt group sees clear text', async (t) => {
  const r = await psql(gw, breakglass, ['-Atc', 'select email, card, ssn from customers where id = 1']);
  t.equal(r.stdout.trim(), 'jane.doe@example.com|4111 1111 1111 1111|123-45-6789');
});

t.test('audit events count masked values, never the values', async (t) => {
  const ev = gw.logs().filter((l) => l.event === 'masking.applied');
  t.ok(ev.length > 0);
  const all = JSON.stringify(ev);
  t.same(leaks(all), []);
  t.ok(ev.some((e) => (e.detectors as Record<string, number>).email > 0));
  t.ok(ev.some((e) => (e.columns as Record<string, number>)['customers.ssn'] > 0));
  t.same(leaks(gw.output()), [], 'nothing in any log line');
});
