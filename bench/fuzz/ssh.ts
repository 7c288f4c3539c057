// Fuzzing the SSH listener.
//
// Corpus: OpenSSH's own identification line and KEXINIT, captured at prepare time from the real
// `ssh` client, plus a hand-built ECDH key-exchange init; sftp v3 packets of both directions
// (every request type, as OpenSSH's sftp sends them, and the replies sftp-server gives); command
// lines of the kinds the shell analysis handles (quotes, substitutions, wrappers, here-documents);
// keystroke streams with editing keys, escape sequences and bracketed paste.
//
// Live tier: mutated identification/KEXINIT/KEX_ECDH_INIT bytes on fresh connections (pre-auth,
// through Sluice's own admission code into ssh2's parser); and, logged in with a real token through
// ssh2's client, mutated sftp packet streams on sftp subsystem channels (Sluice's sftp parser sits
// between the client and a real sftp-server) and mutated exec command lines (the shell analysis
// and policy decide each). The fuzzing identity's policy denies every command and makes sftp
// read-only, so nothing the fuzzer sends can change the machine through the real sshd.
// In-process tier: SftpSession (both directions, read-only refusals on), analyzeShell and
// legacyScp on command lines, ShellLineTracker on keystrokes and output. Documented errors:
// SftpProtocolError; the others never throw.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import ssh2 from 'ssh2';
import { SftpSession, SftpProtocolError, isWriteRequest, auditRecord, FXP, FXF, FX } from '../../src/protocols/ssh/sftp-packets.js';
import { ShellLineTracker } from '../../src/protocols/ssh/shell-line.js';
import { legacyScp } from '../../src/protocols/ssh/policy.js';
import { analyzeShell } from '../../src/policy/shell/facts.js';
import { run, sshTarget, startSshd, type Sshd } from '../../test/helpers/sshd.js';
import { u32, u64, str } from '../../test/helpers/ssh-wire.js';
import type { Bench } from '../lib/paths.js';
import { caseRng, mutate, split, type Framing } from './mutator.js';
import { add, shoot, sleep, workers, type Bystander, type Counts, type Ctx, type FuzzProtocol, pacer } from './types.js';

const { Client } = ssh2;

// ---------------------------------------------------------------- SSH transport (pre-auth)

/** An SSH binary packet (unencrypted): length, padding length, payload, padding to a multiple of 8. */
function sshPacket(payload: Buffer): Buffer {
  let pad = 8 - ((5 + payload.length) % 8);
  if (pad < 4) pad += 8;
  const b = Buffer.alloc(5 + payload.length + pad);
  b.writeUInt32BE(1 + payload.length + pad, 0);
  b[4] = pad;
  payload.copy(b, 5);
  return b;
}

const SSH_FRAMING: Framing = {
  lengthAt: (m) => (m.length >= 4 && m.subarray(0, 4).toString('latin1') !== 'SSH-' ? 0 : null),
  lengthIncludesSelf: false,
  typeAt: 5,
  make: (type, body) => sshPacket(Buffer.concat([Buffer.from([type]), body])),
};

function builtKexinit(): Buffer {
  const lists = [
    'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c,kex-strict-c-v00@openssh.com',
    'ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256',
    'chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com',
    'chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com',
    'umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256',
    'umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256',
    'none,zlib@openssh.com',
    'none,zlib@openssh.com',
    '',
    '',
  ];
  return sshPacket(Buffer.concat([Buffer.from([20]), crypto.randomBytes(16), ...lists.map((l) => str(l)), Buffer.from([0]), u32(0)]));
}
const ECDH_INIT = sshPacket(Buffer.concat([Buffer.from([30]), str(crypto.randomBytes(32))]));

let capturedClient: Buffer[] | null = null;

/** The real OpenSSH client's identification line and KEXINIT, recorded by a server that only says hello. */
async function captureSshClient(): Promise<string[]> {
  const chunks: Buffer[] = [];
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.write('SSH-2.0-SluiceCapture_1.0\r\n');
    s.on('data', (c: Buffer) => chunks.push(c));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const p = run('ssh', 'x', ['-p', String(port), 'capture@127.0.0.1', 'true'], { timeoutMs: 1500 });
  await p;
  srv.close();
  const all = Buffer.concat(chunks);
  const nl = all.indexOf(0x0a);
  if (nl < 0 || all.length < nl + 6) return ['ssh client capture failed: built KEXINIT only'];
  const banner = all.subarray(0, nl + 1);
  const len = all.readUInt32BE(nl + 1);
  const kex = all.subarray(nl + 1, nl + 5 + len);
  if (kex.length !== 4 + len || kex[5] !== 20) return ['ssh client capture incomplete: built KEXINIT only'];
  capturedClient = [Buffer.from(banner), Buffer.from(kex)];
  return [`ssh: identification "${banner.toString().trim()}" and KEXINIT (${kex.length} bytes) captured from OpenSSH's client`];
}

function preAuthCorpus(): Buffer[][] {
  const banner = Buffer.from('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n');
  const kex = builtKexinit();
  return [
    ...(capturedClient ? [[...capturedClient, ECDH_INIT], capturedClient] : []),
    [banner, kex, ECDH_INIT],
    [banner, kex],
    [banner],
    [Buffer.from('SSH-1.99-PuTTY_Release_0.80\r\n'), kex],
    [Buffer.from('hello there\r\n'), banner, kex],
    [Buffer.from('SSH-2.0-x\n'), kex, ECDH_INIT, sshPacket(Buffer.from([21]))], // NEWKEYS before its time
    [banner, sshPacket(Buffer.concat([Buffer.from([5]), str('ssh-userauth')]))], // SERVICE_REQUEST before kex
    [banner, sshPacket(Buffer.concat([Buffer.from([1]), u32(11), str('bye'), str('')]))], // DISCONNECT
    [banner, sshPacket(Buffer.concat([Buffer.from([2]), str('ignore me')])), kex], // IGNORE
  ];
}

// ---------------------------------------------------------------- SFTP

function sftpPkt(type: number, ...fields: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...fields]);
  return Buffer.concat([u32(body.length), body]);
}
const attrs = (a: { size?: number; perm?: number; times?: boolean } = {}) => {
  let flags = 0;
  const parts: Buffer[] = [];
  if (a.size !== undefined) (flags |= 1), parts.push(u64(a.size));
  if (a.perm !== undefined) (flags |= 4), parts.push(u32(a.perm));
  if (a.times) (flags |= 8), parts.push(u32(1700000000), u32(1700000001));
  return Buffer.concat([u32(flags), ...parts]);
};
const SFTP_FRAMING: Framing = {
  lengthAt: (m) => (m.length >= 4 ? 0 : null),
  lengthIncludesSelf: false,
  typeAt: 4,
  make: (type, body) => sftpPkt(type, body),
};

/** Client request sequences under `dir` (a directory of the run; the fuzz identity is read-only anyway). */
function sftpClientCorpus(dir: string): Buffer[][] {
  const f = `${dir}/a.txt`;
  const H = Buffer.from([0, 0, 0, 1]);
  const init = sftpPkt(FXP.INIT, u32(3));
  return [
    [init, sftpPkt(FXP.REALPATH, u32(1), str('.'))],
    [init, sftpPkt(FXP.OPEN, u32(2), str(f), u32(FXF.READ), attrs()), sftpPkt(FXP.READ, u32(3), str(H), u64(0), u32(32768)), sftpPkt(FXP.CLOSE, u32(4), str(H))],
    [init, sftpPkt(FXP.OPENDIR, u32(5), str(dir)), sftpPkt(FXP.READDIR, u32(6), str(H)), sftpPkt(FXP.CLOSE, u32(7), str(H))],
    [init, sftpPkt(FXP.STAT, u32(8), str(f)), sftpPkt(FXP.LSTAT, u32(9), str(dir)), sftpPkt(FXP.FSTAT, u32(10), str(H))],
    [init, sftpPkt(FXP.READLINK, u32(11), str(`${dir}/link`))],
    [init, sftpPkt(FXP.EXTENDED, u32(12), str('statvfs@openssh.com'), str(dir)), sftpPkt(FXP.EXTENDED, u32(13), str('limits@openssh.com'))],
    [init, sftpPkt(FXP.OPEN, u32(14), str(`${dir}/new.bin`), u32(FXF.WRITE | FXF.CREAT | FXF.TRUNC), attrs({ perm: 0o644 })), sftpPkt(FXP.WRITE, u32(15), str(H), u64(0), str(crypto.randomBytes(200)))],
    [init, sftpPkt(FXP.SETSTAT, u32(16), str(f), attrs({ perm: 0o600, times: true })), sftpPkt(FXP.FSETSTAT, u32(17), str(H), attrs({ size: 0 }))],
    [init, sftpPkt(FXP.MKDIR, u32(18), str(`${dir}/d`), attrs({ perm: 0o755 })), sftpPkt(FXP.RMDIR, u32(19), str(`${dir}/d`))],
    [init, sftpPkt(FXP.RENAME, u32(20), str(f), str(`${dir}/b.txt`)), sftpPkt(FXP.REMOVE, u32(21), str(f))],
    [init, sftpPkt(FXP.SYMLINK, u32(22), str(f), str(`${dir}/l2`)), sftpPkt(FXP.EXTENDED, u32(23), str('posix-rename@openssh.com'), str(f), str(`${dir}/c.txt`))],
    [init, sftpPkt(FXP.EXTENDED, u32(24), str('hardlink@openssh.com'), str(f), str(`${dir}/h`)), sftpPkt(FXP.EXTENDED, u32(25), str('fsync@openssh.com'), str(H))],
    [sftpPkt(FXP.STAT, u32(26), str(f))], // a request before INIT
  ];
}

/** Server reply sequences (for the in-process tier's server direction). */
function sftpServerCorpus(): Buffer[][] {
  const H = Buffer.from([0, 0, 0, 1]);
  return [
    [sftpPkt(FXP.VERSION, u32(3), str('posix-rename@openssh.com'), str('1'), str('statvfs@openssh.com'), str('2'))],
    [sftpPkt(FXP.HANDLE, u32(2), str(H)), sftpPkt(FXP.DATA, u32(3), str(crypto.randomBytes(300))), sftpPkt(FXP.STATUS, u32(4), u32(FX.OK), str('Success'), str('en'))],
    [sftpPkt(FXP.NAME, u32(6), u32(2), str('.'), str('drwx . '), attrs(), str('a.txt'), str('-rw a.txt'), attrs({ size: 12, perm: 0o644, times: true }))],
    [sftpPkt(FXP.ATTRS, u32(8), attrs({ size: 1500 })), sftpPkt(FXP.STATUS, u32(9), u32(FX.NO_SUCH_FILE), str('No such file'), str('en'))],
    [sftpPkt(FXP.EXTENDED_REPLY, u32(12), u64(1), u64(2), u64(3))],
    [sftpPkt(FXP.STATUS, u32(21), u32(FX.PERMISSION_DENIED), str('denied'), str(''))],
  ];
}

// ---------------------------------------------------------------- shell text and keystrokes

const COMMANDS = [
  'ls -la /tmp',
  'echo "hello $USER" | tr a-z A-Z > /tmp/out.txt 2>&1',
  "bash -c 'rm -rf /tmp/x; echo done'",
  'sudo -u root nice -n 5 rm -rf /',
  "r\\m -rf / ; \"rm\" -r /etc ; $'\\x72m' -f /boot/x",
  'curl -fsSL https://example.com/i.sh | sh',
  'for f in *.log; do gzip "$f"; done && echo ok || echo fail &',
  'cat <<EOF > /etc/motd\nhello\nEOF\n',
  'find / -name "*.tmp" -exec rm {} \\;',
  'x=$(date +%s); echo ${x:-none} `whoami` $((1+2))',
  'if [ -f /etc/passwd ]; then grep root /etc/passwd; fi',
  'case $1 in a|b) echo ab;; *) echo other;; esac',
  'f() { echo "in f"; }; f; (cd /tmp && ls) ; { echo a; echo b; }',
  'scp -t /tmp/upload',
  'scp -f /etc/hosts',
  'env -i PATH=/usr/bin LD_PRELOAD=/x.so sh -s < script.sh',
  "awk 'BEGIN { system(\"id\") }' /dev/null; python3 -c 'print(1)'",
  'tee -a /etc/sudoers.d/x <<< "ALL ALL=(ALL) NOPASSWD: ALL"',
  'diff <(ls /a) >(cat) ; echo {a,b}{c,d} ; !! ; eval "$(curl -s x)"',
  'xargs -0 rm -f < list ; timeout 5 ssh host "rm -rf /var"',
];

const KEYSTROKES: Buffer[][] = [
  [Buffer.from('ls -la\r')],
  [Buffer.from('echo hi\x7f\x7fho\r'), Buffer.from('rm -rf /\x15echo safe\r')],
  [Buffer.from('git sta\t\r'), Buffer.from('\x1b[A\r')],
  [Buffer.from('\x1b[200~paste\nmore\x1b[201~\r')],
  [Buffer.from('vim x\r'), Buffer.from('\x1b:wq\r')],
  [Buffer.from('sudo ls\r'), Buffer.from('hunter2\r')],
  [Buffer.from('cat \x17tac\x03echo x\x1bOA\x1b[1;5C\r\n')],
];
const OUTPUTS = [Buffer.from('[sudo] password for root: '), Buffer.from('\x1b[?1049h\x1b[H'), Buffer.from('\x1b[?1049l$ '), Buffer.from('user@host:~$ ')];

const TEXT_FRAMING: Framing = { lengthAt: () => null, lengthIncludesSelf: false, typeAt: null, make: (_t, b) => b };

function describeErr(e: unknown): string {
  const err = e as Error;
  return `${err?.name ?? typeof e}: ${err?.message ?? String(e)}${err?.stack ? ' @ ' + err.stack.split('\n').slice(1, 4).join(' | ').trim() : ''}`;
}

// ---------------------------------------------------------------- live, post-auth

function connectSsh(ctx: Ctx, source: string, token: string): Promise<InstanceType<typeof Client>> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: ctx.gw.sshPort!, localAddress: source });
    sock.on('error', () => {});
    const c = new Client();
    const timer = setTimeout(() => (c.end(), reject(new Error('ssh login timed out'))), 20_000);
    c.on('ready', () => (clearTimeout(timer), resolve(c)));
    c.on('error', (e) => (clearTimeout(timer), reject(e)));
    c.connect({ sock, username: 'web01', password: token, hostVerifier: () => true, readyTimeout: 20_000, keepaliveInterval: 0 });
  });
}

type Channel = ssh2.ClientChannel;

function openSftp(c: InstanceType<typeof Client>): Promise<Channel> {
  return new Promise((resolve, reject) => c.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
}

/** Waits for a channel to answer (any data) or close, at most `ms`. */
function settle(ch: Channel, ms: number): Promise<'data' | 'closed' | 'quiet'> {
  return new Promise((resolve) => {
    let done = false;
    const fin = (r: 'data' | 'closed' | 'quiet') => {
      if (done) return;
      done = true;
      clearTimeout(t);
      ch.off('data', onData);
      ch.off('close', onClose);
      resolve(r);
    };
    const onData = () => fin('data');
    const onClose = () => fin('closed');
    const t = setTimeout(() => fin('quiet'), ms);
    ch.on('data', onData);
    ch.once('close', onClose);
  });
}

let sftpDir = '/tmp';

async function liveSession(ctx: Ctx, source: string, first: { sftp: number; exec: number }, counts: Counts): Promise<{ sftp: number; exec: number }> {
  const used = { sftp: 0, exec: 0 };
  let c: InstanceType<typeof Client>;
  try {
    c = await connectSsh(ctx, source, ctx.fuzzToken);
  } catch (e) {
    add(counts.notes, `post-auth login failed`);
    return used;
  }
  let gone = false;
  c.on('close', () => (gone = true));
  c.on('error', () => {});
  add(counts.notes, 'post-auth ssh sessions');
  const corpus = sftpClientCorpus(sftpDir);
  try {
    for (let round = 0; round < 6 && !gone && Date.now() < ctx.deadline; round++) {
      const rr = caseRng(ctx.seed, 'ssh-live-round', first.sftp + first.exec + round);
      if (rr.chance(0.7)) {
        let ch: Channel;
        try {
          ch = await openSftp(c);
        } catch {
          add(counts.notes, 'sftp channel refused');
          continue;
        }
        add(counts.notes, 'sftp channels');
        ch.on('data', () => {});
        ch.stderr.on('data', () => {});
        let closed = false;
        ch.once('close', () => (closed = true));
        for (let k = 0; k < 12 && !closed && !gone && Date.now() < ctx.deadline; k++) {
          const n = first.sftp + used.sftp++;
          const rng = caseRng(ctx.seed, 'ssh-live-sftp', n);
          const m = mutate(rng, rng.pick(corpus), SFTP_FRAMING, { framingSafe: rng.chance(0.6), maxOversize: 300_000 });
          for (const piece of split(rng, m.bytes)) if (!closed) ch.write(piece);
          add(counts.cases, 'sftp packet stream (post-auth)');
          const r = await settle(ch, 400);
          if (r === 'closed') add(counts.notes, 'sftp channels closed by the gateway');
        }
        if (!closed) ch.close();
      } else {
        const n = first.exec + used.exec++;
        const rng = caseRng(ctx.seed, 'ssh-live-exec', n);
        const m = mutate(rng, [Buffer.from(rng.pick(COMMANDS))], TEXT_FRAMING, { maxOversize: 20_000 });
        const cmd = m.bytes.toString(rng.chance(0.5) ? 'utf8' : 'latin1');
        const code = await new Promise<number | null>((resolve) => {
          c.exec(cmd, (err, ch) => {
            if (err) return resolve(-1);
            let exit: number | null = null;
            ch.on('data', () => {});
            ch.stderr.on('data', () => {});
            ch.on('exit', (x: number | null) => (exit = x));
            ch.on('close', () => resolve(exit));
            setTimeout(() => ch.close(), 5000).unref();
          });
        });
        add(counts.cases, 'exec command line (post-auth)');
        if (code === 126) add(counts.notes, 'exec denied by policy (126)');
        else add(counts.notes, `exec ended with ${code}`);
      }
    }
  } finally {
    c.end();
  }
  return used;
}

// ---------------------------------------------------------------- the entry

let sshdRef: Sshd | null = null;

export const ssh: FuzzProtocol = {
  name: 'ssh',
  describe: 'identification/KEXINIT/ECDH init before login; sftp packets and exec command lines after login; sftp parser, shell analysis and line tracker in process',

  async prepare(b: Bench) {
    const sshd = await startSshd(b);
    sshdRef = sshd;
    sftpDir = fs.mkdtempSync(path.join(sshd.dir, 'sftp-'));
    fs.writeFileSync(path.join(sftpDir, 'a.txt'), 'hello fuzz\n');
    return {
      ssh: true,
      targets: { web01: sshTarget(sshd, { allow: ['group:ci', 'group:fuzz'] }) },
      policies: [
        // Nothing the fuzzer sends may change the machine: every command denied, sftp read-only, no shell, no forwarding.
        { name: 'fuzz-ssh', match: { groups: ['fuzz'], protocols: ['ssh'] }, ssh: { shell: 'deny', sftp: 'read_only' }, rules: [{ deny: { kind: ['command'] } }] },
        { name: 'bystander-ssh', match: { groups: ['ci'], protocols: ['ssh'] }, ssh: { shell: 'deny' }, rules: [{ allow: { commands: ['echo'] } }] },
      ],
      capture: () => captureSshClient(),
    };
  },

  bystander(ctx: Ctx): Bystander {
    const st: Bystander = { name: 'ssh: exec `echo` every 300 ms on one ssh2 session + a fresh OpenSSH `ssh` login every 5 s', ok: 0, failed: 0, latencies: [], errors: [], stop: async () => {} };
    let running = true;
    const note = (e: string) => {
      st.failed++;
      if (st.errors.length < 20) st.errors.push(`${new Date().toISOString()} ${e}`);
    };
    const loop = (async () => {
      let c: InstanceType<typeof Client> | null = null;
      let i = 0;
      while (running) {
        try {
          if (!c) {
            c = await connectSsh(ctx, '127.0.0.1', ctx.bystanderToken);
            c.on('error', () => {});
          }
          const t0 = performance.now();
          const word = `bystander-${i}`;
          const out = await new Promise<string>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('exec timed out (10 s)')), 10_000);
            c!.exec(`echo ${word}`, (err, ch) => {
              if (err) return clearTimeout(timer), reject(err);
              let o = '';
              ch.on('data', (d: Buffer) => (o += d));
              ch.stderr.on('data', () => {});
              ch.on('close', () => (clearTimeout(timer), resolve(o)));
            });
          });
          if (out.trim() !== word) throw new Error(`wrong output ${JSON.stringify(out.slice(0, 100))}`);
          st.latencies.push(performance.now() - t0);
          st.ok++;
          i++;
        } catch (e) {
          note(`exec: ${(e as Error).message}`);
          c?.end();
          c = null;
        }
        await sleep(300);
      }
      c?.end();
    })();
    const fresh = (async () => {
      while (running) {
        for (let s = 0; s < 50 && running; s++) await sleep(100);
        if (!running) break;
        const r = await run('ssh', ctx.bystanderToken, ['-p', String(ctx.gw.sshPort), 'web01@127.0.0.1', 'echo fresh-ok'], { timeoutMs: 30_000 });
        if (r.code === 0 && r.stdout.toString().trim() === 'fresh-ok') {
          st.ok++;
          st.latencies.push(r.ms);
        } else note(`ssh login: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
      }
    })();
    st.stop = async () => {
      running = false;
      await Promise.all([loop, fresh]);
    };
    return st;
  },

  async live(ctx: Ctx): Promise<Counts> {
    const counts: Counts = { cases: {}, notes: {} };
    const corpus = preAuthCorpus();
    let pre = 0;
    const next = { sftp: 0, exec: 0 };
    const total = () => pre + next.sftp + next.exec;
    const more = () => Date.now() < ctx.deadline && total() < ctx.maxLiveCases;
    const postWorkers = Math.max(1, Math.floor(ctx.concurrency / 4));
    await workers(ctx.concurrency, async (w) => {
      if (!more()) return false;
      const source = ctx.sources[w % ctx.sources.length]!;
      if (w < postWorkers) {
        // Reserve case numbers (a session uses at most 6 rounds x 12 sftp cases, or 6 execs).
        const first = { sftp: next.sftp, exec: next.exec };
        next.sftp += 72;
        next.exec += 6;
        const used = await liveSession(ctx, source, first, counts);
        // Give back what was not used, when nobody reserved after us (keeps the numbering dense; gaps are harmless).
        if (next.sftp === first.sftp + 72) next.sftp = first.sftp + used.sftp;
        if (next.exec === first.exec + 6) next.exec = first.exec + used.exec;
        return true;
      }
      const n = pre++;
      const rng = caseRng(ctx.seed, 'ssh-live-pre', n);
      const m = mutate(rng, rng.pick(corpus), SSH_FRAMING);
      const r = await shoot(ctx.gw.sshPort!, source, split(rng, m.bytes), { waitMs: 300, halfClose: rng.chance(0.5) });
      add(counts.cases, 'pre-auth connection');
      if (r.error) add(counts.notes, `pre-auth socket ${r.error}`);
      return true;
    });
    return counts;
  },

  async inProcess(ctx: Ctx, cases: number, onProgress, from = 0): Promise<Counts> {
    const counts: Counts = { cases: {}, notes: {} };
    const client = sftpClientCorpus('/srv/fuzz');
    const server = sftpServerCorpus();
    const finding = (stream: string, n: number, e: unknown, ops?: string[], input?: Buffer) =>
      ctx.findings.push({ protocol: 'ssh', stream, case: n, error: describeErr(e), ops, input: input?.subarray(0, 256).toString('hex') });
    const pace = pacer(onProgress);
    for (let n = from; n < from + cases; n++) {
      const paused = pace(n - from);
      if (paused) await paused;
      const pick = n % 10;
      if (pick < 5) {
        const rng = caseRng(ctx.seed, 'ssh-sftp', n);
        const big = rng.chance(0.02) ? 300_000 : 20_000; // now and then past MAX_PACKET
        const mc = mutate(rng, rng.pick(client), SFTP_FRAMING, { framingSafe: rng.chance(0.5), maxOversize: big });
        const ms = mutate(rng, rng.pick(server), SFTP_FRAMING, { framingSafe: rng.chance(0.5), maxOversize: big });
        let out = 0;
        const s = new SftpSession({
          toServer: (b) => (out += b.length),
          toClient: (b) => (out += b.length),
          onOp: (op) => void auditRecord(op),
          refuse: (op) => (isWriteRequest(op) ? 'read-only' : undefined),
        });
        const cs = split(rng, mc.bytes);
        const ss = split(rng, ms.bytes);
        let ci = 0;
        let si = 0;
        let dead = { c: false, s: false };
        while ((ci < cs.length && !dead.c) || (si < ss.length && !dead.s)) {
          const fromClient = !dead.c && ci < cs.length && (dead.s || si >= ss.length || rng.chance(0.5));
          try {
            if (fromClient) s.clientData(cs[ci++]!);
            else s.serverData(ss[si++]!);
          } catch (e) {
            if (e instanceof SftpProtocolError) {
              add(counts.notes, 'sftp protocol errors (documented)');
              if (fromClient) dead.c = true;
              else dead.s = true;
            } else {
              finding('ssh-sftp', n, e, [...mc.ops, '|', ...ms.ops], fromClient ? mc.bytes : ms.bytes);
              break;
            }
          }
        }
        add(counts.cases, 'sftp session (both directions)');
      } else if (pick < 8) {
        const rng = caseRng(ctx.seed, 'ssh-shell', n);
        const m = mutate(rng, [Buffer.from(rng.pick(COMMANDS))], TEXT_FRAMING, { maxOversize: 20_000 });
        const line = m.bytes.toString(rng.chance(0.5) ? 'utf8' : 'latin1');
        try {
          const f = analyzeShell(line);
          if (f.parse_error) add(counts.notes, 'shell parse errors (documented result)');
          legacyScp(line);
        } catch (e) {
          finding('ssh-shell', n, e, m.ops, m.bytes);
        }
        add(counts.cases, 'shell analysis (exec line)');
      } else {
        const rng = caseRng(ctx.seed, 'ssh-keys', n);
        const m = mutate(rng, rng.pick(KEYSTROKES), TEXT_FRAMING, { maxOversize: 16_000 });
        const t = new ShellLineTracker();
        try {
          for (const piece of split(rng, m.bytes)) {
            if (rng.chance(0.2)) t.observeOutput(rng.chance(0.5) ? rng.pick(OUTPUTS) : rng.bytes(rng.int(64)));
            for (const ev of t.feed(piece)) if (!ev.secret && rng.chance(0.3)) analyzeShell(ev.line);
          }
        } catch (e) {
          finding('ssh-keys', n, e, m.ops, m.bytes);
        }
        add(counts.cases, 'shell line tracker (keystrokes)');
      }
    }
    onProgress(cases);
    return counts;
  },

  async freshLogin(ctx: Ctx) {
    const r = await run('ssh', ctx.bystanderToken, ['-p', String(ctx.gw.sshPort), 'web01@127.0.0.1', 'echo after-fuzz'], { timeoutMs: 30_000 });
    return { ok: r.code === 0 && r.stdout.toString().trim() === 'after-fuzz', detail: r.code === 0 ? `ssh: ${r.stdout.toString().trim()}` : `ssh exit ${r.code}: ${r.stderr.trim()}` };
  },
};

void sshdRef;
