// The SSH module's pure parts, without servers: stream masking across chunks
// (a value split at every byte), keystroke line reconstruction,
// user names, legacy scp detection, host key config, and the config schema.
import t from 'tap';
import { mock } from 'node:test';
import { StreamMasker } from '../src/policy/masking/stream.js';
import { Scanner } from '../src/policy/masking/scanner.js';
import { ShellLineTracker } from '../src/protocols/ssh/shell-line.js';
import { incomplete } from '../src/protocols/ssh/shell-gate.js';
import { parseUsername } from '../src/protocols/ssh/connection.js';
import { legacyScp } from '../src/protocols/ssh/policy.js';
import { checkFingerprint, fingerprintOf, parseKnownHostsLine } from '../src/protocols/ssh/known-hosts.js';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { configFromObject, ConfigError } from '../src/config/load.js';
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

// Values of every detector, each in several surroundings (terminal escapes, prompts, end of output).
const JWT = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDsecretsecretsecret\n-----END OPENSSH PRIVATE KEY-----';
const VALUES: [string, string][] = [
  ['email', 'jane.doe@example.com'],
  ['email', 'bob+ops@mail.example.co.uk'],
  ['credit_card', '4111 1111 1111 1111'],
  ['credit_card', '5500-0000-0000-0004'],
  ['credit_card', '378282246310005'],
  ['us_ssn', '123-45-6789'],
  ['phone', '+1 (555) 123-4567'],
  ['phone', '+44 20 7946 0958'],
  ['phone', '(555) 123-4567'],
  ['iban', 'DE89 3704 0044 0532 0130 00'],
  ['iban', 'GB82WEST12345698765432'],
  ['aws_access_key', 'AKIAIOSFODNN7EXAMPLE'],
  ['jwt', JWT],
  ['private_key', KEY],
  ['order', 'ORD-12345678'],
];
const SURROUNDINGS: [string, string][] = [
  ['mail ', '\n'],
  ['user@host:~$ echo ', '\r\nuser@host:~$ '],
  ['\x1b[1;31m', '\x1b[0m done'],
  ['value=', ''],
  ['(', '), next\n'],
];
const streamScanner = new Scanner(
  ['credit_card', 'email', 'us_ssn', 'phone', 'iban', 'aws_access_key', 'jwt', 'private_key'],
  [{ name: 'order', pattern: 'ORD-[0-9]{8}', strategy: 'redact' }],
);
const redact = () => 'redact' as const;
const mctx = { hmacKey: Buffer.alloc(32, 1) };

function masked(parts: Buffer[], between?: () => void, opts?: { maxHold?: number }): string {
  const out: Buffer[] = [];
  const m = new StreamMasker(streamScanner, redact, mctx, (b) => out.push(Buffer.from(b)), opts);
  for (const p of parts) {
    m.push(p);
    between?.();
  }
  m.end();
  return Buffer.concat(out).toString('latin1');
}

t.test('stream masking: no split point and no delay lets a value out in clear (fake timers)', async (t) => {
  let cases = 0;
  let bad = 0;
  // Timers are mocked: any time-based release would fire during tick().
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  try {
    const tick = () => mock.timers.tick(10_000);
    for (const [det, v] of VALUES) {
      for (const [pre, post] of SURROUNDINGS) {
        const text = Buffer.from(pre + v + post);
        const whole = masked([text]);
        if (whole.includes(v) || !whole.includes(`[REDACTED:${det}]`)) {
          t.fail(`one chunk: ${JSON.stringify(whole)}`);
          continue;
        }
        // Every two-way split, with a long pause between the halves.
        for (let c = 1; c < text.length; c++) {
          cases++;
          const got = masked([text.subarray(0, c), text.subarray(c)], tick);
          if (got !== whole) {
            if (bad++ < 5) t.equal(got, whole, `${det} split at ${c} of ${JSON.stringify(text.toString())}`);
          }
        }
        // Byte by byte.
        cases++;
        const bytes = [...text].map((b) => Buffer.from([b]));
        if (masked(bytes, tick) !== whole && bad++ < 5) t.fail(`${det}: byte by byte`);
      }
    }
  } finally {
    mock.timers.reset();
  }
  t.equal(bad, 0, `${cases} chunkings of ${VALUES.length} values in ${SURROUNDINGS.length} surroundings give the one-chunk result`);
});

t.test('stream masking: the held part is only what may still be a value', async (t) => {
  const held = (s: string, input?: string) => {
    const out: string[] = [];
    const m = new StreamMasker(streamScanner, redact, mctx, (b) => out.push(b.toString('latin1')));
    if (input) m.noteInput(Buffer.from(input));
    m.push(Buffer.from(s));
    return s.slice(out.join('').length);
  };
  // Prompts, progress and terminal sequences go out at once.
  for (const s of [
    'user@host:~$ ',
    'root@db01:/var/log# ',
    '\x1b[01;32malice@web01\x1b[00m:\x1b[01;34m~\x1b[00m$ ',
    '\x1b[32m$ \x1b[0m',
    'mysql> ',
    '>>> ',
    'Password: ',
    'Do you want to continue? [Y/n] ',
    'Downloading  45% |#####     |\r',
    '\x1b[2K\x1b[1G',
    'done.\n',
  ]) {
    t.equal(held(s), '', `nothing held: ${JSON.stringify(s)}`);
  }
  // What could still become a value is held, and only that.
  for (const [s, h] of [
    ['mail jane.doe@exa', 'jane.doe@exa'],
    ['mail jane', 'jane'],
    ['card 4111 1111 ', '4111 1111 '],
    ['call +1 (555) ', '+1 (555) '],
    ['iban DE89 3704 ', 'DE89 3704 '],
    ['key AKIAIOSF', 'AKIAIOSF'],
    [`token ${JWT.slice(0, 50)}`, JWT.slice(0, 50)],
    ['ref ORD-1234', 'ORD-1234'],
    ['x -----BEG', '-----BEG'],
    [`${KEY.slice(0, 60)}`, KEY.slice(0, 60)],
    ['prompt \x1b[3', '\x1b[3'],
  ]) {
    t.equal(held(s!), h, `held: ${JSON.stringify(s)}`);
  }
  // Terminal echo: the word being typed is what the client sent, so it is not held.
  t.equal(held('l', 'l'), '', 'a typed character is echoed at once');
  t.equal(held('jane', 'ls jane'), '', 'a typed word is echoed at once');
  t.equal(held('jane', 'x'), 'jane', 'output the client did not type is held');
  t.equal(held('jane', 'echo jane\r'), 'jane', 'a finished command line is no echo any more');
});

t.test('stream masking: a private key block is held whole, whatever the pause, up to the size cap', async (t) => {
  const out: string[] = [];
  const m = new StreamMasker(streamScanner, redact, mctx, (b) => out.push(b.toString()));
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  try {
    m.push(Buffer.from('start\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n'));
    mock.timers.tick(60_000);
    t.same(out, ['start\n'], 'an open key block waits for its END');
    m.push(Buffer.from('QyNTUxOQAAACD\n-----END OPENSSH PRIVATE KEY-----\nafter\n'));
    t.equal(out.join(''), 'start\n[REDACTED:private_key]\nafter\n');
  } finally {
    mock.timers.reset();
  }
  m.end();
  // A header whose END never comes holds output only up to the cap: that part goes out masked
  // (fail closed), then output flows again.
  const after: Buffer[] = [Buffer.from('-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n')];
  for (let i = 0; i < 40; i++) after.push(Buffer.from(`line ${i} of ordinary output\n`));
  after.push(Buffer.from('mail jane.doe@example.com\n'));
  const got = masked(after, undefined, { maxHold: 1024 });
  t.notMatch(got, /MIIE/, 'no key material');
  t.match(got, /^\[REDACTED:private_key\]line \d+ of ordinary output\n/, 'masked up to the cap, then output resumes');
  t.match(got, /line 39 of ordinary output\nmail \[REDACTED:email\]\n$/);
  // A JWT still open at the cap goes out masked.
  const longJwt = `${JWT.split('.')[0]}.${'eyJzdWIiOiIxMjM0NTY3ODkwIn0'.repeat(60)}`;
  const j = masked([Buffer.from(`t ${longJwt}`), Buffer.from('.c2lnbmF0dXJl done')], undefined, { maxHold: 1024 });
  t.match(j, /^t \[REDACTED:jwt\]/);
  t.notMatch(j, /eyJzdWIiOi/, 'no token payload');
});

t.test('stream masking: a custom pattern is held exactly while a match may be under way', async (t) => {
  const patterns: [string, string[]][] = [
    ['ORD-[0-9]{8}', ['ORD-12345678']],
    ['(?i)aws_?secret_?access_?key["\']?\\s*[:=]\\s*["\']?[A-Za-z0-9/+]{40}', ['AWS_SECRET_ACCESS_KEY = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY']],
    ['\\bsk_(?:live|test)_[0-9a-zA-Z]{8,}\\b', ['sk_live_abcdefgh1234']],
    ['(?P<k>token)=(\\w+)|secret:\\s\\S+', ['token=abc', 'secret: hunter2']],
    ['[[:upper:]]{3}\\d{2,}', ['ABC12345']],
    ['\\Qx.y\\E\\d+', ['x.y7']],
    ['a(?i)bc|de', ['aBC', 'DE']],
  ];
  for (const [pattern, matches] of patterns) {
    const sc = new Scanner([], [{ name: 'c', pattern, strategy: 'redact' }]);
    for (const v of matches) {
      // Every proper prefix of a match, at the end of output, is held from its start.
      for (let k = 1; k <= v.length; k++) {
        const s = Buffer.from(`noise ${v.slice(0, k)}`);
        const at = sc.pending(s, 0, s.length, 65536);
        if (at > 6) t.fail(`${pattern}: ${JSON.stringify(v.slice(0, k))} not held (from ${at})`);
      }
    }
    const s = Buffer.from('plain output, nothing here\n');
    t.equal(sc.pending(s, 0, s.length, 65536), s.length, `${pattern}: plain output not held`);
  }
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
  t.match(problems({ a: target({ protocol: 'telnet' }) }), /targets\.a\.protocol: expected one of postgres, ssh, http, got "telnet"/);
  t.match(problems({ a: target({ database: 'x' }) }), /unknown key "database"/);
  t.match(problems({ a: target({ password: 'plain' }) }), /plain-text secrets are not allowed/);
});
