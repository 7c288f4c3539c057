// Sluice as a Postgres client: connect to a target, negotiate TLS per the config,
// authenticate with the stored credential (SCRAM-SHA-256, md5 or cleartext,
// whichever the server asks for) and collect what the client must be told
// (ParameterStatus, BackendKeyData). None of these bytes ever reach the client.

import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import pgProtocol from 'pg-protocol';

// Default import: the named export is not visible under every ESM loader (ts-node's, for one).
const { serialize } = pgProtocol;
import type { PostgresTargetConfig } from '../../core/config-types.js';
import { B } from './constants.js';
import { parseFields } from './messages.js';
import { MessageReader } from './reader.js';
import { ownedReads } from '../../core/owned-reads.js';
import { md5Password, ScramClient } from './scram.js';

/** An upstream failure, worded for the client. `sqlstate` is what the client receives. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface Upstream {
  socket: net.Socket | tls.TLSSocket;
  /** ParameterStatus messages as the server sent them (raw, ready to relay). */
  parameterStatus: Buffer[];
  pid: number;
  secret: number;
  /** Bytes received after ReadyForQuery (normally none). */
  leftover: Buffer;
}

const caCache = new Map<string, Buffer>();
function readCa(path: string): Buffer {
  let ca = caCache.get(path);
  if (!ca) {
    ca = readFileSync(path);
    caCache.set(path, ca);
  }
  return ca;
}

function tcpConnect(target: PostgresTargetConfig, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // Without TLS the socket stays ours for its whole life: its reads can skip Node's per-read
    // allocation (owned-reads.ts). A socket TLS may take over keeps ordinary reads.
    const s: net.Socket = net.connect({
      host: target.host,
      port: target.port,
      ...(target.tls.mode === 'disable' ? { onread: ownedReads(() => s) } : {}),
    });
    s.setNoDelay(true);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new UpstreamError(`target "${target.name}" did not answer within ${timeoutMs} ms (${target.host}:${target.port})`, '08001'));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new UpstreamError(`target "${target.name}" is unreachable (${target.host}:${target.port}): ${err.code ?? err.message}`, '08001'));
    });
  });
}

function tlsUpgrade(target: PostgresTargetConfig, socket: net.Socket): Promise<tls.TLSSocket> {
  const mode = target.tls.mode;
  const verify = mode === 'verify-ca' || mode === 'verify-full';
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket,
      servername: net.isIP(target.tls.servername ?? target.host) ? undefined : (target.tls.servername ?? target.host),
      ca: target.tls.ca ? readCa(target.tls.ca) : undefined,
      rejectUnauthorized: verify,
      checkServerIdentity:
        mode === 'verify-full'
          ? (_host, cert) => tls.checkServerIdentity(target.tls.servername ?? target.host, cert)
          : () => undefined,
    });
    s.once('secureConnect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      reject(
        new UpstreamError(
          `TLS to target "${target.name}" failed: ${err.message}`,
          '08001',
          verify ? `targets.${target.name}.tls.mode is ${mode}; check targets.${target.name}.tls.ca and the server certificate's names` : undefined,
        ),
      );
    });
  });
}

/**
 * Opens an authenticated connection to `target`. `params` are the startup
 * parameters to pass on (application_name, client_encoding, ...); user and
 * database come from the target.
 */
export async function connectUpstream(
  target: PostgresTargetConfig,
  password: string | undefined,
  params: Record<string, string>,
  maxMessage: number,
): Promise<Upstream> {
  const deadline = Date.now() + target.connect_timeout;
  let socket: net.Socket | tls.TLSSocket = await tcpConnect(target, target.connect_timeout);
  try {
    const withTimeout = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const left = Math.max(1, deadline - Date.now());
        const t = setTimeout(() => reject(new UpstreamError(`target "${target.name}" did not finish authentication within ${target.connect_timeout} ms`, '08001')), left);
        p.then(
          (v) => (clearTimeout(t), resolve(v)),
          (e) => (clearTimeout(t), reject(e)),
        );
      });
    return await withTimeout(handshake(target, socket, password, params, maxMessage, (s) => (socket = s)));
  } catch (err) {
    socket.destroy();
    if (err instanceof UpstreamError) throw err;
    throw new UpstreamError(`connection to target "${target.name}" failed: ${(err as Error).message}`, '08006');
  }
}

async function handshake(
  target: PostgresTargetConfig,
  raw: net.Socket,
  password: string | undefined,
  params: Record<string, string>,
  maxMessage: number,
  setSocket: (s: net.Socket | tls.TLSSocket) => void,
): Promise<Upstream> {
  let socket: net.Socket | tls.TLSSocket = raw;
  const reader = new MessageReader(socket, maxMessage);
  if (target.tls.mode !== 'disable') {
    socket.write(serialize.requestSsl());
    const answer = await reader.readByte();
    if (answer === 0x53 /* S */) {
      reader.detach();
      socket = await tlsUpgrade(target, raw);
      setSocket(socket);
      reader.reattach(socket);
    } else if (answer === 0x4e /* N */) {
      if (target.tls.mode !== 'prefer') {
        throw new UpstreamError(
          `target "${target.name}" does not accept TLS, but targets.${target.name}.tls.mode is ${target.tls.mode}`,
          '08001',
        );
      }
    } else {
      throw new UpstreamError(`target "${target.name}" answered the TLS request with an unexpected byte; is it a Postgres server?`, '08P01');
    }
  }

  socket.write(serialize.startup({ ...params, user: target.user, database: target.database }));

  const parameterStatus: Buffer[] = [];
  let pid = 0;
  let secret = 0;
  let scram: ScramClient | null = null;
  const needPassword = (): string => {
    if (password === undefined) {
      throw new UpstreamError(`target "${target.name}" asks for a password, but targets.${target.name}.password is not set`, '28000');
    }
    return password;
  };

  for (;;) {
    const { type, body } = await reader.readMessage();
    switch (type) {
      case B.Authentication: {
        const code = body.readInt32BE(0);
        switch (code) {
          case 0: // AuthenticationOk
            break;
          case 3: // cleartext
            socket.write(serialize.password(needPassword()));
            break;
          case 5: // md5
            socket.write(serialize.password(md5Password(target.user, needPassword(), body.subarray(4, 8))));
            break;
          case 10: {
            // SASL: a list of mechanisms
            const mechs = body.toString('utf8', 4).split('\0').filter(Boolean);
            if (!mechs.includes('SCRAM-SHA-256')) {
              throw new UpstreamError(`target "${target.name}" offers no supported SASL mechanism (${mechs.join(', ')})`, '28000');
            }
            scram = new ScramClient(needPassword());
            socket.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.first()));
            break;
          }
          case 11: // SASLContinue
            if (!scram) throw new UpstreamError('unexpected SASLContinue from target', '08P01');
            socket.write(serialize.sendSCRAMClientFinalMessage(await scram.final(body.toString('utf8', 4))));
            break;
          case 12: // SASLFinal
            if (!scram) throw new UpstreamError('unexpected SASLFinal from target', '08P01');
            scram.verify(body.toString('utf8', 4));
            break;
          default:
            throw new UpstreamError(`target "${target.name}" asks for an authentication method Sluice does not support (code ${code})`, '28000');
        }
        break;
      }
      case B.ParameterStatus: {
        const msg = Buffer.allocUnsafe(1 + 4 + body.length);
        msg[0] = type;
        msg.writeInt32BE(4 + body.length, 1);
        body.copy(msg, 5);
        parameterStatus.push(msg);
        break;
      }
      case B.BackendKeyData:
        pid = body.readInt32BE(0);
        secret = body.readInt32BE(4);
        break;
      case B.NoticeResponse:
        break;
      case B.NegotiateProtocolVersion:
        break;
      case B.ErrorResponse: {
        const f = parseFields(body, 0, body.length);
        throw upstreamAuthError(target, f);
      }
      case B.ReadyForQuery: {
        const leftover = reader.detach();
        return { socket, parameterStatus, pid, secret, leftover };
      }
      default:
        throw new UpstreamError(`unexpected message 0x${type.toString(16)} from target "${target.name}" during startup`, '08P01');
    }
  }
}

/** Turns a server's startup error into a client error that says where to look, without leaking the credential. */
function upstreamAuthError(target: PostgresTargetConfig, f: Record<string, string>): UpstreamError {
  const code = f.C ?? '08006';
  if (code === '28P01' || code === '28000') {
    return new UpstreamError(
      `target "${target.name}" rejected Sluice's stored credential for user "${target.user}"`,
      '08006',
      `The server said: ${f.M ?? 'authentication failed'}. Check targets.${target.name}.user and targets.${target.name}.password.`,
    );
  }
  if (code === '3D000') {
    return new UpstreamError(`target "${target.name}": database "${target.database}" does not exist on the server`, '08006', `Check targets.${target.name}.database.`);
  }
  return new UpstreamError(`target "${target.name}" refused the connection: ${f.M ?? 'unknown error'}`, '08006', f.D);
}

/** Forwards a CancelRequest to the server that owns (pid, secret). Best effort, like libpq. */
export function sendCancel(target: PostgresTargetConfig, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: target.host, port: target.port });
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    const timer = setTimeout(done, 5000);
    s.once('connect', () => s.end(serialize.cancel(pid, secret)));
    s.once('close', done);
    s.once('error', done);
  });
}
