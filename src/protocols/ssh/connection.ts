// One client SSH connection: token authentication (password or
// keyboard-interactive), the Sluice session, the upstream login, and the
// channels and forwards relayed over it. The kill switch ends it all.

import type ssh2 from 'ssh2';
import type { AuthContext } from 'ssh2';
import type { ClientInfo, Core } from '../kit/module.js';
import type { SshTargetConfig } from '../../config/types.js';
import type { Identity } from '../../identity/types.js';
import { AuthError } from '../../identity/types.js';
import type { Session } from '../../session/session.js';
import { sendAuthBanner } from './auth-banner.js';
import { SshPreAuth } from './preauth.js';
import { SessionChannel, type ChannelHost, type LiveChannel } from './channel-relay.js';
import { Forwarding, RelayAgent } from './forwarding.js';
import { sshOptions, type SshOptions } from './policy.js';
import { connectUpstream, UpstreamError, type SshClient } from './upstream.js';

/** Login attempts with a bad token before the connection is dropped. */
const MAX_AUTH_FAILURES = 3;
const METHODS: ('keyboard-interactive' | 'password')[] = ['keyboard-interactive', 'password'];
/** The kill switch closes everything within this time, whatever the client does. */
const KILL_DEADLINE_MS = 800;

/** `web01` or `alice+web01`: the target, and the (informational) name before '+'. */
export function parseUsername(username: string): { target: string; user?: string } {
  const i = username.lastIndexOf('+');
  return i < 0 ? { target: username } : { target: username.slice(i + 1), user: username.slice(0, i) };
}

export function handleConnection(core: Core, conn: ssh2.Connection, info: ssh2.ClientInfo): void {
  const remote = `${info.ip}:${info.port}`;
  // No Nagle: keystrokes, sftp requests and window adjusts are small and must not wait for ACKs.
  (conn as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  conn.on('error', (err: Error) => core.log.debug({ event: 'ssh.client_error', client: remote, err: err.message }, 'ssh client connection error'));
  // Admitted, and timed, since TCP accept (index.ts).
  const pre = SshPreAuth.of(conn);
  if (!pre) {
    core.log.error({ event: 'connection.error', client: remote, protocol: 'ssh' }, 'ssh connection without admission state; closed');
    conn.end();
    return;
  }
  pre.attach(conn);
  let failures = 0;
  let granted: { identity: Identity; target: SshTargetConfig; client: ClientInfo; upstream: Promise<SshClient>; agent: RelayAgent } | null = null;

  const verify = (ctx: AuthContext, token: string, tell: (msg: string, then: () => void) => void) => {
    const { target, user } = parseUsername(ctx.username);
    const client: ClientInfo = { address: info.ip, port: info.port, secure: true, user, application: info.header?.versions?.software };
    core.authenticate(token.trim(), target, 'ssh', client).then(
      (grant) => {
        if (granted) return ctx.accept();
        // Log in upstream right away: the client's channel requests arrive in a moment.
        const agent = new RelayAgent();
        const upstream = loginUpstream(core, grant.target, agent);
        upstream.catch(() => {}); // reported on each channel that needs it
        granted = { identity: grant.identity, target: grant.target, client, upstream, agent };
        ctx.accept();
      },
      (err: unknown) => {
        failures++;
        let msg: string;
        if (err instanceof AuthError) {
          msg = err.message;
          core.log.info({ event: 'auth.refused', client: remote, protocol: 'ssh', target, code: err.code, reason: err.message }, 'connection refused');
        } else {
          msg = 'Sluice could not check this token (internal error); the gateway log has the details';
          core.log.warn({ event: 'connection.error', client: remote, protocol: 'ssh', err: (err as Error).message }, 'token check failed');
        }
        tell(`sluice: ${msg}`, () => {
          ctx.reject(METHODS);
          if (failures >= MAX_AUTH_FAILURES) setTimeout(() => conn.end(), 50);
        });
      },
    );
  };

  conn.on('authentication', (ctx) => {
    if (ctx.method === 'password') {
      verify(ctx, ctx.password, (msg, then) => {
        sendAuthBanner(conn, msg);
        then();
      });
    } else if (ctx.method === 'keyboard-interactive') {
      const { target } = parseUsername(ctx.username);
      ctx.prompt(
        [{ prompt: `Sluice token for ${target} (password): `, echo: false }],
        '',
        '',
        (answers) => {
          // A zero-prompt round shows the reason as the instruction text (OpenSSH prints it).
          verify(ctx, answers[0] ?? '', (msg, then) => ctx.prompt([], '', msg, () => then()));
        },
      );
    } else {
      ctx.reject(METHODS);
    }
  });

  let started = false;
  conn.on('ready', () => {
    pre.authenticated();
    if (!granted) return conn.end();
    started = true;
    new SshConnection(core, conn, granted.identity, granted.target, granted.client, granted.upstream, granted.agent);
  });
  conn.on('close', () => {
    // Left between the token check and the session: the upstream login started for it is not needed.
    if (granted && !started) granted.upstream.then((up) => up.end(), () => {});
  });
}

/** Reads the stored credentials and logs in; errors carry a message fit for the user. */
async function loginUpstream(core: Core, target: SshTargetConfig, agent: RelayAgent): Promise<SshClient> {
  let password: string | undefined;
  let privateKey: string | undefined;
  try {
    [password, privateKey] = await Promise.all([core.targetSecret(target, 'password'), core.targetSecret(target, 'private_key')]);
  } catch (err) {
    core.log.error({ event: 'credential.error', target: target.name, err: (err as Error).message }, 'cannot read the stored credential of a target');
    throw new UpstreamError(`Sluice cannot read its stored credential for target "${target.name}"; the gateway log says why`);
  }
  try {
    return await connectUpstream(target, { password, privateKey }, { agent });
  } catch (err) {
    const e = err instanceof UpstreamError ? err : new UpstreamError(`cannot connect to target "${target.name}"`, (err as Error).message);
    const fields = { event: 'upstream.error', protocol: 'ssh', target: target.name, err: e.message, detail: e.detail };
    if (e.hostKey) core.log.error(fields, 'target host key verification failed');
    else core.log.warn(fields, 'upstream connection failed');
    throw e;
  }
}

export class SshConnection implements ChannelHost {
  readonly session: Session;
  private up?: SshClient;
  private upError?: Error;
  private nextChannel = 0;
  private readonly live = new Set<LiveChannel>();
  private readonly forwarding: Forwarding;
  private terminated: string | null = null;
  private closed = false;

  constructor(
    readonly core: Core,
    private readonly conn: ssh2.Connection,
    identity: Identity,
    readonly target: SshTargetConfig,
    client: ClientInfo,
    private readonly login: Promise<SshClient>,
    private readonly agent: RelayAgent,
  ) {
    this.session = core.sessions.open({ protocol: 'ssh', identity, target: target.name, client, terminate: (reason) => this.terminate(reason) });
    this.forwarding = new Forwarding(this, conn);
    login.then(
      (up) => {
        if (this.closed) return up.end();
        this.up = up;
        up.on('error', (err: Error) => core.log.debug({ event: 'upstream.error', session: this.session.id, err: err.message }, 'upstream ssh error'));
        up.on('close', () => {
          if (!this.closed && !this.terminated) this.terminate(`the target "${target.name}" closed the connection`);
        });
        this.forwarding.attach(up);
      },
      (err: Error) => {
        this.upError = err;
      },
    );
    conn.on('session', (accept) => {
      const s = accept();
      if (s) new SessionChannel(this, s);
    });
    conn.on('tcpip', (accept, reject, info) => this.forwarding.local(accept, reject, info));
    conn.on('request', (accept, reject, name, info) => this.forwarding.request(accept, reject, name, info as ssh2.TcpipBindInfo));
    conn.on('close', () => this.onClose());
  }

  upstream(): Promise<SshClient> {
    return this.login;
  }

  channelId(): number {
    return this.nextChannel++;
  }

  options(): SshOptions {
    return sshOptions(this.session);
  }

  track(c: LiveChannel): void {
    this.live.add(c);
  }

  untrack(c: LiveChannel): void {
    this.live.delete(c);
  }

  wantX11(): void {
    this.forwarding.wantX11();
  }

  enableAgent(): void {
    this.forwarding.enableAgent(this.agent);
  }

  event(ev: Record<string, unknown>): void {
    this.session.recorder?.event(ev);
  }

  /** Kill switch: every channel is told why and closed, then the connection, within KILL_DEADLINE_MS. */
  terminate(reason: string): void {
    if (this.terminated || this.closed) return;
    this.terminated = reason;
    this.core.log.info({ event: 'ssh.terminate', session: this.session.id, sub: this.session.identity.sub, target: this.target.name, reason }, 'ending ssh session');
    for (const c of [...this.live]) c.terminate(reason);
    // Let the channels' last words reach the client, then close whatever is left.
    setTimeout(() => this.conn.end(), 200).unref();
    setTimeout(() => {
      (this.conn as unknown as { _sock?: { destroy(): void } })._sock?.destroy();
      this.onClose();
    }, KILL_DEADLINE_MS).unref();
    this.up?.end();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.live]) c.dispose();
    this.up?.end();
    this.session.close(this.terminated ?? (this.upError ? `upstream failed: ${this.upError.message}` : 'client disconnected'));
  }
}
