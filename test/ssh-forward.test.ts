// Forwarding and per-policy ssh options through Sluice: -L, -R and agent
// forwarding refused by default and relayed when a policy allows them, `shell: deny` (exec only),
// and `sftp: read_only` (sftp put and legacy scp uploads refused, reads work).
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { startSluice } from './helpers/sluice.js';
import { freePort } from './helpers/ports.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';

const sshd = await startSshd(t);
const gw = await startSluice(t, {
  ssh: true,
  tls: false,
  config: {
    targets: { web01: sshTarget(sshd) },
    policies: [
      { name: 'everyone', match: { protocols: ['ssh'] }, rules: [{ allow: {} }] },
      { name: 'tunnels', match: { groups: ['fwd'] }, ssh: { forwarding: { local: true, remote: true, agent: true } } },
      { name: 'exec-only', match: { groups: ['bots'] }, ssh: { shell: 'deny' } },
      { name: 'files-ro', match: { groups: ['auditors'] }, ssh: { sftp: 'read_only' } },
    ],
  },
});
const port = String(gw.sshPort);
const [plain, fwd, bot, auditor] = await Promise.all([gw.mint('alice', ['ci']), gw.mint('tunnel-user', ['ci', 'fwd']), gw.mint('bot', ['ci', 'bots']), gw.mint('auditor', ['ci', 'auditors'])]);

// A TCP echo service "on the target" (the same machine).
const echo = net.createServer((s) => s.pipe(s));
await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
t.teardown(() => echo.close());
const echoPort = (echo.address() as net.AddressInfo).port;

/** Connects, sends a line, resolves with what came back before the socket closed (or 3 s passed). */
function roundTrip(p: number, msg = 'ping\n'): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(p, '127.0.0.1');
    let got = '';
    s.on('connect', () => s.write(msg));
    s.on('data', (c) => {
      got += c;
      if (got === msg) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    setTimeout(() => s.destroy(), 3000);
  });
}

async function listening(p: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(p, '127.0.0.1');
      s.on('connect', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${p}`);
}

/** `ssh -N` with forwards (not awaited: it runs until killed or it fails). */
function tunnel(token: string, spec: string[]) {
  const p = run('ssh', token, ['-N', '-o', 'ExitOnForwardFailure=yes', ...spec, '-p', port, 'web01@127.0.0.1'], { timeoutMs: 30_000, logLevel: 'ERROR' });
  t.teardown(() => p.proc.kill());
  return p;
}

t.test('-L: refused by default, relayed when a policy allows local forwarding', async (t) => {
  const lport = await freePort();
  tunnel(plain, ['-L', `${lport}:127.0.0.1:${echoPort}`]);
  await listening(lport);
  t.equal(await roundTrip(lport), '', 'the forwarded connection is closed without data');
  const ev = await gw.waitForLog((l) => l.event === 'ssh.forward' && l.sub === 'alice' && l.kind === 'local');
  t.equal(ev.allowed, false);
  t.equal(ev.dest, `127.0.0.1:${echoPort}`);

  const lport2 = await freePort();
  tunnel(fwd, ['-L', `${lport2}:127.0.0.1:${echoPort}`]);
  await listening(lport2);
  t.equal(await roundTrip(lport2), 'ping\n', 'echoed through the tunnel');
  const big = 'x'.repeat(3 * 1024 * 1024) + '\n';
  t.equal((await roundTrip(lport2, big)).length, big.length, '3 MiB both ways');
  await gw.waitForLog((l) => l.event === 'ssh.forward' && l.sub === 'tunnel-user' && l.kind === 'local' && l.allowed === true);
});

t.test('-R: refused by default (ssh exits), relayed when a policy allows remote forwarding', async (t) => {
  const rport = await freePort();
  const r = await tunnel(plain, ['-R', `${rport}:127.0.0.1:${echoPort}`]);
  t.equal(r.code, 255);
  t.match(r.stderr, /remote port forwarding failed/);

  const rport2 = await freePort();
  tunnel(fwd, ['-R', `${rport2}:127.0.0.1:${echoPort}`]);
  await listening(rport2);
  t.equal(await roundTrip(rport2), 'ping\n', 'a connection to the target comes back through the client');
});

t.test('-A: the client agent reaches the target only when a policy allows agent forwarding', async (t) => {
  const dir = fs.mkdtempSync(path.join(sshd.dir, 'agent-'));
  const sock = path.join(dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  t.teardown(() => agent.kill());
  for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'agent-key-of-the-user', '-f', path.join(dir, 'k')]);
  execFileSync('ssh-add', ['-q', path.join(dir, 'k')], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  const list = (tok: string) => run('ssh', tok, ['-o', 'ForwardAgent=yes', '-p', port, 'web01@127.0.0.1', 'ssh-add -l; echo rc=$?'], { env: { SSH_AUTH_SOCK: sock } });
  const denied = await list(plain);
  t.match(denied.stdout.toString(), /rc=2/, 'no agent on the target by default');
  await gw.waitForLog((l) => l.event === 'ssh.forward' && l.sub === 'alice' && l.kind === 'agent' && l.allowed === false);
  const allowed = await list(fwd);
  t.match(allowed.stdout.toString(), /agent-key-of-the-user \(ED25519\)/, 'the key of the client agent is listed on the target');
  t.match(allowed.stdout.toString(), /rc=0/);
});

t.test('ssh.shell: deny allows exec only', async (t) => {
  const sh = await run('ssh', bot, ['-T', '-p', port, 'web01@127.0.0.1'], { input: 'echo should-not-run\n' });
  t.equal(sh.code, 126);
  t.equal(sh.stdout.length, 0);
  t.match(sh.stderr, /sluice: interactive shells are not allowed for you on target "web01" \(ssh\.shell: deny\)/);
  const bash = await run('ssh', bot, ['-p', port, 'web01@127.0.0.1', 'bash'], { input: 'echo should-not-run\n' });
  t.equal(bash.code, 126, 'nor a shell reading commands from the session');
  const ex = await run('ssh', bot, ['-p', port, 'web01@127.0.0.1', 'echo exec-ok']);
  t.equal(ex.stdout.toString(), 'exec-ok\n');
});

t.test('ssh.sftp: read_only refuses sftp put and scp uploads; reading works', async (t) => {
  const dir = fs.mkdtempSync(path.join(sshd.dir, 'ro-'));
  fs.writeFileSync(path.join(dir, 'report.txt'), 'quarterly numbers\n');
  const local = path.join(dir, 'local.txt');
  fs.writeFileSync(local, 'new data\n');
  const batch = `get ${dir}/report.txt ${dir}/got.txt\nput ${local} ${dir}/put.txt\n`;
  const r = await run('sftp', auditor, ['-o', 'BatchMode=no', '-P', port, '-b', '-', 'web01@127.0.0.1'], { input: batch });
  t.not(r.code, 0, 'the batch fails at the put');
  t.match(r.stderr, /Permission denied|read-only/);
  t.equal(fs.readFileSync(path.join(dir, 'got.txt'), 'utf8'), 'quarterly numbers\n', 'get works');
  t.notOk(fs.existsSync(path.join(dir, 'put.txt')), 'put was refused');
  const ev = await gw.waitForLog((l) => l.event === 'sftp.op' && l.sub === 'auditor' && l.allowed === false);
  t.equal(ev.op, 'open');
  t.same(ev.access, ['write', 'create', 'trunc']);

  const scpUp = await run('scp', auditor, ['-P', port, local, `web01@127.0.0.1:${dir}/scp.txt`]);
  t.not(scpUp.code, 0);
  t.notOk(fs.existsSync(path.join(dir, 'scp.txt')), 'scp (sftp protocol) upload refused');
  const legacy = await run('scp', auditor, ['-O', '-P', port, local, `web01@127.0.0.1:${dir}/legacy.txt`]);
  t.not(legacy.code, 0);
  t.match(legacy.stderr, /uploading \(scp to the target\) is not allowed for you on target "web01" \(ssh\.sftp: read_only\)/);
  t.notOk(fs.existsSync(path.join(dir, 'legacy.txt')), 'legacy scp upload refused');
  const down = await run('scp', auditor, ['-O', '-P', port, `web01@127.0.0.1:${dir}/report.txt`, `${dir}/down.txt`]);
  t.equal(down.code, 0, down.stderr);
  t.equal(fs.readFileSync(path.join(dir, 'down.txt'), 'utf8'), 'quarterly numbers\n');
});
