// SSH exec through Sluice with the real OpenSSH client (via sshpass) against a
// real sshd that only accepts the key Sluice holds: stdout, stderr and exit
// codes, stdin, env allow-list, masking across packets, every way a token is
// refused (with the reason shown to the user), and target host key checks.
import t from 'tap';
import { freePort } from './helpers/ports.js';
import { startSluice } from './helpers/sluice.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';

const sshd = await startSshd(t);
const closedPort = await freePort(); // nothing listens there
const gw = await startSluice(t, {
  ssh: true,
  tls: false,
  config: {
    identity: { clock_skew: '0s' },
    targets: {
      web01: sshTarget(sshd),
      pinned_kh: sshTarget(sshd, { host_key: { known_hosts: sshd.knownHosts } }),
      wrongkey: sshTarget(sshd, { host_key: { fingerprint: sshd.otherFingerprint } }),
      nokey: sshTarget(sshd, { host_key: undefined }),
      opsonly: sshTarget(sshd, { allow: ['group:ops'] }),
      badcred: sshTarget(sshd, { user: 'sluice-no-such-user' }),
      sshdown: sshTarget(sshd, { port: closedPort }),
    },
    masking: [{ name: 'pii', match: { protocols: ['ssh'], groups: ['masked'] }, detectors: ['credit_card', 'email', 'private_key'] }],
  },
});
const port = String(gw.sshPort);
const [token, masked, intern, shortLived] = await Promise.all([
  gw.mint('alice', ['ci']),
  gw.mint('mallory', ['ci', 'masked']),
  gw.mint('intern', ['interns']),
  gw.mint('alice', ['ci'], '1s'),
]);
const ssh = (tok: string, user: string, cmd: string, opts: Parameters<typeof run>[3] = {}, extra: string[] = []) =>
  run('ssh', tok, [...extra, '-p', port, `${user}@127.0.0.1`, cmd], opts);

t.test('exec: stdout, stderr and the exit code', async (t) => {
  const r = await ssh(token, 'web01', 'echo hi; echo err >&2; exit 3');
  t.equal(r.code, 3);
  t.equal(r.stdout.toString(), 'hi\n');
  t.equal(r.stderr, 'err\n');
  const open = await gw.waitForLog((l) => l.event === 'session.close' && l.protocol === 'ssh' && l.sub === 'alice');
  t.equal(open.target, 'web01');
});

t.test('exec with stdin closed (ssh host cmd </dev/null) does not hang', async (t) => {
  const r = await ssh(token, 'web01', 'uname -a', { stdin: 'ignore', timeoutMs: 20_000 });
  t.equal(r.code, 0);
  t.match(r.stdout.toString(), /^Linux /);
});

t.test('stdin and stdout stream byte-exact both ways (5 MiB)', async (t) => {
  const data = Buffer.alloc(5 * 1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const r = await ssh(token, 'web01', 'cat', { input: data });
  t.equal(r.code, 0);
  t.ok(r.stdout.equals(data), 'cat returned the same bytes');
});

t.test('user name forms: target, identity+target', async (t) => {
  const r = await ssh(token, 'alice+web01', 'echo $USER');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString().trim(), sshd.user);
});

t.test('env: only names in env_allow reach the target', async (t) => {
  const r = await ssh(token, 'web01', 'echo "LANG=$LANG X=$SLUICE_X"', { env: { LANG: 'C.UTF-8', SLUICE_X: 'secret' } }, ['-o', 'SendEnv=LANG SLUICE_X']);
  t.equal(r.stdout.toString().trim(), 'LANG=C.UTF-8 X=');
});

t.test('masking: detectors run on exec output, also on a value split across packets, whatever the pause', async (t) => {
  // The halves arrive 300 ms apart: longer than any hold timer; masking must not depend on timing.
  const cmd = `printf '4111 1111 '; sleep 0.3; printf '1111 1111 mail '; printf 'jane.doe@exa'; sleep 0.3; printf 'mple.com\\n'; echo 'card 5500-0000-0000-0004' >&2`;
  const r = await ssh(masked, 'web01', cmd);
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), '**** **** **** 1111 mail ****@example.com\n');
  t.equal(r.stderr, 'card ****-****-****-0004\n');
  const ev = await gw.waitForLog((l) => l.event === 'masking.applied' && l.sub === 'mallory');
  t.same(ev.detectors, { credit_card: 2, email: 1 });
  const clear = await ssh(token, 'web01', cmd);
  t.match(clear.stdout.toString(), /4111 1111 1111 1111/, 'not masked for identities the rule does not match');
});

t.test('masking: a private key block is held whole across a 1.5 s pause', async (t) => {
  const cmd = `printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUA\\n'; sleep 1.5; printf 'QyNTUxOQAAACDsecret\\n-----END OPENSSH PRIVATE KEY-----\\nafter\\n'`;
  const r = await ssh(masked, 'web01', cmd);
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), '[REDACTED:private_key]\nafter\n');
});

t.test('masking: a prompt without a newline reaches the client at once', async (t) => {
  // user@… and a trailing '$ ' could start an email or a number: nothing of it can, once the space came.
  let seen = '';
  let promptAt = 0;
  const r = await ssh(masked, 'web01', `printf 'user@host:~$ '; sleep 3; printf 'x\\n'`, {
    onStdout: (c) => {
      seen += c.toString();
      if (!promptAt && seen.includes('user@host:~$ ')) promptAt = Date.now();
    },
  });
  const end = Date.now();
  t.equal(r.stdout.toString(), 'user@host:~$ x\n');
  t.ok(promptAt > 0 && end - promptAt > 1500, `the prompt arrived ${end - promptAt} ms before the command ended (it sleeps 3 s after the prompt)`);
});

t.test('bad tokens are refused with the reason shown to the user', async (t) => {
  await new Promise((r) => setTimeout(r, 1100)); // shortLived expires
  const cases: [string, string, string, RegExp][] = [
    ['garbage', 'not-a-jwt', 'web01', /sluice: the password is not a JWT/],
    ['expired', shortLived, 'web01', /sluice: token expired at/],
    ['unknown target', token, 'nope', /sluice: unknown target "nope": ask for one of the configured targets as the SSH user name/],
    ['not allowed', intern, 'opsonly', /sluice: sub "intern" is not allowed to use target "opsonly" \(targets\.opsonly\.allow\)/],
  ];
  for (const method of ['password', 'keyboard-interactive']) {
    for (const [name, tok, user, re] of cases) {
      const r = await ssh(tok, user, 'echo should-not-run', { logLevel: 'INFO' }, ['-o', `PreferredAuthentications=${method}`]);
      t.not(r.code, 0, `${method}: ${name}: refused`);
      t.equal(r.stdout.length, 0, `${method}: ${name}: nothing ran`);
      t.match(r.stderr, re, `${method}: ${name}: the reason is shown`);
      t.match(r.stderr, /Permission denied/, `${method}: ${name}: as a failed login`);
    }
  }
  const refusals = () => gw.logs().filter((l) => l.event === 'auth.refused' && l.protocol === 'ssh').length;
  await gw.waitForLog((l) => l.event === 'auth.refused' && refusals() >= 8);
  t.ok(refusals() >= 8, 'every refusal is logged');
  t.notOk(gw.output().includes(shortLived), 'tokens never reach the log');
});

t.test('target host keys: known_hosts line accepted, mismatch and missing refused with what to do', async (t) => {
  const ok = await ssh(token, 'pinned_kh', 'echo ok');
  t.equal(ok.stdout.toString(), 'ok\n');
  const bad = await ssh(token, 'wrongkey', 'echo should-not-run');
  t.equal(bad.code, 255);
  t.equal(bad.stdout.length, 0);
  t.match(bad.stderr, /sluice: refused to connect to target "wrongkey": the host key of target "wrongkey" does not match targets\.wrongkey\.host_key: it presented ssh-ed25519 SHA256:\S+, expected SHA256:/);
  await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === 'wrongkey' && l.level === 'error');
  const none = await ssh(token, 'nokey', 'echo should-not-run');
  t.equal(none.code, 255);
  t.match(none.stderr, new RegExp(`no host key is configured for target "nokey" \\(targets\\.nokey\\.host_key\\).*set targets\\.nokey\\.host_key: \\{ fingerprint: "${sshd.fingerprint.replace(/[+/]/g, '\\$&')}" \\}`));
});

t.test('upstream failures tell the user the target and what happened, not its host, port or user', async (t) => {
  const cases: [string, RegExp, string][] = [
    ['badcred', /sluice: target "badcred" rejected Sluice's stored credential; check targets\.badcred\.private_key, targets\.badcred\.user and the server's authorized_keys \(the gateway log has the details\)/, 'sluice-no-such-user'],
    ['sshdown', /sluice: cannot reach target "sshdown" \(connection refused\); the gateway log has the details/, String(closedPort)],
  ];
  for (const [target, message, internal] of cases) {
    const r = await ssh(token, target, 'echo should-not-run');
    t.not(r.code, 0, `${target}: fails`);
    t.equal(r.stdout.length, 0);
    t.match(r.stderr, message, target);
    for (const s of [internal, `:${sshd.port}`, `${sshd.user}@`]) t.notOk(r.stderr.includes(s), `${target}: ${JSON.stringify(s)} is not shown: ${r.stderr}`);
    const logged = await gw.waitForLog((l) => l.event === 'upstream.error' && l.target === target);
    t.match(String(logged.detail), internal, `${target}: the log has the specifics`);
  }
});
