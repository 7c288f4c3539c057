// The governance contract, run against every protocol module: one gateway, real
// servers (Postgres, sshd) and real clients (node-postgres, OpenSSH).
//   - a denial is audited, counted and recorded;
//   - with no policy, actions are still counted (live and in the recording);
//   - every refused side channel is audited;
//   - a held action released by an approval runs exactly once;
//   - a revoked identity's live session ends within 1 s while a bystander's goes on.
// A new protocol joins by adding one entry to PROTOCOLS.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import pg from 'pg';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { withPostgres } from './helpers/pg-cluster.js';
import { BIN, ordersTarget, prepareOrders, startSluice, type Sluice } from './helpers/sluice.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';
import { freePort } from './helpers/ports.js';
import http from 'node:http';

const exec = promisify(execFile);
const cluster = await withPostgres(t);
await prepareOrders(cluster);
await cluster.sql(`create table held_log (m text); alter table held_log owner to app;`, 'orders');
const sshd = await startSshd(t);
// An HTTP API that remembers which paths it served (the effects of held requests) and can stream.
const apiHits: string[] = [];
const apiServer = http.createServer((req, res) => {
  apiHits.push(`${req.method} ${req.url}`);
  if (req.url === '/stream') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const iv = setInterval(() => res.write('.'), 50);
    res.on('close', () => clearInterval(iv));
    return;
  }
  req.resume();
  req.on('end', () => res.end('{"ok":true}'));
});
await new Promise<void>((r) => apiServer.listen(0, '127.0.0.1', r));
t.teardown(() => {
  apiServer.closeAllConnections();
  apiServer.close();
});
const apiTarget = { protocol: 'http', url: `http://127.0.0.1:${(apiServer.address() as net.AddressInfo).port}`, allow: ['*'] };
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-contract-'));
fs.chmodSync(scratch, 0o777);
t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));

const gw = await startSluice(t, {
  cluster,
  ssh: true,
  admin: true,
  tls: false,
  http: { idle_timeout: '1s' },
  config: {
    targets: {
      orders: ordersTarget(cluster),
      web01: sshTarget(sshd),
      api: apiTarget,
    },
    approvals: { approvers: ['leads'], timeout: '60s' },
    policies: [
      {
        name: 'contract',
        match: { targets: ['orders', 'web01', 'api'] },
        rules: [
          { deny: { kind: ['drop'] } },
          { deny: { commands: ['rm'] } },
          { deny: { methods: ['DELETE'] } },
          { review: { paths: ['/held/**'] } },
          { review: { tables: ['held_log'], kind: ['insert'] } },
          { review: { commands: ['tee'] } },
          { allow: {} },
        ],
        ssh: { sftp: 'read_only' },
      },
    ],
  },
});
// The same targets on a gateway with no policy at all (with policies configured,
// a session none applies to is decided by policy.default, so it is governed).
const bare = await startSluice(t, {
  cluster,
  ssh: true,
  tls: false,
  http: { idle_timeout: '1s' },
  config: { targets: { orders: ordersTarget(cluster), web01: sshTarget(sshd), api: apiTarget } },
});
const lead = await gw.mint('lead-1', ['leads']);
const admin = await gw.mint('admin-1', ['sluice-admins']);

async function api(method: string, p: string, token: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const r = await fetch(`${gw.adminUrl}${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function cli(...args: string[]): Promise<unknown> {
  return cliOn(gw, ...args);
}

async function cliOn(g: Sluice, ...args: string[]): Promise<unknown> {
  const r = await exec(process.execPath, [BIN, ...args, '--config', g.configPath, '--json'], { maxBuffer: 16 << 20 });
  // `sessions list --json` prints one document, `audit --json` one event per line.
  const text = r.stdout.trim();
  return text.startsWith('[') ? JSON.parse(text) : text ? text.split('\n').map((l) => JSON.parse(l)) : [];
}

/** The session.close log line of a subject's session (the live count of its actions). */
const closed = (sub: string, g = gw) => g.waitForLog((l) => l.event === 'session.close' && l.sub === sub, 20_000);

/** The recorded session of a subject, once the recording has it closed. */
async function recorded(sub: string, g = gw): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const list = (await cliOn(g, 'sessions', 'list', '--identity', sub)) as Record<string, unknown>[];
    const s = list.find((x) => x.status === 'closed');
    if (s) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no closed recording for ${sub}`);
}

/** One protocol module, as the contract drives it. */
interface Entry {
  name: string;
  target: string;
  allowed: string;
  denied: string;
  /** What the client sees for the denied action. */
  deniedText: RegExp;
  /** An action a `review` rule holds, writing `mark` somewhere countable. */
  held(mark: string): string;
  /** How many times `mark` was written. */
  effects(mark: string): Promise<number>;
  /** Runs actions in one session of `g` (default: the governed gateway); resolves with everything the client printed. */
  session(sub: string, target: string, actions: string[], g?: Sluice): Promise<string>;
  /** Opens a session that stays open; `ended` resolves when the gateway ends it; `check` runs an action. */
  live(sub: string): Promise<{ ended: Promise<void>; check(): Promise<boolean>; close(): void }>;
  /** Side channels the session's options refuse: each attempt, and the audit event it must leave. */
  sideChannels: { name: string; attempt(sub: string): Promise<void>; audited(e: Record<string, unknown>): boolean }[];
}

async function pgClient(sub: string, target: string, g = gw): Promise<pg.Client> {
  const c = new pg.Client({ host: g.host, port: g.port, user: sub, database: target, password: await g.mint(sub, ['ci']), ssl: false });
  c.on('error', () => {});
  await c.connect();
  return c;
}

const postgres: Entry = {
  name: 'postgres',
  target: 'orders',
  allowed: 'select 1',
  denied: 'drop table held_log',
  deniedText: /sluice: statement denied: .*rule "contract#1"/,
  held: (mark) => `insert into held_log values ('${mark}')`,
  effects: async (mark) => Number((await cluster.sql(`select count(*) from held_log where m = '${mark}'`, 'orders')).trim()),
  async session(sub, target, actions, g) {
    const c = await pgClient(sub, target, g);
    let out = '';
    for (const a of actions) {
      try {
        const r = await c.query(a);
        out += `${r.command} ${r.rowCount ?? ''}\n`;
      } catch (err) {
        out += `ERROR: ${(err as Error).message}\n`;
      }
    }
    await c.end();
    return out;
  },
  async live(sub) {
    const c = await pgClient(sub, 'orders');
    await c.query('select 1');
    const ended = new Promise<void>((r) => c.once('end', () => r()));
    return {
      ended,
      check: async () => (await c.query('select 1 as x')).rows[0]?.x === 1,
      close: () => void c.end().catch(() => {}),
    };
  },
  sideChannels: [],
};

const sshArgs = (target: string, g = gw) => ['-p', String(g.sshPort), `${target}@127.0.0.1`];

const ssh: Entry = {
  name: 'ssh',
  target: 'web01',
  allowed: 'true',
  denied: `rm -f ${scratch}/nothing`,
  deniedText: /sluice: command denied: .*rule "contract#2"/,
  held: (mark) => `echo ${mark} | tee -a ${scratch}/held.log`,
  effects: async (mark) => {
    const f = path.join(scratch, 'held.log');
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => l === mark).length : 0;
  },
  async session(sub, target, actions, g = gw) {
    // A shell without a pty: each line is one governed command of the same session.
    const r = await run('ssh', await g.mint(sub, ['ci']), ['-T', ...sshArgs(target, g)], { input: actions.join('\n') + '\n' });
    return r.stdout.toString() + r.stderr;
  },
  async live(sub) {
    const p = run('ssh', await gw.mint(sub, ['ci']), ['-T', ...sshArgs('web01')], { stdin: 'pipe' });
    let got = '';
    p.proc.stdout!.on('data', (c: Buffer) => (got += c));
    /** Types a line into the live shell and waits for its output. */
    const say = async (word: string): Promise<boolean> => {
      p.proc.stdin!.write(`echo ${word}\n`);
      for (let i = 0; i < 100 && !got.includes(word); i++) await new Promise((r) => setTimeout(r, 50));
      return got.includes(word);
    };
    await say('ready');
    return {
      ended: p.then(() => undefined),
      check: () => say('still-alive'),
      close: () => p.proc.kill(),
    };
  },
  sideChannels: [
    {
      name: '-L local forwarding',
      async attempt(sub) {
        const lport = await freePort();
        const p = run('ssh', await gw.mint(sub, ['ci']), ['-N', '-L', `${lport}:127.0.0.1:9`, ...sshArgs('web01')], { timeoutMs: 20_000 });
        // Open one forwarded connection: the request reaches the gateway only then.
        for (let i = 0; i < 50; i++) {
          const ok = await new Promise<boolean>((r) => {
            const s = net.connect(lport, '127.0.0.1');
            s.on('connect', () => (s.destroy(), r(true)));
            s.on('error', () => r(false));
          });
          if (ok) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        await gw.waitForLog((l) => l.event === 'ssh.forward' && l.sub === sub && l.kind === 'local');
        p.proc.kill();
        await p;
      },
      audited: (e) => e.event === 'ssh.forward' && e.kind === 'local',
    },
    {
      name: '-R remote forwarding',
      async attempt(sub) {
        const p = run('ssh', await gw.mint(sub, ['ci']), ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${await freePort()}:127.0.0.1:9`, ...sshArgs('web01')], { timeoutMs: 20_000 });
        await gw.waitForLog((l) => l.event === 'ssh.forward' && l.sub === sub && l.kind === 'remote');
        p.proc.kill();
        await p;
      },
      audited: (e) => e.event === 'ssh.forward' && e.kind === 'remote',
    },
    {
      name: '-A agent forwarding',
      async attempt(sub) {
        const sock = path.join(scratch, `agent-${sub}.sock`);
        const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
        try {
          for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
          await run('ssh', await gw.mint(sub, ['ci']), ['-o', 'ForwardAgent=yes', ...sshArgs('web01'), 'true'], { env: { SSH_AUTH_SOCK: sock } });
        } finally {
          agent.kill();
        }
      },
      audited: (e) => e.event === 'ssh.forward' && e.kind === 'agent',
    },
    {
      name: 'sftp upload under sftp: read_only',
      async attempt(sub) {
        const src = path.join(scratch, `up-${sub}`);
        fs.writeFileSync(src, 'x');
        await run('sftp', await gw.mint(sub, ['ci']), ['-o', 'BatchMode=no', '-P', String(gw.sshPort), '-b', '-', 'web01@127.0.0.1'], { input: `put ${src} ${scratch}/up-${sub}.copy\n` });
      },
      audited: (e) => e.event === 'sftp.op' && e.decision === 'deny',
    },
  ],
};

/** One HTTP request with a token; "METHOD /path" → "<status> <body>". */
async function httpCall(g: Sluice, token: string, target: string, action: string): Promise<string> {
  const [method, p] = action.split(' ');
  const r = await fetch(`http://127.0.0.1:${g.httpPort}/${target}${p}`, { method, headers: { authorization: `Bearer ${token}` } });
  const text = await r.text();
  // What a user reads of a refusal: the problem's detail.
  const detail = r.headers.get('content-type') === 'application/problem+json' ? (JSON.parse(text) as { detail: string }).detail : text;
  return `${r.status} ${detail}`;
}

const httpEntry: Entry = {
  name: 'http',
  target: 'api',
  allowed: 'GET /ok',
  denied: 'DELETE /things/1',
  deniedText: /sluice: request denied: .*rule "contract#3"/,
  held: (mark) => `POST /held/${mark}`,
  effects: async (mark) => apiHits.filter((h) => h === `POST /held/${mark}`).length,
  async session(sub, target, actions, g = gw) {
    // One token: its requests are one session (it ends after listeners.http.idle_timeout).
    const token = await g.mint(sub, ['ci']);
    let out = '';
    for (const a of actions) out += (await httpCall(g, token, target, a)) + '\n';
    return out;
  },
  async live(sub) {
    const token = await gw.mint(sub, ['ci']);
    const ac = new AbortController();
    const r = await fetch(`http://127.0.0.1:${gw.httpPort}/api/stream`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    const reader = r.body!.getReader();
    const ended = (async () => {
      try {
        for (;;) if ((await reader.read()).done) return;
      } catch {
        /* cut: that is the end too */
      }
    })();
    return {
      ended,
      check: async () => (await httpCall(gw, token, 'api', 'GET /ok')).startsWith('200 '),
      close: () => ac.abort(),
    };
  },
  sideChannels: [],
};

const PROTOCOLS: Entry[] = [postgres, ssh, httpEntry];

for (const p of PROTOCOLS.filter((x) => !process.env.ONLY || x.name === process.env.ONLY)) {
  t.test(`${p.name}: a denial is audited, counted and recorded; the session goes on`, async (t) => {
    const sub = `deny-${p.name}`;
    const out = await p.session(sub, p.target, [p.allowed, p.denied, p.allowed]);
    t.match(out, p.deniedText, 'the client is told, naming the rule');
    const close = await closed(sub);
    t.equal(close.statements, 3, 'counted live: every action, the denied one too');
    const audit = (await cli('audit', '--identity', sub, '--decision', 'deny')) as Record<string, unknown>[];
    t.equal(audit.length, 1, 'the denial is in the audit trail');
    t.equal(audit[0]?.decision, 'deny');
    const rec = await recorded(sub);
    t.equal(rec.statements, 3, 'counted in the recording');
    t.match(rec.decisions, { deny: 1 }, 'the denial is recorded');
  });

  t.test(`${p.name}: with no policy, actions are still counted`, async (t) => {
    const sub = `free-${p.name}`;
    const out = await p.session(sub, p.target, [p.allowed, p.allowed], bare);
    t.notMatch(out, /denied|not allowed/, 'nothing is refused without a policy');
    t.equal((await closed(sub, bare)).statements, 2, 'live count');
    t.equal((await recorded(sub, bare)).statements, 2, 'recorded count (sluice sessions list)');
  });

  t.test(`${p.name}: a held action released by an approval runs exactly once`, async (t) => {
    const sub = `held-${p.name}`;
    const mark = `m-${p.name}-${Date.now()}`;
    const running = p.session(sub, p.target, [p.held(mark)]);
    const req = await gw.waitForLog((l) => l.event === 'approval.requested' && l.sub === sub);
    t.equal(await p.effects(mark), 0, 'nothing ran while held');
    t.equal((await api('POST', `/api/approvals/${req.approval}/approve`, lead, { reason: 'contract' })).status, 200);
    const out = await running;
    t.notMatch(out, /ERROR|denied/, out);
    t.equal(await p.effects(mark), 1, 'ran exactly once');
    const close = await closed(sub);
    t.equal(close.statements, 1);
  });

  for (const c of p.sideChannels) {
    t.test(`${p.name}: a refused side channel is audited: ${c.name}`, async (t) => {
      const sub = `side-${p.name}-${c.name.replace(/\W+/g, '-')}`;
      await c.attempt(sub);
      let audit: Record<string, unknown>[] = [];
      for (let i = 0; i < 50 && !audit.some(c.audited); i++) {
        audit = (await cli('audit', '--identity', sub)) as Record<string, unknown>[];
        if (!audit.some(c.audited)) await new Promise((r) => setTimeout(r, 100));
      }
      t.ok(audit.some(c.audited), `audited: ${JSON.stringify(audit.map((e) => e.event))}`);
      const rec = await recorded(sub);
      t.ok(Number((rec.decisions as Record<string, number> | undefined)?.deny ?? 0) >= 1, 'the refusal is counted in the recording');
    });
  }

  t.test(`${p.name}: a revoked identity's live session ends within 1 s; a bystander's goes on`, async (t) => {
    const victim = await p.live(`victim-${p.name}`);
    const bystander = await p.live(`bystander-${p.name}`);
    const started = Date.now();
    const revoked = await api('POST', '/api/revocations', admin, { sub: `victim-${p.name}`, issuer: 'any', reason: 'contract' });
    t.equal(revoked.status, 201, JSON.stringify(revoked.body));
    await victim.ended;
    const ms = Date.now() - started;
    t.ok(ms < 1000, `the victim's session ended ${ms} ms after the revocation`);
    t.ok(await bystander.check(), "the bystander's session goes on");
    bystander.close();
    victim.close();
  });
}
