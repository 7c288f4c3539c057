// Sluice as a Postgres client: connect to a target, negotiate TLS per the config,
// authenticate with the stored credential (SCRAM-SHA-256, with channel binding
// over TLS; md5, cleartext or no authentication only where targets.*.auth allows
// them) and collect what the client must be told (ParameterStatus,
// BackendKeyData). None of these bytes ever reach the client.

import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import pgProtocol from 'pg-protocol';

// Default import: the named export is not visible under every ESM loader (ts-node's, for one).
const { serialize } = pgProtocol;
import type { PostgresTargetConfig } from '../../config/types.js';
import { B, PROTOCOL_3_0 } from './constants.js';
import { parseFields } from './messages.js';
import { MessageReader } from './reader.js';
import { ownedReads } from '../kit/owned-reads.js';
import { clientEncodingOf } from './encoding.js';
import { md5Password, ScramClient, tlsServerEndPoint, type ChannelBinding } from './scram.js';

/**
 * An upstream failure. `message` (and `detail`) are what the client sees: the
 * target's name, what kind of failure, what to do; never the target's host,
 * port, user or database, nor the server's own words. The specifics are in
 * `log`, for the gateway log only. `level` 'error' marks a target that may be
 * an impostor (it broke or skipped authentication).
 */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly detail?: string,
    readonly log: Record<string, unknown> = {},
    readonly level: 'warn' | 'error' = 'warn',
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

const SEE_LOG = 'the gateway log has the details';

export interface Upstream {
  socket: net.Socket | tls.TLSSocket;
  /** ParameterStatus messages as the server sent them (raw, ready to relay). */
  parameterStatus: Buffer[];
  pid: number;
  secret: number;
  /** Bytes received after ReadyForQuery (normally none). */
  leftover: Buffer;
  /** client_encoding as the server reported it (the client's own, or the database's when it sent none). */
  clientEncoding?: string;
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

const where = (t: PostgresTargetConfig) => `${t.host}:${t.port}`;

/** A network error code in words that name no internals. */
function netCategory(code: string | undefined): string {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return 'host name not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to the host';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return 'network error';
  }
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
      reject(new UpstreamError(`target "${target.name}" did not answer within ${timeoutMs} ms; ${SEE_LOG}`, '08001', undefined, { address: where(target), reason: 'connect timeout' }));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new UpstreamError(`target "${target.name}" is unreachable (${netCategory(err.code)}); ${SEE_LOG}`, '08001', undefined, {
          address: where(target),
          reason: err.code ?? err.message,
        }),
      );
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
      // Certificate errors carry an OpenSSL code (or ERR_TLS_CERT_ALTNAME_INVALID); their text names hosts.
      const cert = verify && (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SIGNATURE|ISSUER|SELF_SIGNED|UNABLE_TO/.test(err.code ?? ''));
      reject(
        new UpstreamError(
          `TLS to target "${target.name}" failed${cert ? ': its certificate could not be verified' : ''}; ${SEE_LOG}`,
          '08001',
          verify ? `targets.${target.name}.tls.mode is ${mode}; check targets.${target.name}.tls.ca and the server certificate's names` : undefined,
          { address: where(target), reason: err.message, code: err.code },
          cert ? 'error' : 'warn',
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
        const t = setTimeout(
          () => reject(new UpstreamError(`target "${target.name}" did not finish authentication within ${target.connect_timeout} ms; ${SEE_LOG}`, '08001', undefined, { address: where(target), reason: 'login timeout' })),
          left,
        );
        p.then(
          (v) => (clearTimeout(t), resolve(v)),
          (e) => (clearTimeout(t), reject(e)),
        );
      });
    return await withTimeout(handshake(target, socket, password, params, maxMessage, (s) => (socket = s)));
  } catch (err) {
    socket.destroy();
    if (err instanceof UpstreamError) throw err;
    throw new UpstreamError(`the connection to target "${target.name}" failed during login; ${SEE_LOG}`, '08006', undefined, {
      address: where(target),
      reason: (err as Error).message,
    });
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
          `target "${target.name}" does not accept TLS, but targets.${target.name}.tls.mode is ${target.tls.mode}; the stored credential was not sent`,
          '08001',
          undefined,
          { address: where(target), reason: 'server declined TLS' },
          'error',
        );
      }
    } else {
      throw new UpstreamError(`target "${target.name}" answered the TLS request with an unexpected byte; is it a Postgres server?`, '08P01', undefined, {
        address: where(target),
        reason: `SSLRequest answered with byte 0x${answer.toString(16)}`,
      });
    }
  }

  socket.write(startupMessage(params, target.user, target.database));

  const parameterStatus: Buffer[] = [];
  let pid = 0;
  let secret = 0;
  const auth = new AuthState(target, password, socket instanceof tls.TLSSocket ? socket : null);

  for (;;) {
    const { type, body } = await reader.readMessage();
    switch (type) {
      case B.Authentication: {
        const reply = await auth.onRequest(body);
        if (reply) socket.write(reply);
        break;
      }
      case B.ParameterStatus: {
        auth.requireDone('ParameterStatus');
        const msg = Buffer.allocUnsafe(1 + 4 + body.length);
        msg[0] = type;
        msg.writeInt32BE(4 + body.length, 1);
        body.copy(msg, 5);
        parameterStatus.push(msg);
        break;
      }
      case B.BackendKeyData:
        auth.requireDone('BackendKeyData');
        pid = body.readInt32BE(0);
        secret = body.readInt32BE(4);
        break;
      case B.NoticeResponse:
        break;
      case B.NegotiateProtocolVersion:
        break;
      case B.ErrorResponse: {
        const f = parseFields(body, 0, body.length);
        throw upstreamAuthError(target, f, auth.usedChannelBinding);
      }
      case B.ReadyForQuery: {
        auth.requireDone('ReadyForQuery');
        const leftover = reader.detach();
        return { socket, parameterStatus, pid, secret, leftover, clientEncoding: clientEncodingOf(parameterStatus) };
      }
      default:
        throw new UpstreamError(`target "${target.name}" sent an unexpected message (type 0x${type.toString(16)}) during login; is it a Postgres server?`, '08P01', undefined, {
          address: where(target),
        });
    }
  }
}

/**
 * The StartupMessage: the client's parameters as they are (its client_encoding
 * included), then user and database. Written here rather than with
 * pg-protocol's serializer, which appends client_encoding=UTF8 after them and
 * so overrides the client's.
 */
export function startupMessage(params: Record<string, string>, user: string, database: string): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (k === 'user' || k === 'database') continue;
    parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  }
  parts.push(Buffer.from(`user\0${user}\0database\0${database}\0\0`, 'utf8'));
  const len = 8 + parts.reduce((n, b) => n + b.length, 0);
  const head = Buffer.allocUnsafe(8);
  head.writeInt32BE(len, 0);
  head.writeInt32BE(PROTOCOL_3_0, 4);
  return Buffer.concat([head, ...parts], len);
}

/** Authentication request codes (AuthenticationXXX). */
const AUTH_OK = 0;
const AUTH_CLEARTEXT = 3;
const AUTH_MD5 = 5;
const AUTH_SASL = 10;
const AUTH_SASL_CONTINUE = 11;
const AUTH_SASL_FINAL = 12;

const METHOD_WORDS: Record<string, string> = {
  password: 'a cleartext password',
  md5: 'an md5 password hash',
  none: 'no authentication at all',
};

/**
 * Sluice's side of the login, as a strict state machine: the server may ask
 * only for a method in targets.*.auth, every step must come in order, and a
 * SCRAM login ends only with a verified server signature. Anything else is
 * refused before the stored credential (or anything derived from it beyond the
 * SCRAM proof) is sent.
 */
class AuthState {
  private step: 'start' | 'password-sent' | 'sasl-first' | 'sasl-final' | 'sasl-done' | 'ok' = 'start';
  private scram: ScramClient | null = null;
  private readonly allowed: ReadonlySet<string>;
  /** SCRAM was bound to TLS (-PLUS), or said it could bind ('y'). */
  usedChannelBinding = false;

  constructor(
    private readonly target: PostgresTargetConfig,
    private readonly password: string | undefined,
    private readonly tlsSocket: tls.TLSSocket | null,
  ) {
    this.allowed = new Set(target.auth);
  }

  /** Fails unless authentication has completed (a message that may only follow AuthenticationOk). */
  requireDone(what: string): void {
    if (this.step !== 'ok') this.impostor(`it sent ${what} before authentication was complete`, 'skipped authentication');
  }

  /** One Authentication message: the reply to send (or null). */
  async onRequest(body: Buffer): Promise<Buffer | null> {
    const t = this.target;
    const code = body.readInt32BE(0);
    switch (code) {
      case AUTH_OK:
        if (this.step === 'start') this.permit('none');
        else if (this.step === 'sasl-first' || this.step === 'sasl-final') {
          this.impostor('it ended the SCRAM exchange without the server signature', 'AuthenticationOk before SASLFinal');
        } else if (this.step === 'ok') this.broken('a second AuthenticationOk');
        this.step = 'ok';
        return null;
      case AUTH_CLEARTEXT:
        this.expectStart('a cleartext password request');
        this.permit('password');
        this.step = 'password-sent';
        return serialize.password(this.needPassword());
      case AUTH_MD5:
        this.expectStart('an md5 password request');
        this.permit('md5');
        this.step = 'password-sent';
        return serialize.password(md5Password(t.user, this.needPassword(), body.subarray(4, 8)));
      case AUTH_SASL: {
        this.expectStart('a SASL request');
        this.permit('scram-sha-256');
        const mechs = body.toString('utf8', 4).split('\0').filter(Boolean);
        const binding = this.binding(mechs);
        this.scram = new ScramClient(this.needPassword(), binding);
        this.usedChannelBinding = binding !== 'n';
        this.step = 'sasl-first';
        return serialize.sendSASLInitialResponseMessage(this.scram.mechanism, this.scram.first());
      }
      case AUTH_SASL_CONTINUE:
        if (this.step !== 'sasl-first' || !this.scram) this.broken('SASLContinue out of order');
        this.step = 'sasl-final';
        try {
          return serialize.sendSCRAMClientFinalMessage(await this.scram!.final(body.toString('utf8', 4)));
        } catch (err) {
          return this.impostor(`its SCRAM server-first-message is invalid (${(err as Error).message})`, (err as Error).message);
        }
      case AUTH_SASL_FINAL:
        if (this.step !== 'sasl-final' || !this.scram) this.broken('SASLFinal out of order');
        try {
          this.scram!.verify(body.toString('utf8', 4));
        } catch (err) {
          return this.impostor('its SCRAM server signature is missing or wrong', (err as Error).message);
        }
        this.step = 'sasl-done';
        return null;
      default:
        throw new UpstreamError(
          `target "${t.name}" asked for an authentication method Sluice does not support (request code ${code}); ${SEE_LOG}`,
          '28000',
          undefined,
          { address: where(t), reason: `AuthenticationRequest code ${code}` },
          'error',
        );
    }
  }

  /** The channel binding for a SASL request offering `mechs`. */
  private binding(mechs: string[]): ChannelBinding {
    const t = this.target;
    const cb = t.channel_binding;
    const endPoint = this.tlsSocket && cb !== 'disable' ? tlsServerEndPoint(this.tlsSocket.getPeerCertificate(false).raw) : null;
    if (endPoint && mechs.includes('SCRAM-SHA-256-PLUS')) return { endPoint };
    if (cb === 'require') {
      const why = !this.tlsSocket ? 'the connection is not encrypted' : !endPoint ? 'its certificate allows no tls-server-end-point binding' : 'the server does not offer SCRAM-SHA-256-PLUS';
      throw new UpstreamError(
        `target "${t.name}" cannot bind SCRAM to the TLS channel, which targets.${t.name}.channel_binding: require demands; the stored credential was not used; ${SEE_LOG}`,
        '28000',
        undefined,
        { address: where(t), reason: why, offered: mechs.join(' ') },
        'error',
      );
    }
    if (!mechs.includes('SCRAM-SHA-256')) {
      throw new UpstreamError(`target "${t.name}" offers no SASL mechanism Sluice supports; ${SEE_LOG}`, '28000', undefined, {
        address: where(t),
        offered: mechs.join(' '),
      });
    }
    // 'y': we could bind but were not offered it; a server that can bind then refuses (a relay stripped -PLUS).
    return endPoint ? 'y' : 'n';
  }

  private permit(method: 'scram-sha-256' | 'md5' | 'password' | 'none'): void {
    if (this.allowed.has(method)) return;
    const t = this.target;
    const asked = method === 'scram-sha-256' ? 'SCRAM' : METHOD_WORDS[method];
    throw new UpstreamError(
      `target "${t.name}" asked Sluice to log in with ${asked}, which targets.${t.name}.auth does not allow; the stored credential was not sent; ${SEE_LOG}`,
      '28000',
      method === 'scram-sha-256' ? undefined : `If the target really uses ${method}, add it to targets.${t.name}.auth (with tls.mode: verify-full); otherwise something is impersonating the target.`,
      { address: where(t), reason: `server asked for ${method}`, allowed: t.auth.join(',') },
      'error',
    );
  }

  private expectStart(what: string): void {
    if (this.step !== 'start') this.broken(`${what} after authentication had started`);
  }

  private needPassword(): string {
    const t = this.target;
    if (this.password === undefined) {
      throw new UpstreamError(`target "${t.name}" asks for a password, but targets.${t.name}.password is not set`, '28000');
    }
    return this.password;
  }

  /** The server skipped or failed a step that proves it is the target. */
  private impostor(what: string, reason: string): never {
    const t = this.target;
    throw new UpstreamError(
      `target "${t.name}" did not prove that it is the target: ${what}; the login was stopped. It may be an impostor; ${SEE_LOG}`,
      '28000',
      undefined,
      { address: where(t), reason },
      'error',
    );
  }

  private broken(reason: string): never {
    const t = this.target;
    throw new UpstreamError(
      `target "${t.name}" broke the authentication protocol; the login was stopped. It may be an impostor; ${SEE_LOG}`,
      '08P01',
      undefined,
      { address: where(t), reason },
      'error',
    );
  }
}

/**
 * Turns a server's error at login into a client error: the kind of failure and
 * where to look, never the server's text (it names users and databases).
 */
function upstreamAuthError(target: PostgresTargetConfig, f: Record<string, string>, channelBinding: boolean): UpstreamError {
  const code = f.C ?? '08006';
  const t = target.name;
  const log = { address: where(target), user: target.user, database: target.database, server_code: code, server_message: f.M, server_detail: f.D };
  if (channelBinding && /channel binding/i.test(f.M ?? '')) {
    return new UpstreamError(
      `target "${t}" refused the SCRAM channel binding: something between Sluice and the target terminates TLS; ${SEE_LOG}`,
      '08006',
      undefined,
      log,
      'error',
    );
  }
  if (code === '28P01' || code === '28000') {
    return new UpstreamError(`target "${t}" rejected Sluice's stored credential; ${SEE_LOG}`, '08006', `Check targets.${t}.user, targets.${t}.password and the server's pg_hba.conf.`, log);
  }
  if (code === '3D000') {
    return new UpstreamError(`target "${t}": the configured database does not exist on the server; ${SEE_LOG}`, '08006', `Check targets.${t}.database.`, log);
  }
  if (code === '53300') return new UpstreamError(`target "${t}" has too many connections; try again later`, '53300', undefined, log);
  if (code === '57P03') return new UpstreamError(`target "${t}" is not accepting connections now (starting up, shutting down or recovering); try again later`, '57P03', undefined, log);
  return new UpstreamError(`target "${t}" refused the login (SQLSTATE ${code}); ${SEE_LOG}`, '08006', undefined, log);
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
