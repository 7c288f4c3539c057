// One session channel (a shell, an exec, or the sftp subsystem) relayed to the
// target: pty, window changes, allowed env, signals, exit status or signal, and
// the data of stdin, stdout and stderr with backpressure, masking and recording.
//
// The exec/shell/subsystem request is accepted at once (ssh2 returns nothing
// for a late accept once the client sent EOF, and `ssh host cmd </dev/null`
// would hang), then policy is checked and the upstream awaited; anything that
// stops the channel there is told on its stderr with an exit status.

import type ssh2 from 'ssh2';
import type { ClientChannel, ExecOptions, PseudoTtyInfo, ServerChannel, ShellOptions, X11Info } from 'ssh2';
import type { Core } from '../kit/module.js';
import type { Session } from '../../session/session.js';
import type { SshTargetConfig } from '../../config/types.js';
import { StreamMasker } from '../../policy/masking/stream.js';
import { recordData, Stream } from './frames.js';
import { Pump } from './pump.js';
import { HOLD_APPROVAL } from '../kit/holds.js';
import { legacyScp, readsCodeFromStdin, type SshOptions } from './policy.js';
import { STOP } from '../../governance/pipeline.js';
import { analyzeShell } from '../../policy/shell/facts.js';
import { ShellGate } from './shell-gate.js';
import { auditRecord, isWriteRequest, SftpProtocolError, SftpSession, type SftpOp } from './sftp-packets.js';
import type { SshClient } from './upstream.js';

/** What a channel needs from its connection. */
export interface ChannelHost {
  readonly core: Core;
  readonly session: Session;
  readonly target: SshTargetConfig;
  /** The logged-in upstream client; rejects with a message fit for the user. */
  upstream(): Promise<SshClient>;
  channelId(): number;
  options(): SshOptions;
  track(c: LiveChannel): void;
  untrack(c: LiveChannel): void;
  /** The client asked for X11 forwarding on a channel (and policy allowed it). */
  wantX11(): void;
  /** The client asked for agent forwarding (and policy allowed it). */
  enableAgent(): void;
  event(ev: Record<string, unknown>): void;
}

export interface LiveChannel {
  /** Kill switch: tell the client why, then close. */
  terminate(reason: string): void;
  /** The connection is gone: release everything quietly. */
  dispose(): void;
}

type Kind = 'shell' | 'exec' | 'sftp';

interface ExitInfo {
  code?: number;
  signal?: string;
  dump?: boolean;
  desc?: string;
}

const QUIET_SFTP_OPS = new Set(['stat', 'lstat', 'realpath', 'readlink', 'opendir']);

/** Exit status of a command Sluice refused (as a shell does for "cannot execute"). */
export const EXIT_DENIED = 126;
/** Exit status when Sluice itself failed (target unreachable, session terminated), like ssh's own errors. */
export const EXIT_SLUICE = 255;

function envAllowed(name: string, allow: string[]): boolean {
  return allow.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : p === name));
}

export class SessionChannel implements LiveChannel {
  readonly id: number;
  private pty?: PseudoTtyInfo;
  private readonly env: Record<string, string> = {};
  private x11?: X11Info;
  private agent = false;
  private kind?: Kind;
  private ch?: ServerChannel;
  private up?: ClientChannel;
  private exit: ExitInfo = {};
  private done = false;
  private upOut = false;
  private upErr = false;
  private upClosed = false;
  private inPump?: Pump;
  private outPump?: Pump;
  private errPump?: Pump;
  private outMask?: StreamMasker;
  private errMask?: StreamMasker;
  private shell?: ShellGate;
  private sftp?: SftpSession;
  private approval: { withdraw(reason: string): void } | null = null;
  /** An exec whose program reads commands from stdin: its input lines are decided like a shell's. */
  private stdinShell = false;

  constructor(
    private readonly host: ChannelHost,
    private readonly s: ssh2.Session,
  ) {
    this.id = host.channelId();
    host.track(this);
    this.event({ event: 'ssh.channel', type: 'session' });
    s.on('pty', (accept, reject, info) => {
      this.pty = info;
      this.event({ event: 'ssh.pty', term: info.term, cols: info.cols, rows: info.rows });
      accept?.();
    });
    s.on('window-change', (accept, reject, info) => {
      if (this.pty) Object.assign(this.pty, { cols: info.cols, rows: info.rows, width: info.width, height: info.height });
      this.event({ event: 'ssh.resize', cols: info.cols, rows: info.rows });
      this.up?.setWindow(info.rows, info.cols, info.height, info.width);
      accept?.();
    });
    s.on('env', (accept, reject, info) => {
      const ok = envAllowed(info.key, host.target.env_allow);
      this.event({ event: 'ssh.env', name: info.key, allowed: ok });
      if (ok) {
        this.env[info.key] = info.val;
        accept?.();
      } else reject?.();
    });
    s.on('signal', (accept, reject, info) => {
      this.event({ event: 'ssh.signal', name: info.name });
      this.up?.signal(info.name);
      accept?.();
    });
    s.on('x11', (accept, reject, info) => {
      if (!this.forwardEvent('x11', host.options().forwarding.x11)) return reject?.();
      this.x11 = info;
      host.wantX11();
      accept?.();
    });
    s.on('auth-agent', (accept, reject) => {
      if (!this.forwardEvent('agent', host.options().forwarding.agent)) return reject?.();
      this.agent = true;
      host.enableAgent();
      accept?.();
    });
    s.on('shell', (accept) => this.begin('shell', accept()));
    s.on('exec', (accept, reject, info) => this.begin('exec', accept(), info.command));
    s.on('subsystem', (accept, reject, info) => {
      if (info.name !== 'sftp') {
        this.event({ event: 'ssh.subsystem', name: info.name, allowed: false });
        return reject?.();
      }
      this.begin('sftp', accept());
    });
    s.on('close', () => this.clientClosed());
  }

  private get session(): Session {
    return this.host.session;
  }

  private event(ev: Record<string, unknown>): void {
    this.host.event({ ...ev, channel: this.id });
  }

  /** x11 or agent forwarding on this channel, allowed or refused by the session's options: through the pipeline. */
  private forwardEvent(kind: 'x11' | 'agent', allowed: boolean): boolean {
    return this.session.gov.sideChannel({
      event: 'ssh.forward',
      allowed,
      fields: { kind, channel: this.id },
      message: allowed ? `${kind} forwarding allowed` : `${kind} forwarding refused (no policy allows it: ssh.forwarding)`,
    });
  }

  /** A shell, sftp or scp the session's options refuse: through the pipeline, then refused on the channel. */
  private refuseOption(what: string, message: string): void {
    this.session.gov.sideChannel({ event: 'ssh.refused', allowed: false, fields: { what, channel: this.id }, message: `ssh ${what} refused: ${message}` });
    this.refuse(message, EXIT_DENIED);
  }

  private get nl(): string {
    return this.pty ? '\r\n' : '\n';
  }

  // ---- start: policy, then the upstream ------------------------------------------------------

  /** start(), with any unexpected error told to the client instead of escaping into ssh2. */
  private begin(kind: Kind, ch: ServerChannel | undefined, command?: string): void {
    try {
      this.start(kind, ch, command);
    } catch (err) {
      this.host.core.log.error({ event: 'ssh.error', session: this.session.id, channel: this.id, err: (err as Error).stack ?? String(err) }, 'ssh channel failed');
      if (this.ch) this.refuse('Sluice could not run this request (internal error); the gateway log has the details', EXIT_SLUICE);
    }
  }

  private start(kind: Kind, ch: ServerChannel | undefined, command?: string): void {
    if (!ch) return; // the client closed the channel meanwhile
    this.kind = kind;
    this.ch = ch;
    ch.on('error', () => {});
    ch.stderr.on('error', () => {});
    ch.on('close', () => this.clientClosed());
    const session = this.session;
    const t = this.host.target.name;
    const log = this.host.core.log;
    if (kind === 'exec') this.event({ event: 'ssh.exec', command });
    else if (kind === 'shell') this.event({ event: 'ssh.shell', pty: !!this.pty });
    else this.event({ event: 'ssh.subsystem', name: 'sftp' });
    log.info({ event: `ssh.${kind}`, session: session.id, sub: session.identity.sub, target: t, channel: this.id, pty: !!this.pty }, `ssh ${kind} on ${t}`);

    const opts = this.host.options();
    if (kind === 'shell' && opts.shell === 'deny') {
      return this.refuseOption('shell', `interactive shells are not allowed for you on target "${t}" (ssh.shell: deny); run single commands instead: ssh ${t}@<sluice> 'command'`);
    }
    if (kind === 'sftp' && opts.sftp === 'deny') {
      return this.refuseOption('sftp', `file transfer (sftp, scp) is not allowed for you on target "${t}" (ssh.sftp: deny)`);
    }
    if (kind === 'exec') {
      const scp = legacyScp(command!);
      if (scp) {
        // A bare legacy scp is a file transfer: the sftp setting governs it, not command rules.
        if (opts.sftp === 'deny' || (scp === 'upload' && opts.sftp === 'read_only')) {
          const what = opts.sftp === 'deny' ? 'file transfer (sftp, scp)' : 'uploading (scp to the target)';
          return this.refuseOption('scp', `${what} is not allowed for you on target "${t}" (ssh.sftp: ${opts.sftp})`);
        }
        this.event({ event: 'sftp.op', op: scp === 'upload' ? 'scp_upload' : 'scp_download', command, write: scp === 'upload', allowed: true });
      } else {
        // A command: through the governance pipeline; refused, held or run.
        const status = session.gov.govern({ text: command!, analyze: analyzeShell, noun: 'command' }, {
          refuse: (r) => this.refuse(r.message, EXIT_DENIED),
          notify: (text) => {
            if (!this.done) this.stderr(`sluice: ${text}${this.nl}`);
          },
          pause: (held) => (this.approval = held),
          proceed: () => {
            if (!this.done) this.open(kind, command);
          },
          resume: () => (this.approval = null),
        });
        if (status === STOP) return;
        if (readsCodeFromStdin(session, command!)) {
          // `ssh host bash` (or `sh -s`, `python -`): a shell whose commands come from this channel.
          if (opts.shell === 'deny') {
            return this.refuseOption('shell', `this command runs a shell that reads its commands from the session, and interactive shells are not allowed for you on target "${t}" (ssh.shell: deny)`);
          }
          this.stdinShell = true;
        }
      }
    }
    this.open(kind, command);
  }

  private open(kind: Kind, command?: string): void {
    this.host.upstream().then(
      (up) => {
        if (this.done) return;
        const cb = (err: Error | undefined, upc: ClientChannel) => {
          if (err) return this.refuse(`target "${this.host.target.name}" refused the ${kind} request: ${err.message}`, EXIT_SLUICE);
          if (this.done) return upc.close();
          this.wire(upc);
        };
        const env = Object.keys(this.env).length ? { ...this.env } : undefined;
        const p = this.pty;
        const pty = p ? { rows: p.rows, cols: p.cols, width: p.width, height: p.height, term: p.term, modes: p.modes } : undefined;
        const x11 = this.x11 ? { single: this.x11.single, protocol: this.x11.protocol, cookie: this.x11.cookie, screen: this.x11.screen } : undefined;
        try {
          // agentForward is an ssh2 option its types do not list.
          const agentForward = this.agent || undefined;
          if (kind === 'shell') up.shell(pty ?? false, { env, x11, agentForward } as ShellOptions, cb);
          else if (kind === 'exec') up.exec(command!, { env, pty, x11, agentForward } as ExecOptions, cb);
          else up.subsys('sftp', cb);
        } catch (err) {
          this.refuse(`the connection to target "${this.host.target.name}" is gone: ${(err as Error).message}`, EXIT_SLUICE);
        }
      },
      (err: Error) => this.refuse(err.message, EXIT_SLUICE),
    );
  }

  // ---- the data path ---------------------------------------------------------------------------

  private wire(upc: ClientChannel): void {
    const ch = this.ch!;
    this.up = upc;
    const session = this.session;
    const rec = session.recorder;
    const id = this.id;
    upc.on('error', () => {});
    // sftp: server output goes through the gate (it frames replies to place refusals between them).
    const outPump = (this.outPump = new Pump(upc, (b) =>
      this.sftp ? this.sftpData(() => this.sftp!.serverData(b)) : this.outMask ? this.outMask.push(b) : this.toClient(b, Stream.Stdout),
    ));
    const errPump = (this.errPump = new Pump(upc.stderr, (b) => (this.errMask ? this.errMask.push(b) : this.toClient(b, Stream.Stderr))));
    const inPump = (this.inPump = new Pump(ch, (chunk) => {
      session.bytesFromClient += chunk.length;
      if (rec) {
        recordData(rec, Stream.Stdin, id, chunk);
        inPump.checkRecorder(rec);
      }
      if (this.sftp) return this.sftpData(() => this.sftp!.clientData(chunk));
      // With a pty the terminal echoes keystrokes: the masker lets their echo out at once.
      if (this.pty) this.outMask?.noteInput(chunk);
      if (this.shell) this.shell.input(chunk);
      else inPump.write(upc, chunk);
    }));

    if (this.kind === 'sftp') {
      const denial = `sluice: target "${this.host.target.name}" is read-only for you (ssh.sftp: read_only)`;
      this.sftp = new SftpSession({
        toServer: (b) => inPump.write(upc, b),
        toClient: (b) => this.toClient(b, Stream.Stdout, true),
        onOp: (op, from, refused) => this.sftpOp(op, refused),
        // Re-read per request: a reload that makes sftp read-only applies at once.
        refuse: (op) => (this.host.options().sftp === 'read_only' && isWriteRequest(op) ? denial : undefined),
      });
    } else {
      const masking = session.masking();
      const scanner = masking?.scanner;
      if (masking && scanner) {
        const ctx = session.maskContext;
        this.outMask = new StreamMasker(scanner, masking.strategyFor, ctx, (b) => this.toClient(b, Stream.Stdout));
        this.errMask = new StreamMasker(scanner, masking.strategyFor, ctx, (b) => this.toClient(b, Stream.Stderr));
      }
      if (this.kind === 'shell' || this.stdinShell) {
        this.shell = new ShellGate(session, !!this.pty, {
          forward: (b) => inPump.write(upc, b),
          tell: (text) => (this.pty ? this.toClient(Buffer.from(`${this.nl}${text}${this.nl}`), Stream.Stdout) : this.stderr(`${text}${this.nl}`)),
          pause: () => inPump.hold(HOLD_APPROVAL),
          resume: () => inPump.release(HOLD_APPROVAL),
          line: (ev) => this.event({ event: 'ssh.line', ...ev }),
        });
      }
    }

    upc.on('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => {
      this.exit = code !== null && code !== undefined ? { code } : { signal, dump, desc };
      this.event({ event: 'ssh.exit', ...(code !== null && code !== undefined ? { code } : { signal, core_dumped: dump || undefined, message: desc || undefined }) });
    });
    upc.on('end', () => {
      this.upOut = true;
      this.maybeFinish();
    });
    upc.stderr.on('end', () => {
      this.upErr = true;
      this.maybeFinish();
    });
    upc.on('close', () => {
      this.upClosed = true;
      // A channel closed without EOF: its streams end now.
      this.maybeFinish();
    });
    ch.on('end', () => {
      this.event({ event: 'ssh.eof', side: 'client' });
      if (this.shell) this.shell.end(() => upc.end());
      else upc.end();
    });
    outPump.start();
    errPump.start();
    inPump.start();
  }

  /** Output for the client (after masking): recorded, counted, written with backpressure on its source. */
  private toClient(b: Buffer, stream: Stream.Stdout | Stream.Stderr, raw = false): void {
    if (b.length === 0 || !this.ch) return;
    const session = this.session;
    session.bytesToClient += b.length;
    const rec = session.recorder;
    if (rec) recordData(rec, stream, this.id, b);
    if (!raw) this.shell?.output(b);
    const pump = stream === Stream.Stdout ? this.outPump : this.errPump;
    const dst = stream === Stream.Stdout ? this.ch : this.ch.stderr;
    if (pump) {
      pump.write(dst, b);
      pump.checkRecorder(rec);
    } else dst.write(b);
  }

  private stderr(text: string): void {
    this.toClient(Buffer.from(text, 'utf8'), Stream.Stderr);
  }

  /** Runs one sftp parse step; a stream that does not frame as SFTP closes the channel (a desync could hide a write). */
  private sftpData(step: () => void): void {
    try {
      step();
    } catch (err) {
      if (!(err instanceof SftpProtocolError)) throw err;
      this.terminate(`the sftp stream is not valid SFTP (${err.message}); the channel was closed`);
    }
  }

  private sftpOp(op: SftpOp, refused: string | undefined): void {
    const rec = auditRecord(op);
    if (!rec) return;
    const session = this.session;
    const allowed = refused === undefined;
    // Metadata reads (stat, realpath, …) are many: recorded, but logged at debug level.
    this.session.gov.sideChannel({
      event: 'sftp.op',
      allowed,
      fields: { ...rec, channel: this.id },
      message: allowed ? `sftp ${String(rec.op)}` : `sftp ${String(rec.op)} refused: read-only`,
      quiet: QUIET_SFTP_OPS.has(String(rec.op)) && !rec.status,
    });
  }

  // ---- the end -----------------------------------------------------------------------------------

  private maybeFinish(): void {
    if (this.done || !this.upClosed || !this.upOut || !this.upErr) return;
    this.finish();
  }

  private finish(): void {
    this.outMask?.end();
    this.errMask?.end();
    this.done = true;
    this.reportMasking();
    const ch = this.ch!;
    const ex = this.exit;
    let sent = false;
    const close = () => {
      if (sent) return;
      sent = true;
      if (ex.code !== undefined) ch.exit(ex.code);
      else if (ex.signal) ch.exit(ex.signal.replace(/^SIG/, ''), !!ex.dump, ex.desc ?? '');
      ch.end();
      this.host.untrack(this);
    };
    // stderr first: ending the channel would drop what its stderr still buffers.
    ch.stderr.end(close);
    ch.stderr.once('finish', close);
  }

  private reportMasking(): void {
    const counts: Record<string, number> = {};
    for (const m of [this.outMask, this.errMask]) if (m) for (const [k, v] of Object.entries(m.counts)) counts[k] = (counts[k] ?? 0) + v;
    if (Object.keys(counts).length) this.session.maskingApplied({ columns: {}, detectors: counts });
  }

  /** Refuses the started request: the reason on stderr, then an exit status. */
  private refuse(message: string, code: number): void {
    if (this.done) return;
    this.done = true;
    const ch = this.ch!;
    this.event({ event: 'ssh.denied', what: this.kind, message, code });
    this.stderr(`sluice: ${message}${this.nl}`);
    ch.exit(code);
    ch.end();
    this.host.untrack(this);
  }

  /** Kill switch: the reason on stderr, then the channel closes (the connection follows). */
  terminate(reason: string): void {
    if (this.done) return;
    this.done = true;
    this.stopData();
    this.approval?.withdraw(`the session was terminated (${reason})`);
    this.shell?.close(reason);
    const ch = this.ch;
    if (ch) {
      this.outMask?.end();
      this.errMask?.end();
      this.reportMasking();
      this.event({ event: 'ssh.terminated', reason });
      this.stderr(`${this.pty ? '\r\n' : ''}sluice: session terminated: ${reason}${this.nl}`);
      ch.exit(EXIT_SLUICE);
      ch.end();
    }
    this.up?.close();
    this.host.untrack(this);
  }

  private stopData(): void {
    this.inPump?.stop();
    this.outPump?.stop();
    this.errPump?.stop();
  }

  dispose(): void {
    this.clientClosed();
  }

  private clientClosed(): void {
    if (!this.done) {
      this.done = true;
      this.stopData();
      this.approval?.withdraw('the client closed the channel');
      this.shell?.close('the client closed the channel');
      this.outMask?.discard();
      this.errMask?.discard();
      this.reportMasking();
      this.up?.close();
    }
    this.host.untrack(this);
  }
}
