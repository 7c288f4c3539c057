// A throwaway OpenSSH server for the SSH tests: its own config, host key and
// authorized key (only Sluice holds the private half), password login off, on
// a free loopback port. Runs as the current user (root in CI: then it allows
// only key logins for root). Also: clients (ssh, scp, sftp with sshpass).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { freePort } from './ports.js';

export interface Sshd {
  host: string;
  port: number;
  /** The OS user Sluice logs in as. */
  user: string;
  dir: string;
  /** The private key Sluice uses (authorized on this sshd). */
  clientKey: string;
  /** The host key's fingerprint ("SHA256:...") and a known_hosts line for it. */
  fingerprint: string;
  knownHosts: string;
  /** Another key pair's fingerprint (for mismatch tests). */
  otherFingerprint: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

function keygen(file: string, comment: string): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
}

function fingerprintOf(pub: string): string {
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub], { encoding: 'utf8' }).split(/\s+/)[1]!;
}

function sftpServer(): string {
  for (const p of ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/lib/ssh/sftp-server']) if (fs.existsSync(p)) return p;
  return 'internal-sftp';
}

export async function startSshd(t: { teardown(fn: () => unknown): void }): Promise<Sshd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sshd-'));
  fs.chmodSync(dir, 0o755);
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  const clientKey = path.join(dir, 'sluice_key');
  const other = path.join(dir, 'other_key');
  keygen(hostKey, 'test-sshd');
  keygen(clientKey, 'sluice');
  keygen(other, 'other');
  const authorized = path.join(dir, 'authorized_keys');
  fs.copyFileSync(`${clientKey}.pub`, authorized);
  fs.chmodSync(authorized, 0o600);
  const user = os.userInfo().username;
  const root = process.getuid?.() === 0;
  // sshd (as root) insists on its privilege separation directory.
  if (root) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  let proc: ChildProcess | undefined;
  let port = 0;
  let log = '';
  for (let attempt = 0; attempt < 5 && !proc; attempt++) {
    port = await freePort();
    const config = path.join(dir, 'sshd_config');
    fs.writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorized}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitEmptyPasswords no',
        root ? 'PermitRootLogin prohibit-password' : '',
        `AllowUsers ${user}`,
        'StrictModes no',
        'UsePAM no',
        'PrintMotd no',
        'PrintLastLog no',
        'AcceptEnv LANG LC_* SLUICE_*',
        'AllowTcpForwarding yes',
        'GatewayPorts no',
        'X11Forwarding no',
        'MaxSessions 50',
        // bash sources ~/.bashrc for commands run by sshd (SSH_CLIENT set, SHLVL below 2); on this
        // machine root's .bashrc runs `pyenv init`, 1-3 s per exec, >10 s under load. Not what is tested.
        'SetEnv SHLVL=1',
        'MaxStartups 50',
        `Subsystem sftp ${sftpServer()}`,
        'LogLevel ERROR',
      ]
        .filter(Boolean)
        .join('\n') + '\n',
    );
    const p = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout!.on('data', (c) => (log += c));
    p.stderr!.on('data', (c) => (log += c));
    if (await listening(port, p)) proc = p;
    else p.kill('SIGKILL');
  }
  if (!proc) throw new Error(`sshd did not start:\n${log}`);
  const running = proc;
  const stop = async () => {
    if (running.exitCode === null) {
      const exited = new Promise((r) => running.once('exit', r));
      running.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  t.teardown(stop);
  const pub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/);
  return {
    host: '127.0.0.1',
    port,
    user,
    dir,
    clientKey,
    fingerprint: fingerprintOf(`${hostKey}.pub`),
    knownHosts: `[127.0.0.1]:${port} ${pub[0]} ${pub[1]}`,
    otherFingerprint: fingerprintOf(`${other}.pub`),
    proc: running,
    stop,
  };
}

async function listening(port: number, p: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (p.exitCode !== null) return false;
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** A target config for this sshd (key login, host key pinned by fingerprint). */
export function sshTarget(sshd: Sshd, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 'ssh',
    host: sshd.host,
    port: sshd.port,
    user: sshd.user,
    private_key: { file: sshd.clientKey },
    host_key: { fingerprint: sshd.fingerprint },
    allow: ['group:ci', 'group:ops'],
    ...extra,
  };
}

/** Options every client run uses: no own keys offered, no host key prompts, quick failure. (Not IdentityAgent=none: it also turns agent forwarding off.) */
export const CLIENT_OPTS = [
  '-o', 'StrictHostKeyChecking=no',
  '-o', 'UserKnownHostsFile=/dev/null',
  '-o', 'GlobalKnownHostsFile=/dev/null',
  '-o', 'PubkeyAuthentication=no',
  '-o', 'ConnectTimeout=10',
  '-o', 'NumberOfPasswordPrompts=1',
  '-o', 'LogLevel=ERROR',
];

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

/** Runs a client program under sshpass with the token as the password; never rejects. */
export function run(
  prog: 'ssh' | 'scp' | 'sftp',
  token: string,
  args: string[],
  opts: { input?: string | Buffer; timeoutMs?: number; env?: Record<string, string>; onStdout?: (c: Buffer) => void; stdin?: 'pipe' | 'ignore'; logLevel?: string } = {},
): Promise<RunResult> & { proc: ChildProcess } {
  const started = Date.now();
  // -e: the token comes from SSHPASS, never on a command line.
  // ssh keeps the first value of an option: a run's own LogLevel goes first (INFO shows banners).
  const p = spawn('sshpass', ['-e', prog, ...(opts.logLevel ? ['-o', `LogLevel=${opts.logLevel}`] : []), ...CLIENT_OPTS, ...args], {
    env: { ...process.env, SSHPASS: token, ...(opts.env ?? {}) },
    stdio: [opts.stdin ?? 'pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  p.stdout!.on('data', (c: Buffer) => {
    out.push(c);
    opts.onStdout?.(c);
  });
  p.stderr!.on('data', (c) => (stderr += c));
  const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<RunResult>((resolve) => {
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr, ms: Date.now() - started });
    });
  }) as Promise<RunResult> & { proc: ChildProcess };
  if (p.stdin) {
    p.stdin.on('error', () => {});
    if (opts.input !== undefined) p.stdin.end(opts.input);
  }
  done.proc = p;
  return done;
}
