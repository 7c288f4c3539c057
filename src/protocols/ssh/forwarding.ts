// Port and X11 forwarding through the gateway. Refused unless a policy allows
// the kind (`ssh.forwarding`): forwarded traffic is not a command Sluice can
// decide, so opening it is an explicit choice. What is allowed is relayed
// through the same session (recorded as its own channels, counted in the
// session's bytes); a peer's lesson was that forwarding otherwise bypasses
// the recording.
//
//   local  (-L)  client opens direct-tcpip → Sluice asks the target to connect
//   remote (-R)  client asks tcpip-forward → the target listens; each
//                connection it accepts comes back as forwarded-tcpip
//   x11   (-X)  the session's x11-req is passed on; the target's X11 channels
//                are opened back to the client
//   agent (-A)  auth-agent-req is passed on; each agent channel the target
//                opens is relayed to an agent channel opened to the client

import ssh2 from 'ssh2';
import type { Channel, TcpipBindInfo, TcpipRequestInfo } from 'ssh2';
import type { ChannelHost, LiveChannel } from './channel-relay.js';
import { recordData, Stream } from './frames.js';
import { Pump } from './pump.js';
import type { SshClient } from './upstream.js';

type Accept<T> = () => T | undefined;

/** Relays two channels both ways (client side `a`, target side `b`) until either closes. */
class ChannelPair implements LiveChannel {
  readonly id: number;
  private closed = false;
  private readonly ab: Pump;
  private readonly ba: Pump;

  constructor(
    private readonly host: ChannelHost,
    private readonly a: Channel,
    private readonly b: Channel,
  ) {
    this.id = host.channelId();
    const session = host.session;
    const rec = session.recorder;
    this.ab = new Pump(a, (chunk) => {
      session.bytesFromClient += chunk.length;
      if (rec) recordData(rec, Stream.Stdin, this.id, chunk);
      this.ab.write(b, chunk);
      this.ab.checkRecorder(rec);
    });
    this.ba = new Pump(b, (chunk) => {
      session.bytesToClient += chunk.length;
      if (rec) recordData(rec, Stream.Stdout, this.id, chunk);
      this.ba.write(a, chunk);
      this.ba.checkRecorder(rec);
    });
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      x.on('error', () => {});
      x.on('end', () => y.end());
      x.on('close', () => this.close());
    }
    host.track(this);
    this.ab.start();
    this.ba.start();
  }

  terminate(): void {
    this.close();
  }

  dispose(): void {
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ab.stop();
    this.ba.stop();
    this.a.close();
    this.b.close();
    this.host.event({ event: 'ssh.close', channel: this.id });
    this.host.untrack(this);
  }
}

/** ssh2's window and packet sizes for channels it opens (lib/Channel.js). */
const MAX_WINDOW = 2 * 1024 * 1024;
const PACKET_SIZE = 32 * 1024;

type Internals = {
  _chanMgr?: { add(cb: unknown): number };
  _protocol?: { openssh_authAgent?(chan: number, window: number, packet: number): void };
};

/**
 * Opens an auth-agent@openssh.com channel to the client. ssh2's Server has no
 * public call for it (only for forwarded-tcpip and x11), so this does what its
 * openChannel does through the same internals (ssh2 1.x); without them agent
 * forwarding fails cleanly.
 */
function openAgentChannel(conn: ssh2.Connection, cb: (err: Error | undefined, ch?: Channel) => void): void {
  const c = conn as unknown as Internals;
  if (!c._chanMgr || typeof c._protocol?.openssh_authAgent !== 'function') return cb(new Error('agent channels are not supported by this ssh2 version'));
  const wrapper = Object.assign((err: Error | undefined, stream?: Channel) => cb(err, stream), { type: 'auth-agent@openssh.com' });
  const id = c._chanMgr.add(wrapper);
  if (id === -1) return cb(new Error('no free channels'));
  c._protocol.openssh_authAgent(id, MAX_WINDOW, PACKET_SIZE);
}

/**
 * The agent the upstream client is given: it never signs for Sluice's own
 * login (Sluice authenticates with explicit methods); it only hands the
 * target's agent channels a stream to the client's agent, when allowed.
 */
export class RelayAgent extends ssh2.BaseAgent {
  open: ((cb: (err: Error | undefined, ch?: Channel) => void) => void) | null = null;
  getIdentities(cb: (err: Error | undefined, keys?: never[]) => void): void {
    cb(new Error('the relay agent holds no keys'));
  }
  sign(...args: unknown[]): void {
    const cb = args[args.length - 1];
    if (typeof cb === 'function') cb(new Error('the relay agent does not sign'));
  }
  override getStream(cb: (err: Error | undefined, stream?: Channel) => void): void {
    if (!this.open) return cb(new Error('agent forwarding is not allowed for this session'));
    this.open(cb);
  }
}

export class Forwarding {
  /** Remote forwards this client asked for, "addr:port" → the port the target bound. */
  private readonly remote = new Map<string, number>();
  private x11Wanted = false;

  constructor(
    private readonly host: ChannelHost,
    private readonly conn: ssh2.Connection,
  ) {}

  /** A forwarding request, allowed or refused by the session's options: through the governance pipeline. */
  private allowed(kind: 'local' | 'remote' | 'x11', fields: Record<string, unknown>): boolean {
    const ok = this.host.options().forwarding[kind];
    return this.host.session.gov.sideChannel({
      event: 'ssh.forward',
      allowed: ok,
      fields: { kind, ...fields },
      message: ok ? `${kind} forwarding` : `${kind} forwarding refused (no policy allows it: ssh.forwarding)`,
    });
  }

  /** -L: the client opens a direct-tcpip channel. */
  local(accept: Accept<Channel>, reject: () => void, info: TcpipRequestInfo): void {
    if (!this.allowed('local', { dest: `${info.destIP}:${info.destPort}`, from: `${info.srcIP}:${info.srcPort}` })) return reject();
    this.host.upstream().then(
      (up) =>
        up.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, upc) => {
          if (err) return reject();
          const ch = accept();
          if (!ch) return upc.close();
          new ChannelPair(this.host, ch, upc);
          this.host.event({ event: 'ssh.channel', type: 'direct-tcpip', dest: `${info.destIP}:${info.destPort}` });
        }),
      () => reject(),
    );
  }

  /** -R and its cancel: global requests. */
  request(accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: TcpipBindInfo): void {
    if (name === 'cancel-tcpip-forward') {
      const key = `${info.bindAddr}:${info.bindPort}`;
      if (!this.remote.has(key)) return reject?.();
      this.remote.delete(key);
      this.host.upstream().then(
        (up) => up.unforwardIn(info.bindAddr, info.bindPort, (err) => (err ? reject?.() : accept?.())),
        () => reject?.(),
      );
      return;
    }
    if (name !== 'tcpip-forward') return reject?.();
    if (!this.allowed('remote', { bind: `${info.bindAddr}:${info.bindPort}` })) return reject?.();
    this.host.upstream().then(
      (up) =>
        up.forwardIn(info.bindAddr, info.bindPort, (err, port) => {
          if (err) return reject?.();
          const bound = info.bindPort === 0 ? port : info.bindPort;
          this.remote.set(`${info.bindAddr}:${bound}`, bound);
          accept?.(bound);
        }),
      () => reject?.(),
    );
  }

  wantX11(): void {
    this.x11Wanted = true;
  }

  /** The client asked for agent forwarding and policy allows it: the target's agent channels are relayed from now on. */
  enableAgent(agent: RelayAgent): void {
    agent.open = (cb) => {
      if (!this.host.options().forwarding.agent) return cb(new Error('agent forwarding is not allowed'));
      openAgentChannel(this.conn, (err, ch) => {
        if (err || !ch) return cb(err ?? new Error('no agent channel'));
        const id = this.host.channelId();
        this.host.event({ event: 'ssh.channel', type: 'auth-agent', channel: id });
        // Agent traffic is key listing and signing requests: relayed, not recorded (it is not session content).
        ch.on('error', () => {});
        cb(undefined, ch);
      });
    };
  }

  /** The target's side: connections to a remote forward, X11 channels. */
  attach(up: SshClient): void {
    up.on('tcp connection', (details, accept, reject) => {
      if (!this.remote.has(`${details.destIP}:${details.destPort}`)) return reject();
      this.conn.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (err, ch) => {
        if (err) return reject();
        const upc = accept();
        if (!upc) return ch.close();
        new ChannelPair(this.host, ch, upc);
        this.host.event({ event: 'ssh.channel', type: 'forwarded-tcpip', bind: `${details.destIP}:${details.destPort}`, from: `${details.srcIP}:${details.srcPort}` });
      });
    });
    up.on('x11', (details, accept, reject) => {
      if (!this.x11Wanted || !this.host.options().forwarding.x11) return reject();
      this.conn.x11(details.srcIP, details.srcPort, (err, ch) => {
        if (err) return reject();
        const upc = accept();
        if (!upc) return ch.close();
        new ChannelPair(this.host, ch, upc);
        this.host.event({ event: 'ssh.channel', type: 'x11' });
      });
    });
  }
}
