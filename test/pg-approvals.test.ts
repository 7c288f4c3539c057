// Just-in-time approvals, the admin API and the kill switch, on a real server
// with real psql, pgbench and node-postgres clients, driven through the CLI.
import t from 'tap';
import pg from 'pg';
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from 'jose';
import { withPostgres } from './helpers/pg-cluster.js';
import { BIN, connString, ordersTarget, prepareOrders, psql, startSluice, TARGET_PASSWORD, type Sluice } from './helpers/sluice.js';

const run = promisify(execFile);
const cluster = await withPostgres(t);
await prepareOrders(cluster);
await cluster.sql(
  `create table customers (id int primary key, email text);
   insert into customers select g, 'user' || g || '@example.com' from generate_series(1, 50) g;
   alter table customers owner to app;`,
  'orders',
);

// A webhook receiver: keeps every delivery with its headers.
const hooks: { headers: http.IncomingHttpHeaders; body: string }[] = [];
const slack: { headers: http.IncomingHttpHeaders; body: string }[] = [];
const HOOK_SECRET = 'whsec-test-1234567890';
const receiver = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    (req.url === '/slack' ? slack : hooks).push({ headers: req.headers, body });
    res.end('ok');
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
t.teardown(() => receiver.close());
const hookPort = (receiver.address() as AddressInfo).port;

const approvals = (extra: Record<string, unknown> = {}) => ({
  approvers: ['dba-leads'],
  timeout: '60s',
  webhooks: [
    { url: `http://127.0.0.1:${hookPort}/sluice`, secret: { env: 'HOOK_SECRET' }, retries: 1 },
    { url: `http://127.0.0.1:${hookPort}/slack`, format: 'slack', retries: 1 },
  ],
  ...extra,
});
// An external issuer (keys in a JWKS file). Its name defaults to its URL's host: "ext".
const EXT_ISS = 'https://ext';
const extDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ext-'));
t.teardown(() => fs.rmSync(extDir, { recursive: true, force: true }));
const extKeys = await generateKeyPair('RS256', { extractable: true });
const extJwks = path.join(extDir, 'jwks.json');
fs.writeFileSync(extJwks, JSON.stringify({ keys: [{ ...(await exportJWK(extKeys.publicKey)), kid: 'x1', alg: 'RS256' }] }));
/** A token of the external issuer. */
function extToken(sub: string, groups: string[], claims: JWTPayload = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: EXT_ISS, aud: 'sluice', sub, groups, iat: now, exp: now + 600, ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'x1' }).sign(extKeys.privateKey);
}

const config = (extra: Record<string, unknown> = {}, ext: Record<string, unknown> = {}) => ({
  identity: { issuers: [{ issuer: EXT_ISS, audience: 'sluice', jwks_file: extJwks, algorithms: ['RS256'], ...ext }] },
  targets: { orders: ordersTarget(cluster, { allow: ['group:ci', 'group:dba-leads', 'group:etl'] }) },
  policies: [
    {
      name: 'ops',
      match: { groups: ['ci', 'dba-leads', 'etl'] },
      rules: [
        { allow: { changes_state: false } },
        { allow: { kind: ['begin', 'commit', 'rollback', 'set'] } },
        { review: { name: 'customers-writes', kind: ['delete', 'update'], tables: ['customers'], message: 'changes to customers need approval' } },
      ],
    },
  ],
  approvals: approvals(extra),
  admin: { groups: ['sluice-admins'] },
});

const gw = await startSluice(t, { cluster, admin: true, config: config(), env: { HOOK_SECRET } });
const ci = await gw.mint('ci-job', ['ci']);
const lead1 = await gw.mint('lead-1', ['dba-leads']);
const lead2 = await gw.mint('lead-2', ['dba-leads', 'ci']);
const admin = await gw.mint('admin-1', ['sluice-admins']);

function cli(args: string[], token: string) {
  return run(process.execPath, [BIN, ...args, '--config', gw.configPath, '--admin', gw.adminUrl!, '--token', token]).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

async function api(method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(gw.adminUrl + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json: any = text;
  try {
    json = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: res.status, body: json, text };
}

/** Waits for the next pending approval request and returns it. */
async function nextPending(after = new Set<string>()): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const r = await api('GET', '/api/approvals', admin);
    const p = (r.body.approvals as any[]).find((a) => a.status === 'pending' && !after.has(a.id));
    if (p) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no approval request appeared');
}

async function customerExists(id: number): Promise<boolean> {
  return (await cluster.sql(`select count(*) from customers where id = ${id}`, 'orders')).trim() === '1';
}

function client(token: string): pg.Client {
  return new pg.Client({ host: gw.host, port: gw.port, database: 'orders', user: 'x', password: token, ssl: { ca: readFileSync(gw.ca!.cert, 'utf8'), servername: 'localhost' } });
}

t.test('psql: a held DELETE approved by a second identity through the CLI returns DELETE 1', async (t) => {
  const p = psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 1']);
  const req = await nextPending();
  t.equal(req.sub, 'ci-job');
  t.equal(req.target, 'orders');
  t.equal(req.rule, 'customers-writes');
  t.equal(req.statement, 'DELETE FROM customers WHERE id = 1');
  t.ok(Date.parse(req.expires_at) > Date.parse(req.asked_at), 'has an expiry');
  t.ok(await customerExists(1), 'not run while waiting');

  const list = await cli(['approvals', 'list'], lead1);
  t.equal(list.code, 0);
  t.match(list.stdout, new RegExp(`${req.id}\\s+pending\\s+ci-job\\s+orders\\s+customers-writes`));

  const ok = await cli(['approvals', 'approve', req.id, '--reason', 'ticket OPS-42'], lead1);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, `approved ${req.id}`);
  const r = await p;
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^DELETE 1$/m);
  t.match(r.stderr, new RegExp(`NOTICE:\\s+waiting for approval ${req.id} \\(rule customers-writes\\): ask an approver to run: sluice approvals approve ${req.id}`));
  t.notOk(await customerExists(1), 'row deleted after approval');

  await gw.waitForLog((l) => l.approval === req.id && l.event === 'approval.approved');
  const ev = gw.logs().filter((l) => l.approval === req.id).map((l) => l.event);
  t.ok(ev.includes('approval.requested') && ev.includes('approval.approved'), `audit events: ${ev.join(', ')}`);

  // The recording has the request and the outcome next to the statement.
  let replay = '';
  for (let i = 0; i < 20 && !replay.includes('approved by'); i++) {
    replay = (await run(process.execPath, [BIN, 'replay', req.session, '--config', gw.configPath])).stdout;
    if (!replay.includes('approved by')) await new Promise((r) => setTimeout(r, 200));
  }
  t.match(replay, new RegExp(`> DELETE FROM customers WHERE id = 1\\n(.*\\n)*\\s+approval ${req.id} requested \\(rule customers-writes\\)`));
  t.match(replay, new RegExp(`approval ${req.id} approved by lead-1 after \\d+\\.\\d s`));
});

t.test('node-postgres: a denial carries the reason and the session goes on', async (t) => {
  const c = client(ci);
  await c.connect();
  t.teardown(() => c.end());
  const notices: string[] = [];
  c.on('notice', (n) => notices.push(n.message));
  const q = c.query('DELETE FROM customers WHERE id = 2').then(
    () => null,
    (e: Error & { code?: string }) => e,
  );
  const req = await nextPending();
  const d = await cli(['approvals', 'deny', req.id, '--reason', 'not during the freeze'], lead1);
  t.equal(d.code, 0, d.stderr);
  const err = await q;
  t.ok(err, 'the query failed');
  t.match(err!.message, /statement denied by approver lead-1: not during the freeze/);
  t.equal(err!.code, '42501');
  t.match(notices.join('\n'), /waiting for approval/);
  t.ok(await customerExists(2));
  const again = await c.query('select count(*)::int as n from customers');
  t.equal(again.rows[0].n, 49, 'same session keeps working');
});

t.test('extended protocol: a parameterised DELETE waits, then runs as a slow query', async (t) => {
  const c = client(ci);
  await c.connect();
  t.teardown(() => c.end());
  const q = c.query('DELETE FROM customers WHERE id = $1', [3]);
  const req = await nextPending();
  t.equal(req.statement, 'DELETE FROM customers WHERE id = $1');
  const r = await api('POST', `/api/approvals/${req.id}/approve`, lead1, { reason: 'fine' });
  t.equal(r.status, 200);
  t.equal((await q).rowCount, 1);
  t.notOk(await customerExists(3));
});

t.test('self-approval is refused; another approver then approves', async (t) => {
  const p = psql(gw, lead2, ['-c', 'DELETE FROM customers WHERE id = 4']);
  const req = await nextPending();
  t.equal(req.sub, 'lead-2');
  const self = await cli(['approvals', 'approve', req.id], lead2);
  t.equal(self.code, 1);
  t.match(self.stderr, /self-approval is refused/);
  const notApprover = await cli(['approvals', 'approve', req.id], ci);
  t.equal(notApprover.code, 1);
  t.match(notApprover.stderr, /may not use the admin API|not an approver/);
  t.ok(await customerExists(4));
  t.equal((await cli(['approvals', 'approve', req.id], lead1)).code, 0);
  t.match((await p).stdout, /DELETE 1/);
});

t.test('Ctrl-C in psql withdraws the request and the client gets 57014', async (t) => {
  const p = spawn('psql', ['-X', connString(gw), '-c', 'DELETE FROM customers WHERE id = 5'], { env: { ...process.env, PGPASSWORD: ci }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (c) => (stderr += c));
  const req = await nextPending();
  for (let i = 0; i < 100 && !stderr.includes('waiting for approval'); i++) await new Promise((r) => setTimeout(r, 50));
  p.kill('SIGINT');
  const code = await new Promise((r) => p.on('close', r));
  t.equal(code, 1);
  t.match(stderr, /ERROR:\s+sluice: approval \w+ withdrawn \(cancelled by the client\); the statement was not run/);
  const v = await api('GET', `/api/approvals/${req.id}`, admin);
  t.equal(v.body.status, 'withdrawn');
  t.ok(await customerExists(5));
  const late = await cli(['approvals', 'approve', req.id], lead1);
  t.equal(late.code, 1);
  t.match(late.stderr, /already withdrawn/);
});

t.test('fingerprint scope: the same query shape runs without asking again', async (t) => {
  const p = psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 6']);
  const req = await nextPending();
  t.ok(req.fingerprint, 'request carries a fingerprint');
  t.equal((await cli(['approvals', 'approve', req.id, '--scope', 'fingerprint'], lead1)).code, 0);
  t.match((await p).stdout, /DELETE 1/);
  const second = await psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 7']);
  t.match(second.stdout, /DELETE 1/, 'another literal, same shape: approved by the standing grant');
  t.notMatch(second.stderr, /waiting for approval/);
  const other = psql(gw, ci, ['-c', 'UPDATE customers SET email = NULL WHERE id = 8']);
  const req2 = await nextPending(new Set([req.id]));
  t.match(req2.statement, /^UPDATE/, 'a different shape still asks');
  await cli(['approvals', 'deny', req2.id], lead1);
  t.match((await other).stderr, /denied by approver lead-1/);
});

t.test('min_approvals and timeout', async (t) => {
  await gw.reload(config({ min_approvals: 2, timeout: '2s' }));
  t.teardown(() => gw.reload(config()));
  const c = client(ci);
  await c.connect();
  t.teardown(() => c.end());

  // Times out: a clear error, and the session goes on.
  const started = Date.now();
  // (Shapes differ from the earlier tests: ci-job holds a fingerprint grant for `... WHERE id = N`.)
  const err = await c.query("DELETE FROM customers WHERE email = 'user9@example.com'").then(
    () => null,
    (e: Error & { code?: string }) => e,
  );
  t.ok(err);
  t.match(err!.message, /approval \w+ timed out after 2 s without a decision; the statement was not run/);
  t.equal(err!.code, '57014');
  t.ok(Date.now() - started >= 1900);
  t.ok(await customerExists(9));
  t.equal((await c.query('select 1 as x')).rows[0].x, 1);

  await gw.reload(config({ min_approvals: 2, timeout: '30s' }));
  const q = c.query('DELETE FROM customers WHERE id = 10 AND email IS NOT NULL');
  const req = await nextPending();
  t.equal(req.min_approvals, 2);
  const first = await cli(['approvals', 'approve', req.id], lead1);
  t.match(first.stdout, /1 of 2 approvers so far/);
  const twice = await cli(['approvals', 'approve', req.id], lead1);
  t.match(twice.stderr, /already approved/);
  t.ok(await customerExists(10), 'one approval is not enough');
  const lead3 = await gw.mint('lead-3', ['dba-leads']);
  t.equal((await cli(['approvals', 'approve', req.id], lead3)).code, 0);
  t.equal((await q).rowCount, 1);
});

t.test('webhooks: signed JSON for requests and decisions', async (t) => {
  const requested = hooks.filter((h) => h.headers['x-sluice-event'] === 'approval.requested');
  t.ok(requested.length >= 5, `got ${requested.length} request webhooks`);
  for (const h of hooks) {
    const ts = h.headers['x-sluice-timestamp'] as string;
    const sig = h.headers['x-sluice-signature'] as string;
    const want = 'v1=' + createHmac('sha256', HOOK_SECRET).update(`${ts}.${h.body}`).digest('hex');
    t.equal(sig, want, 'signature verifies');
    t.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 300, 'fresh timestamp');
  }
  const body = JSON.parse(requested[0]!.body);
  t.equal(body.event, 'approval.requested');
  t.equal(body.approval.statement, 'DELETE FROM customers WHERE id = 1');
  t.equal(body.approval.sub, 'ci-job');
  t.ok(hooks.some((h) => h.headers['x-sluice-event'] === 'approval.denied' && JSON.parse(h.body).approval.reason === 'not during the freeze'));
  t.notOk(hooks.some((h) => h.body.includes(TARGET_PASSWORD)));

  // The Slack-compatible format: text plus a mrkdwn block, unsigned without a secret.
  const s0 = JSON.parse(slack.find((h) => h.headers['x-sluice-event'] === 'approval.requested')!.body);
  t.match(s0.text, /\*ci-job\* asks to run a statement on \*orders\* \(rule customers-writes\)/);
  t.match(s0.text, /sluice approvals approve \w+/);
  t.equal(s0.blocks[0].type, 'section');
  t.notOk(slack[0]!.headers['x-sluice-signature']);
});

t.test('admin API: authentication, roles, health and metrics', async (t) => {
  t.equal((await api('GET', '/healthz')).status, 200);
  const none = await api('GET', '/api/sessions');
  t.equal(none.status, 401);
  t.match(none.body.message, /missing token/);
  const bad = await api('GET', '/api/sessions', 'not-a-jwt');
  t.equal(bad.status, 401);
  const plain = await api('GET', '/api/sessions', ci);
  t.equal(plain.status, 403);
  t.match(plain.body.message, /admin\.groups/);
  const approverRevoke = await api('POST', '/api/revocations', lead1, { sub: 'x' });
  t.equal(approverRevoke.status, 403);

  const m = await api('GET', '/metrics', admin);
  t.equal(m.status, 200);
  // Prometheus text format: comments, or `name{labels} value`.
  const lines = m.text.split('\n').filter((l) => l !== '');
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?([0-9.e+-]+|NaN|\+Inf|-Inf)$/;
  const bad2 = lines.filter((l) => !l.startsWith('# HELP ') && !l.startsWith('# TYPE ') && !sample.test(l));
  t.same(bad2, [], 'every line parses');
  t.match(m.text, /sluice_statements_total\{decision="review"\} [1-9]/);
  t.match(m.text, /sluice_approval_wait_seconds_count\{outcome="approved"\} [1-9]/);
  t.match(m.text, /sluice_sessions_opened_total\{protocol="postgres"\} [1-9]/);
  t.equal((await api('GET', '/metrics')).status, 401, 'metrics need a token by default');
});

t.test('admin kill: one session ends with a message, others go on', async (t) => {
  const a = client(ci);
  const b = client(ci);
  await a.connect();
  await b.connect();
  t.teardown(() => b.end());
  const errors: Error[] = [];
  a.on('error', (e) => errors.push(e));
  const sessions = (await api('GET', '/api/sessions?live=1', admin)).body.sessions as any[];
  t.ok(sessions.length >= 2);
  const list = await cli(['sessions', 'list', '--live'], admin);
  t.match(list.stdout, /SESSION\s+IDENTITY/);
  // The newest live session is `b`; kill the other one (a), found by elimination.
  const aPid = (await a.query('select 1')).rowCount; // ensure both are live
  void aPid;
  const before = new Set(sessions.map((s) => s.id));
  const c = client(ci);
  await c.connect();
  const after = ((await api('GET', '/api/sessions?live=1', admin)).body.sessions as any[]).map((s) => s.id);
  const cId = after.find((id) => !before.has(id));
  const cErrors: Error[] = [];
  c.on('error', (e) => cErrors.push(e));
  const k = await cli(['sessions', 'kill', cId, '--reason', 'incident 7'], admin);
  t.equal(k.code, 0, k.stderr);
  const fail = await c.query('select 1').then(() => null, (e: Error) => e);
  t.ok(fail || cErrors.length, 'killed session fails');
  t.match(String(cErrors[0]?.message ?? fail?.message), /session killed by admin-1: incident 7|Connection terminated/);
  t.equal((await b.query('select 1 as x')).rows[0].x, 1, 'other session untouched');
  await a.end();
});

t.test('external tokens get no admin or approver rights unless their issuer maps them', async (t) => {
  // An external token that carries Sluice's admin and approver group names.
  const mallory = await extToken('mallory', ['sluice-admins', 'dba-leads']);
  const r = await api('GET', '/api/sessions', mallory);
  t.equal(r.status, 403);
  t.equal(r.body.message, "mallory (ext) may not use the admin API: tokens of issuer ext get admin or approver rights only from identity.issuers[ext].admin_groups (none configured) or identity.issuers[ext].approver_groups (none configured); admin.groups and approvals.approvers apply to Sluice's own issuer only");
  t.equal((await api('POST', '/api/revocations', mallory, { sub: 'ci-job', issuer: 'sluice' })).status, 403, 'cannot revoke');
  t.equal((await api('GET', '/metrics', mallory)).status, 403, 'nor read metrics');

  const p = psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 20 AND id > 0']);
  const req = await nextPending();
  const self = await cli(['approvals', 'approve', req.id], mallory);
  t.equal(self.code, 1);
  t.match(self.stderr, /mallory \(ext\) may not use the admin API/);
  t.ok(await customerExists(20), 'not approved');
  t.equal((await cli(['approvals', 'deny', req.id, '--reason', 'cleanup'], lead1)).code, 0);
  t.match((await p).stderr, /denied by approver lead-1: cleanup/);
});

t.test('an external issuer approves only through its approver_groups; self-approval and grants compare issuer and sub', async (t) => {
  await gw.reload(config({}, { approver_groups: ['ext-approvers'] }));
  t.teardown(() => gw.reload(config()));
  const extLead = await extToken('ext-lead', ['ext-approvers']);
  const notMapped = await extToken('ext-other', ['dba-leads']);
  const extCiJob = await extToken('ci-job', ['ci', 'ext-approvers']);
  t.equal((await api('GET', '/api/approvals', extLead)).status, 200, 'a mapped approver may read approvals');
  const rev = await api('POST', '/api/revocations', extLead, { sub: 'x', issuer: 'ext' });
  t.equal(rev.status, 403);
  t.equal(rev.body.message, 'revocations needs the admin role (identity.issuers[ext].admin_groups)');
  t.equal((await api('GET', '/api/approvals', notMapped)).status, 403, "Sluice's approver group name means nothing from another issuer");

  // Sluice's ci-job asks (a shape no standing grant covers); the external issuer's "ci-job" is taken as the same person.
  const p = psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 21 AND id > 0']);
  const req = await nextPending();
  const self = await cli(['approvals', 'approve', req.id], extCiJob);
  t.equal(self.code, 1);
  t.match(self.stderr, new RegExp(`self-approval is refused: approval ${req.id} was asked by ci-job \\(the same subject under issuer ext counts as the same person\\)`));
  t.ok(await customerExists(21));
  const ok = await cli(['approvals', 'approve', req.id, '--reason', 'external lead'], extLead);
  t.equal(ok.code, 0, ok.stderr);
  t.match((await p).stdout, /DELETE 1/);
  const view = (await api('GET', `/api/approvals/${req.id}`, admin)).body;
  t.same(view.votes.map((v: any) => [v.sub, v.issuer]), [['ext-lead', 'ext']]);
  t.equal(view.issuer, 'sluice');
  await gw.waitForLog((l) => l.approval === req.id && l.event === 'approval.approved' && Array.isArray(l.approvers) && l.approvers[0] === 'ext-lead (ext)');

  // Sluice's ci-job holds a standing fingerprint approval for `DELETE ... WHERE id = N` (earlier
  // test); the external issuer's ci-job does not share it.
  const own = await psql(gw, ci, ['-c', 'DELETE FROM customers WHERE id = 22']);
  t.match(own.stdout, /DELETE 1/, "Sluice's ci-job: the grant answers");
  t.notMatch(own.stderr, /waiting for approval/);
  const before = new Set<string>((await api('GET', '/api/approvals?all=1', admin)).body.approvals.map((a: any) => a.id));
  const other = psql(gw, extCiJob, ['-c', 'DELETE FROM customers WHERE id = 23']);
  const asked = await nextPending(before);
  t.equal(asked.sub, 'ci-job');
  t.equal(asked.issuer, 'ext');
  t.ok(await customerExists(23), "the external ci-job's statement waits");
  await cli(['approvals', 'deny', asked.id], lead1);
  t.match((await other).stderr, /denied by approver lead-1/);
});

t.test('revocations name their issuer; a bare --sub is refused when several issuers could carry it', async (t) => {
  const own = await gw.mint('shared-sub', ['ci']);
  const ext = await extToken('shared-sub', ['ci']);
  const a = client(own);
  const b = client(ext);
  await a.connect();
  await b.connect();
  const bErrors: Error[] = [];
  b.on('error', (e) => bErrors.push(e));

  const amb = await cli(['revoke', '--sub', 'shared-sub'], admin);
  t.equal(amb.code, 1);
  t.match(amb.stderr, /sub "shared-sub" is ambiguous: tokens of several issuers \(sluice, ext\) can carry it; name one with "issuer" \(sluice revoke --issuer NAME\), or "any" for every issuer/);
  t.equal((await a.query('select 1 as x')).rows[0].x, 1, 'nothing was revoked');

  const r = await cli(['revoke', '--sub', 'shared-sub', '--issuer', 'ext', '--reason', 'ext incident'], admin);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^revoked sub shared-sub of issuer ext: 1 live session\(s\) closed; new logins are refused$/m);
  const fail = await b.query('select 1').then(() => null, (e: Error) => e);
  t.match(String(bErrors[0]?.message ?? fail?.message), /identity "shared-sub" of issuer ext was revoked by admin-1: ext incident|Connection terminated/);
  t.equal((await a.query('select 1 as x')).rows[0].x, 1, "Sluice's shared-sub keeps its session");
  t.match((await psql(gw, ext, ['-Atc', 'select 1'])).stderr, /FATAL:  identity "shared-sub" of issuer ext was revoked: ext incident; ask a Sluice admin/);
  t.equal((await psql(gw, own, ['-Atc', 'select 1'])).code, 0, "Sluice's shared-sub still logs in");
  t.match((await cli(['revoke', '--list'], admin)).stdout, /sub\s+shared-sub\s+ext\s+lifted by hand\s+admin-1/);

  const wrong = await cli(['revoke', '--lift', '--sub', 'shared-sub', '--issuer', 'sluice'], admin);
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /sub shared-sub of issuer sluice is not revoked \(it is revoked for issuer ext: name that one\)/);
  const lift = await cli(['revoke', '--lift', '--sub', 'shared-sub', '--issuer', 'ext'], admin);
  t.equal(lift.code, 0, lift.stderr);
  t.match(lift.stdout, /sub shared-sub of issuer ext is no longer revoked/);
  t.equal((await psql(gw, ext, ['-Atc', 'select 1'])).code, 0, 'logs in again');

  // "any": that subject from every issuer.
  const c = client(ext);
  await c.connect();
  c.on('error', () => {});
  a.on('error', () => {});
  const all = await cli(['revoke', '--sub', 'shared-sub', '--issuer', 'any'], admin);
  t.match(all.stdout, /revoked sub shared-sub of every issuer: 2 live session\(s\) closed/);
  t.match((await psql(gw, own, ['-Atc', 'select 1'])).stderr, /identity "shared-sub" was revoked/);
  t.equal((await cli(['revoke', '--lift', '--sub', 'shared-sub', '--issuer', 'any'], admin)).code, 0);
  t.equal((await psql(gw, own, ['-Atc', 'select 1'])).code, 0);
  await Promise.all([a, b, c].map((x) => x.end().catch(() => {})));
});

t.test('admin API: malformed input anywhere is a 4xx, never a 500', async (t) => {
  const long = 'a'.repeat(300);
  const huge = 'b'.repeat(3000);
  // [method, path, body, also fine: a 2xx for input the route ignores]
  const cases: [string, string, unknown?, true?][] = [
    ['GET', '/api/sessions/%E0%A4%A'],
    ['GET', '/api/sessions/%'],
    ['GET', '/api/sessions/%ZZ'],
    ['GET', '/api/sessions/%00'],
    ['GET', `/api/sessions/${long}`],
    ['GET', `/api/sessions/${huge}`],
    ['DELETE', '/api/sessions/%E0%A4%A'],
    ['DELETE', `/api/sessions/${huge}`],
    ['DELETE', '/api/sessions/x', '{'],
    ['GET', '/api/sessions?since=yesterday-ish'],
    ['GET', '/api/sessions?since=%E0%A4%A'],
    ['GET', '/api/sessions?since=99999999999999999999d'],
    ['GET', '/api/sessions?limit=-1'],
    ['GET', '/api/sessions?limit=abc'],
    ['GET', '/api/sessions?limit=1e400'],
    ['GET', '/api/approvals?all=maybe'],
    ['GET', '/api/approvals?all=%E0%A4%A'],
    ['GET', '/api/sessions?live=%E0%A4%A'],
    ['GET', '/api/approvals/%E0%A4%A'],
    ['GET', '/api/approvals/%C0%AF'],
    ['POST', '/api/approvals/%E0%A4%A/approve'],
    ['POST', '/api/approvals/x/approve', '{'],
    ['POST', '/api/approvals/x/approve', '[1]'],
    ['POST', '/api/approvals/x/approve', { scope: 'forever' }],
    ['POST', '/api/approvals/x/approve', { reason: 5 }],
    ['POST', '/api/approvals/x/deny', 'null'],
    ['POST', '/api/approvals/%/deny'],
    ['GET', '/api/revocations/%E0%A4%A'],
    ['GET', '/api/revocations?%E0%A4%A=%', undefined, true],
    ['POST', '/api/revocations', '{'],
    ['POST', '/api/revocations', '"sub"'],
    ['POST', '/api/revocations', {}],
    ['POST', '/api/revocations', { sub: 5 }],
    ['POST', '/api/revocations', { sub: 'x\u0000y', issuer: 'sluice' }],
    ['POST', '/api/revocations', { sub: huge, issuer: 'sluice' }],
    ['POST', '/api/revocations', { sub: 'é'.repeat(1000), issuer: 'sluice' }],
    ['POST', '/api/revocations', { jti: 'é'.repeat(1000) }],
    ['POST', '/api/revocations', { sub: 'x', issuer: 'nope' }],
    ['POST', '/api/revocations', { jti: 'x', issuer: 'ext' }],
    ['POST', '/api/revocations', { sub: 'x', issuer: 'sluice', until: 'whenever' }],
    ['POST', '/api/revocations', 'x'.repeat(70_000)],
    ['DELETE', '/api/revocations/sub/%E0%A4%A'],
    ['DELETE', '/api/revocations/jti/%'],
    ['DELETE', `/api/revocations/sub/${huge}?issuer=sluice`],
    ['DELETE', '/api/revocations/sub/%00?issuer=sluice'],
    ['DELETE', '/api/revocations/sub/x?issuer=%E0%A4%A'],
    ['DELETE', '/api/revocations/jti/x?issuer=ext'],
    ['DELETE', '/api/revocations/sub/x/extra?issuer=sluice'],
    ['GET', '/api/%E0%A4%A'],
    ['PUT', '/api/sessions'],
    ['GET', '/api/sessions/x/%E0%A4%A/y'],
  ];
  for (const [method, p, body, ignored] of cases) {
    const res = await fetch(gw.adminUrl + p, {
      method,
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    t.ok((res.status >= 400 || (ignored && res.status < 300)) && res.status < 500, `${method} ${p.slice(0, 60)} ${body === undefined ? '' : String(typeof body === 'string' ? body : JSON.stringify(body)).slice(0, 40)}: ${res.status} ${text.trim().slice(0, 160)}`);
  }
  // Every route the API lists gets malformed input here (a new route without a case fails this).
  const listed = ((await api('GET', '/api', admin)).body.endpoints as string[]).filter((e) => e.includes(' /api/'));
  for (const e of listed) {
    const [m, pattern] = e.split(' ') as [string, string];
    const re = new RegExp(`^${pattern.split('?')[0]!.replace(/:[a-z]+/g, '[^/?]+')}(\\?|$)`);
    t.ok(cases.some(([cm, cp]) => cm === m && re.test(cp)), `malformed input is tried on ${m} ${pattern}`);
  }
  const issue = await api('GET', '/api/sessions/%E0%A4%A', admin);
  t.equal(issue.status, 400);
  t.equal(issue.body.message, 'malformed percent-encoding in the URL path: "%E0%A4%A"');
  t.notOk(gw.logs().some((l) => l.event === 'admin.error'), 'no request failed inside the gateway');
  t.equal((await api('GET', '/healthz')).status, 200);
});

t.test('kill switch: revoking a pgbench identity cuts it within a second; others go on; it persists', async (t) => {
  await cluster.sql('create table if not exists bench (id int primary key, v int); insert into bench values (1, 0) on conflict do nothing; alter table bench owner to app;', 'orders');
  const etl = await gw.mint('nightly-etl', ['etl']);
  const other = client(ci);
  await other.connect();
  other.on('error', () => {}); // the restart below ends it

  const script = '/tmp/sluice-approvals-bench.sql';
  writeFileSync(script, 'SELECT v FROM bench WHERE id = 1;\n');
  const bench: ChildProcess = spawn('pgbench', ['-n', '-f', script, '-c', '2', '-T', '60', connString(gw, { user: 'etl' })], { env: { ...process.env, PGPASSWORD: etl }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  bench.stdout!.on('data', (c) => (out += c));
  bench.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<number>((r) => bench.on('close', (code) => r(code ?? -1)));
  // Wait until both pgbench sessions are live.
  for (let i = 0; i < 100; i++) {
    const s = (await api('GET', '/api/sessions?live=1&sub=nightly-etl', admin)).body.sessions as any[];
    if (s.length === 2 && s.every((x) => x.statements > 0)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const r = await cli(['revoke', '--sub', 'nightly-etl', '--issuer', 'sluice', '--reason', 'leaked token'], admin);
  const revokedAt = Date.now();
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /revoked sub nightly-etl of issuer sluice: 2 live session\(s\) closed/);
  const code = await exited;
  const cutMs = Date.now() - revokedAt;
  t.ok(cutMs < 1000, `pgbench ended ${cutMs} ms after the revocation`);
  t.not(code, 0);
  t.match(out, /identity "nightly-etl" of issuer sluice was revoked by admin-1: leaked token/);
  t.equal((await other.query('select 1 as x')).rows[0].x, 1, "another identity's session keeps working");

  const again = await psql(gw, etl, ['-c', 'select 1'], { conn: { user: 'etl' } });
  t.not(again.code, 0);
  t.match(again.stderr, /identity "nightly-etl" of issuer sluice was revoked: leaked token; ask a Sluice admin/);
  const fresh = await gw.mint('nightly-etl', ['etl']);
  t.match((await psql(gw, fresh, ['-c', 'select 1'], { conn: { user: 'etl' } })).stderr, /was revoked/, 'a new token for the same sub is refused too');
  const listed = await cli(['revoke', '--list'], admin);
  t.match(listed.stdout, /sub\s+nightly-etl\s+sluice/);

  await other.end();
  // Restart the gateway on the same state dir: the revocation is still there.
  gw.proc.kill('SIGTERM');
  await new Promise((r) => gw.proc.once('exit', r));
  const again2 = spawn(BIN, ['serve', '--config', gw.configPath], { env: { ...process.env, ORDERS_PG_PASSWORD: TARGET_PASSWORD, HOOK_SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => again2.kill('SIGKILL'));
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listener: ${log}`)), 20_000);
    again2.stdout!.on('data', (c) => {
      log += c;
      const m = /"event":"listener.start","protocol":"postgres","host":"[^"]+","port":(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const after = await psql({ ...gw, port } as Sluice, fresh, ['-c', 'select 1'], { conn: { user: 'etl' } });
  t.match(after.stderr, /identity "nightly-etl" of issuer sluice was revoked/, 'still revoked after a restart');
  t.match((await psql({ ...gw, port } as Sluice, ci, ['-c', 'select 1'])).stdout, /1/, 'others log in');
});
