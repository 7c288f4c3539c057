// The SSH module's pure parts, without servers: stream masking across chunks
// (a value split at every byte), keystroke line reconstruction,
// user names, legacy scp detection, host key config, and the config schema.
import t from 'tap';
import { StreamMasker } from '../src/policy/masking/stream.js';
import { Scanner } from '../src/policy/masking/scanner.js';
import { ShellLineTracker } from '../src/protocols/ssh/shell-line.js';
import { incomplete } from '../src/protocols/ssh/shell-gate.js';
import { parseUsername } from '../src/protocols/ssh/connection.js';
import { legacyScp } from '../src/protocols/ssh/policy.js';
import { checkFingerprint, fingerprintOf, parseKnownHostsLine } from '../src/protocols/ssh/known-hosts.js';
import { configFromObject, ConfigError } from '../src/core/config.js';
import { decodeData, Stream } from '../src/protocols/ssh/frames.js';

// ---- masking across chunks ----------------------------------------------------------------------

t.test('stream masking: a value split at any byte is caught', async (t) => {
  const scanner = new Scanner(['credit_card', 'email', 'private_key'], []);
  const ctx = { hmacKey: Buffer.alloc(32, 1) };
  const text = Buffer.from('pay 4111 1111 1111 1111 now, mail jane.doe@example.com\nnext line\n');
  const one = (() => {
    const out: Buffer[] = [];
    const m = new StreamMasker(scanner, () => 'partial', ctx, (b) => out.push(Buffer.from(b)));
    m.push(text);
    m.end();
    return Buffer.concat(out).toString();
  })();
  t.equal(one, 'pay **** **** **** 1111 now, mail ****@example.com\nnext line\n');
  let bad = 0;
  for (let cut = 1; cut < text.length; cut++) {
    const out: Buffer[] = [];
    const m = new StreamMasker(scanner, () => 'partial', ctx, (b) => out.push(Buffer.from(b)));
    m.push(text.subarray(0, cut));
    m.push(text.subarray(cut));
    m.end();
    if (Buffer.concat(out).toString() !== one) bad++;
  }
  t.equal(bad, 0);
});

t.test('stream masking: an unterminated line is let out after the hold time; a private key is held whole', async (t) => {
  const scanner = new Scanner(['private_key'], []);
  const out: string[] = [];
  const m = new StreamMasker(scanner, () => 'redact', { hmacKey: Buffer.alloc(32) }, (b) => out.push(b.toString()), { holdMs: 10 });
  m.push(Buffer.from('user@host:~$ '));
  t.same(out, [], 'held while the line may go on');
  await new Promise((r) => setTimeout(r, 40));
  t.same(out, ['user@host:~$ '], 'a prompt is not held for long');
  out.length = 0;
  m.push(Buffer.from('-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n'));
  await new Promise((r) => setTimeout(r, 40));
  t.same(out, [], 'an open key block waits for its END');
  m.push(Buffer.from('QyNTUxOQAAACD\n-----END OPENSSH PRIVATE KEY-----\nafter\n'));
  t.equal(out.join(''), '[REDACTED:private_key]\nafter\n');
  m.end();
});

// ---- keystrokes ---------------------------------------------------------------------------------

t.test('shell lines from keystrokes', async (t) => {
  const tr = new ShellLineTracker();
  const lines = (s: string) => tr.feed(Buffer.from(s)).map((e) => (e.approximate ? `~${e.line}` : e.secret ? `*${e.line}` : e.line));
  t.same(lines('ls -l\r'), ['ls -l']);
  t.same(lines('echo brXX\x7f\x7foken\r'), ['echo broken']);
  t.same(lines('rm -rf /\x15echo safe\r'), ['echo safe'], 'Ctrl-U kills the line');
  t.same(lines('echo one two\x17three\r'), ['echo one three'], 'Ctrl-W kills a word');
  t.same(lines('sleep 100\x03'), [], 'Ctrl-C abandons the line');
  t.same(lines('echo ok\r'), ['echo ok']);
  t.same(lines('echo é\x7fe\r'), ['echo e'], 'Backspace removes a whole UTF-8 character');
  t.same(lines('\x1b[200~echo pasted\x1b[201~\r'), ['echo pasted'], 'bracketed paste is typed text');
  t.same(lines('git st\tus\r'), ['~git stus'], 'tab completion (unseen) makes it approximate');
  t.same(lines('\x1b[A\r'), ['~'], 'history recall is approximate');
  t.same(lines('a\r\nb\n'), ['a', 'b'], 'CR LF is one Enter');
  tr.observeOutput(Buffer.from('[sudo] password for bob: '));
  t.same(lines('hunter2\r'), ['*hunter2'], 'a line after a password prompt is secret');
  tr.observeOutput(Buffer.from('\r\n$ '));
  t.same(lines('vim x\r'), ['vim x']);
  tr.observeOutput(Buffer.from('\x1b[?1049h\x1b[1;1H'));
  t.same(lines(':wq\r'), [], 'nothing is a command line in a full-screen program');
  tr.observeOutput(Buffer.from('\x1b[?1049l$ '));
  t.same(lines('echo back\r'), ['echo back']);
});

t.test('multi-line commands are recognised as incomplete until they end', async (t) => {
  for (const s of ['if true; then', 'for i in 1 2; do', 'echo "abc', "echo 'x", 'echo a \\', 'f() {', 'echo $(date', 'while read x; do echo $x']) t.ok(incomplete(s), s);
  for (const s of ['echo hi', 'if true; then echo; fi', 'echo a \\\\', 'echo )', 'ls -l | wc -l']) t.notOk(incomplete(s), s);
});

// ---- names, scp, host keys, frames --------------------------------------------------------------

t.test('user names, legacy scp, host keys, frame tags', async (t) => {
  t.same(parseUsername('web01'), { target: 'web01' });
  t.same(parseUsername('alice+web01'), { target: 'web01', user: 'alice' });
  t.equal(legacyScp('scp -t /tmp/x'), 'upload');
  t.equal(legacyScp('scp -v -p -f -- /etc/hosts'), 'download');
  t.equal(legacyScp('scp -t /tmp; rm -rf /'), null, 'anything more is a command, decided by the rules');
  t.equal(legacyScp('scp -r host:/a /b'), null);
  const line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
  const k = parseKnownHostsLine(`[127.0.0.1]:2222 ${line} comment`);
  t.ok(!('error' in k) && k.type === 'ssh-ed25519');
  if (!('error' in k)) t.match(fingerprintOf(k.blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
  t.match(parseKnownHostsLine('ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'), { error: /is a ssh-ed25519 key, but the line says ssh-rsa/ });
  t.match(parseKnownHostsLine('@cert-authority * ' + line), { error: /markers/ });
  t.equal(checkFingerprint('SHA256:' + 'a'.repeat(43)), undefined);
  t.match(checkFingerprint('MD5:aa:bb'), /expected an OpenSSH SHA256 fingerprint/);
  const tagged = Buffer.from([Stream.Stderr, 0x01, 0x02, 0x41]);
  t.same(decodeData(tagged), { stream: Stream.Stderr, channel: 0x0102, data: Buffer.from('A') });
});

t.test('config: ssh listener and targets', async (t) => {
  const base = { state_dir: '/tmp/x', listeners: { ssh: {} } };
  const target = (extra: Record<string, unknown>) => ({ protocol: 'ssh', host: 'h', user: 'u', allow: ['*'], private_key: { file: '/k' }, ...extra });
  const cfg = configFromObject({ ...base, targets: { web01: target({ host_key: { fingerprint: 'SHA256:' + 'a'.repeat(43) } }) } }, '');
  t.same(cfg.listeners.ssh, { host: '127.0.0.1', port: 2222 });
  const w = cfg.targets.web01!;
  t.equal(w.protocol, 'ssh');
  if (w.protocol === 'ssh') {
    t.equal(w.port, 22);
    t.same(w.env_allow, ['LANG', 'LC_*']);
  }
  const problems = (targets: Record<string, unknown>) => {
    try {
      configFromObject({ ...base, targets }, '');
      return '';
    } catch (e) {
      return (e as ConfigError).message;
    }
  };
  t.match(problems({ a: target({ private_key: undefined }) }), /targets\.a: an ssh target needs private_key or password/);
  t.match(problems({ a: target({ host_key: { fingerprint: 'nope' } }) }), /targets\.a\.host_key\.fingerprint: expected an OpenSSH SHA256 fingerprint/);
  t.match(problems({ a: target({ host_key: {} }) }), /set exactly one of fingerprint or known_hosts/);
  t.match(problems({ a: target({ protocol: 'telnet' }) }), /targets\.a\.protocol: expected one of postgres, ssh, got "telnet"/);
  t.match(problems({ a: target({ database: 'x' }) }), /unknown key "database"/);
  t.match(problems({ a: target({ password: 'plain' }) }), /plain-text secrets are not allowed/);
});
