// Interactive shells and command policy through Sluice: `ssh -tt` with a pty
// driven by a script, command lines reconstructed from keystrokes and decided
// (a denied line never runs), a denied exec (exit 126 with the reason), the
// kill switch cutting a live shell within a second, and the recorded session
// replayed and exported as asciicast v2.
import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, startSluice } from './helpers/sluice.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';

const execFileP = promisify(execFile);
const sshd = await startSshd(t);
const scratch = fs.mkdtempSync(path.join(sshd.dir, 'scratch-'));
const gw = await startSluice(t, {
  ssh: true,
  tls: false,
  admin: true,
  config: {
    admin: { groups: ['sluice-admins'] },
    approvals: { approvers: ['leads'] },
    targets: { web01: sshTarget(sshd) },
    masking: [{ name: 'pii', match: { protocols: ['ssh'], groups: ['masked'] }, detectors: ['credit_card', 'email', 'private_key'] }],
    policies: [
      { name: 'everyone', match: { protocols: ['ssh'] }, rules: [{ allow: {} }] },
      {
        name: 'ops-read-only',
        match: { protocols: ['ssh'], groups: ['ro'] },
        rules: [{ deny: { changes_state: true, message: 'only read-only commands on web01' } }, { allow: {} }],
      },
      { name: 'held', match: { protocols: ['ssh'], groups: ['rv'] }, rules: [{ review: { commands: ['touch'], message: 'touching files needs a second pair of eyes' } }, { allow: {} }] },
      {
        // Lets a shell read from the session (dynamic), but no command that writes.
        name: 'no-writes',
        match: { protocols: ['ssh'], groups: ['nw'] },
        rules: [{ deny: { changes_state: true, dynamic: false, message: 'no writes' } }, { allow: {} }],
      },
    ],
  },
});
const port = String(gw.sshPort);
const [token, ro, nw, rv, lead, admin, maskedTok] = await Promise.all([
  gw.mint('alice', ['ci']),
  gw.mint('bob', ['ci', 'ro']),
  gw.mint('carol', ['ci', 'nw']),
  gw.mint('dave', ['ci', 'rv']),
  gw.mint('lead-1', ['leads']),
  gw.mint('admin-1', ['sluice-admins']),
  gw.mint('erin', ['ci', 'masked']),
]);

/** An interactive `ssh -tt` session: send keystrokes, wait for output. */
function shell(tok: string) {
  let out = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const p = run('ssh', tok, ['-tt', '-p', port, 'web01@127.0.0.1'], {
    timeoutMs: 30_000,
    onStdout: (c) => {
      out += c.toString();
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!.re.test(out)) waiters.splice(i, 1)[0]!.resolve();
    },
  });
  return {
    done: p,
    output: () => out,
    type: (s: string) => p.proc.stdin!.write(s),
    waitFor: (re: RegExp, ms = 10_000) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(out)) return resolve();
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output:\n${out}`)), ms);
        waiters.push({ re, resolve: () => (clearTimeout(timer), resolve()) });
      }),
  };
}

const sessionOf = async (sub: string, after: number) =>
  (await gw.waitForLog((l) => l.event === 'session.open' && l.protocol === 'ssh' && l.sub === sub && Date.parse(String(l.time)) >= after)).session as string;

let recorded = '';

t.test('ssh -tt: a pty shell driven by a script; lines are audited', async (t) => {
  const started = Date.now();
  const sh = shell(token);
  sh.type('echo ready-$((40+2))\r');
  await sh.waitFor(/ready-42/);
  sh.type('echo "tty: $(tty)"; printf "%s\\n" "$TERM"\r');
  await sh.waitFor(/tty: \/dev\/pts\//);
  sh.type('exit 7\r');
  const r = await sh.done;
  t.equal(r.code, 7, 'the shell exit status comes back');
  recorded = await sessionOf('alice', started);
  const line = await gw.waitForLog((l) => l.event === 'session.close' && l.session === recorded);
  t.ok(Number(line.statements) >= 3, 'typed lines are counted as statements');
});

/** Types `word` one character at a time, waiting for each echo; returns the echo times in ms. */
async function typeTimed(sh: ReturnType<typeof shell>, word: string): Promise<number[]> {
  const ms: number[] = [];
  for (const ch of word) {
    const t0 = process.hrtime.bigint();
    sh.type(ch);
    await sh.waitFor(new RegExp(`${ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`), 5000);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ms;
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

t.test('masking in a pty shell: the prompt and typed characters show at once; a value split by a pause is masked', async (t) => {
  const echo: Record<string, number[]> = {};
  for (const [who, tok] of [['unmasked', token], ['masked', maskedTok]] as const) {
    const sh = shell(tok);
    // The prompt ends in '$ ' with no newline after it; it must not wait for more output.
    sh.type("PS1='user@host:~$ '\r");
    await sh.waitFor(/user@host:~\$ $/);
    // A word being typed could be the start of an email address: its echo is still not held.
    echo[who] = await typeTimed(sh, 'jane.doe');
    sh.type('\x15');
    sh.type(`printf 'jane.doe@exa'; sleep 0.3; printf 'mple.com\\n'\r`);
    await sh.waitFor(/@example\.com\r\n(\x1b\[\?2004h)?user@host:~\$ $/);
    const out = sh.output().replace(/\x1b\[\?2004[hl]/g, ''); // bracketed paste on/off around the prompt
    const result = out.slice(out.lastIndexOf("'mple.com\\n'") + 13).replace(/\r/g, '');
    if (who === 'masked') t.equal(result, '\n****@example.com\nuser@host:~$ ', 'the value is masked although its halves came 300 ms apart');
    else t.equal(result, '\njane.doe@example.com\nuser@host:~$ ');
    sh.type('exit\r');
    t.equal((await sh.done).code, 0);
  }
  const m = echo.masked!;
  const u = echo.unmasked!;
  t.comment(`echo of a typed character: masked median ${median(m).toFixed(1)} ms (max ${Math.max(...m).toFixed(1)}), unmasked median ${median(u).toFixed(1)} ms (max ${Math.max(...u).toFixed(1)})`);
  t.ok(Math.max(...m) < 2000, 'every typed character was echoed well before the next could be typed');
});

t.test('exec: a command the policy denies gets exit 126 and the reason', async (t) => {
  const victim = path.join(scratch, 'victim');
  fs.writeFileSync(victim, 'x');
  const r = await run('ssh', ro, ['-p', port, 'web01@127.0.0.1', `rm -f ${victim}`]);
  t.equal(r.code, 126);
  t.match(r.stderr, /^sluice: command denied: only read-only commands on web01 \(policy "ops-read-only", rule "ops-read-only#1"\)/);
  t.ok(fs.existsSync(victim), 'the command never ran');
  const ok = await run('ssh', ro, ['-p', port, 'web01@127.0.0.1', `cat ${victim}`]);
  t.equal(ok.code, 0);
  t.equal(ok.stdout.toString(), 'x');
  const audit = await gw.waitForLog((l) => l.event === 'policy.decision' && l.protocol === 'ssh' && l.sub === 'bob' && l.decision === 'deny');
  t.equal(audit.query, `rm -f ${victim}`);
});

t.test('shell: a denied line never runs; the shell goes on', async (t) => {
  const victim = path.join(scratch, 'victim2');
  const sh = shell(ro);
  sh.type('echo ready\r');
  await sh.waitFor(/ready\r?\n/);
  sh.type(`touch ${victim}\r`);
  await sh.waitFor(/sluice: command denied: only read-only commands on web01/);
  sh.type('echo still-$((1+1))\r');
  await sh.waitFor(/still-2/);
  // A multi-line command is decided at the line that completes it, and dropped whole (Ctrl-C).
  sh.type('for i in 1 2; do\r');
  await sh.waitFor(/> $/);
  sh.type(`touch ${victim}; done\r`);
  await sh.waitFor(/sluice: command denied: only read-only[^]*sluice: command denied: only read-only/);
  sh.type('if true; then\recho multi-$((2+3))\rfi\r');
  await sh.waitFor(/multi-5/);
  // Editing keys are followed: the line that runs is "echo fixed".
  sh.type('echo brokXX\x7f\x7f\x7fen\x15echo fixed\r');
  await sh.waitFor(/[\r\n]fixed\r\n/);
  sh.type('exit\r');
  const r = await sh.done;
  t.equal(r.code, 0);
  t.notOk(fs.existsSync(victim), 'the denied command did not run');
  const fixed = await gw.waitForLog((l) => l.event === 'policy.decision' && l.sub === 'bob' && l.query === 'echo fixed');
  t.equal(fixed.decision, 'allow', 'the edited line is what was decided');
});

t.test('without a pty, lines from stdin are decided before the shell sees them', async (t) => {
  const victim = path.join(scratch, 'victim3');
  const r = await run('ssh', ro, ['-T', '-p', port, 'web01@127.0.0.1'], { input: `echo one\ntouch ${victim}\necho two\n` });
  t.equal(r.stdout.toString(), 'one\ntwo\n');
  t.match(r.stderr, /sluice: command denied: only read-only commands/);
  t.notOk(fs.existsSync(victim));
  const script = [
    'if true; then',
    '  echo in-if',
    'fi',
    `cat <<EOF`,
    `touch ${victim}`,
    'EOF',
    `for i in 1 2; do touch ${victim}; done`,
    'echo end',
  ].join('\n');
  const multi = await run('ssh', ro, ['-T', '-p', port, 'web01@127.0.0.1'], { input: script + '\n' });
  t.equal(multi.stdout.toString(), `in-if\ntouch ${victim}\nend\n`, 'compound commands and here-documents are decided whole');
  t.match(multi.stderr, /sluice: command denied/);
  t.notOk(fs.existsSync(victim));
  const bash = await run('ssh', nw, ['-p', port, 'web01@127.0.0.1', 'bash'], { input: `echo three\ntouch ${victim}\necho four` });
  t.equal(bash.stdout.toString(), 'three\nfour\n', 'also for `ssh host bash` (a shell reading its commands from the session), up to the last line without a newline');
  t.match(bash.stderr, /sluice: command denied: no writes/);
  t.notOk(fs.existsSync(victim));
});

t.test('review: an exec waits for an approver, then runs (or is refused with the reason)', async (t) => {
  const file = path.join(scratch, 'approved');
  const api = (p: string, body: unknown) =>
    fetch(`${gw.adminUrl}${p}`, { method: 'POST', headers: { authorization: `Bearer ${lead}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const held = run('ssh', rv, ['-p', port, 'web01@127.0.0.1', `touch ${file} && echo done`]);
  const req = await gw.waitForLog((l) => l.event === 'approval.requested' && l.sub === 'dave');
  t.notOk(fs.existsSync(file), 'held: not run yet');
  t.equal((await api(`/api/approvals/${req.approval}/approve`, { reason: 'ok' })).status, 200);
  const r = await held;
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), 'done\n');
  t.match(r.stderr, new RegExp(`sluice: waiting for approval ${req.approval}`));
  t.match(r.stderr, /sluice: approved by lead-1/);
  t.ok(fs.existsSync(file));

  const other = path.join(scratch, 'refused');
  const held2 = run('ssh', rv, ['-p', port, 'web01@127.0.0.1', `touch ${other}`]);
  const req2 = await gw.waitForLog((l) => l.event === 'approval.requested' && l.sub === 'dave' && l.approval !== req.approval);
  t.equal((await api(`/api/approvals/${req2.approval}/deny`, { reason: 'not today' })).status, 200);
  const r2 = await held2;
  t.equal(r2.code, 126);
  t.match(r2.stderr, /sluice: command denied by approver lead-1: not today \(approval \w+, rule [^)]+\)/);
  t.notOk(fs.existsSync(other));
});

t.test('kill switch: an admin kill ends a live shell within a second, with the reason', async (t) => {
  const started = Date.now();
  const sh = shell(token);
  sh.type('echo alive\r');
  await sh.waitFor(/alive\r?\n/);
  const id = await sessionOf('alice', started);
  const t0 = Date.now();
  const res = await fetch(`${gw.adminUrl}/api/sessions/${id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'incident 7' }),
  });
  t.equal(res.status, 200);
  const r = await sh.done;
  const ms = Date.now() - t0;
  t.ok(ms < 1500, `the client was cut off in ${ms} ms`);
  t.not(r.code, 0);
  t.match(sh.output() + r.stderr, /sluice: session terminated: session killed by admin-1: incident 7/);
  const closed = await gw.waitForLog((l) => l.event === 'session.close' && l.session === id);
  t.match(closed.reason, /session killed by admin-1: incident 7/);
});

t.test('replay and asciicast export of the recorded shell session', async (t) => {
  const cli = (args: string[]) => execFileP(process.execPath, [BIN, ...args, '--config', gw.configPath], { maxBuffer: 16 << 20 });
  // Recordings are flushed in batches: wait until the session is listed as closed.
  for (let i = 0; i < 50; i++) {
    const { stdout } = await cli(['sessions', 'list', '--json']);
    if ((JSON.parse(stdout) as any[]).some((s) => s.id === recorded && s.status === 'closed')) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const replay = await cli(['replay', recorded, '--no-wait']);
  t.match(replay.stdout, /ssh → web01/);
  t.match(replay.stdout, /ready-42/);
  t.match(replay.stdout, /tty: \/dev\/pts\//);
  const t0 = Date.now();
  const slow = await cli(['replay', recorded, '--speed', '1000']);
  t.ok(Date.now() - t0 < 10_000, 'plays at speed');
  t.match(slow.stdout, /ready-42/);

  const cast = (await cli(['export', recorded, '--format', 'asciicast'])).stdout.trim().split('\n');
  const header = JSON.parse(cast[0]!);
  t.equal(header.version, 2);
  t.ok(header.width > 0 && header.height > 0, `size ${header.width}x${header.height}`);
  const events = cast.slice(1).map((l) => JSON.parse(l));
  t.ok(events.length > 2);
  let last = 0;
  for (const e of events) {
    t.ok(Array.isArray(e) && typeof e[0] === 'number' && e[0] >= last && (e[1] === 'o' || e[1] === 'r') && typeof e[2] === 'string', 'event shape');
    last = e[0];
  }
  const text = events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
  t.match(text, /ready-42/);

  const wrong = await cli(['export', 'nosuchsession', '--format', 'asciicast']).catch((e) => e);
  t.not(wrong.code, 0);
});

t.test('exec replay shows command, output and exit status', async (t) => {
  const started = Date.now();
  await run('ssh', token, ['-p', port, 'web01@127.0.0.1', 'echo out; echo err >&2; exit 4']);
  const id = await sessionOf('alice', started);
  await gw.waitForLog((l) => l.event === 'session.close' && l.session === id);
  const cli = (args: string[]) => execFileP(process.execPath, [BIN, ...args, '--config', gw.configPath]);
  let out = '';
  for (let i = 0; i < 50 && !/exit 4/.test(out); i++) {
    out = (await cli(['replay', id, '--no-wait'])).stdout;
    if (!/exit 4/.test(out)) await new Promise((r) => setTimeout(r, 200));
  }
  t.match(out, /\$ echo out; echo err >&2; exit 4/);
  t.match(out, /out\r?\n/);
  t.match(out, /err\r?\n/);
  t.match(out, /\[exit 4\]/);
});
