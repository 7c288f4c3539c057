// One client connection, from accept to relay: TLS negotiation, startup packet,
// token as a cleartext password, identity and target checks, upstream login with
// the stored credential, then the relay.

import net from 'node:net';
import tls from 'node:tls';
import { TOO_MANY_PENDING, type Core } from '../kit/module.js';
import { MAX_TOKEN_CHARS } from '../../identity/tokens.js';
import type { ListenerConfig, PostgresTargetConfig } from '../../config/types.js';
import { CatalogCache } from './catalog.js';
import { Dir } from '../../recording/types.js';
import { AuthError, type AuthErrorCode } from '../../identity/types.js';
import { CANCEL_KEY_BYTES_3_2, CANCEL_REQUEST, F, GSSENC_REQUEST, MAX_CANCEL_KEY_BYTES, PROTOCOL_3_0, PROTOCOL_3_2, SSL_REQUEST } from './constants.js';
import { ProtocolViolation } from './framer.js';
import {
  AUTH_CLEARTEXT,
  AUTH_OK,
  authRequest,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  readyForQuery,
  type ErrorFields,
} from './messages.js';
import { ConnectionClosed, MessageReader, MessageTooLarge } from './reader.js';
import { PgRelay } from './relay.js';
import { connectUpstream, sendCancel, UpstreamError } from './upstream.js';
import type { CancelKeys } from './cancel-keys.js';
import { isUnsafeClientEncoding } from '../../policy/sql/parser-safety.js';
import { isLoopback } from '../../gateway/listen.js';

/**
 * Startup parameters passed to the target. Any other is dropped: a startup packet
 * can set server settings directly (`role`, `default_transaction_read_only`, ...),
 * which would step around the statement policy. These are what psql, pgbench,
 * libpq, JDBC, node-postgres and npgsql send.
 */
const FORWARDED_PARAMS = new Set([
  'application_name', 'client_encoding', 'DateStyle', 'datestyle', 'TimeZone', 'timezone',
  'extra_float_digits', 'IntervalStyle', 'intervalstyle', 'search_path', 'lc_messages',
  'bytea_output', 'geqo',
]);

export interface ListenerState {
  cfg: ListenerConfig;
  secureContext?: tls.SecureContext;
  cancelKeys: CancelKeys;
  /** One catalog cache (and side connection) per target config; a reload makes new ones. */
  catalogs: Map<string, { target: PostgresTargetConfig; cache: CatalogCache }>;
}

function catalogFor(core: Core, state: ListenerState, target: PostgresTargetConfig): CatalogCache {
  const e = state.catalogs.get(target.name);
  if (e && e.target === target) return e.cache;
  e?.cache.close();
  const cache = new CatalogCache(target, () => core.targetPassword(target), core.config().limits.max_message_bytes, (err) =>
    core.log[err.level]({ event: 'upstream.error', target: target.name, connection: 'catalog', err: err.message, ...err.log }, 'catalog connection failed'),
  );
  state.catalogs.set(target.name, { target, cache });
  return cache;
}

/** Parses the StartupMessage body after the protocol version: name\0value\0 ... \0 */
function parseStartupParams(pkt: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 4;
  while (i < pkt.length && pkt[i] !== 0) {
    const z1 = pkt.indexOf(0, i);
    if (z1 < 0) throw new ProtocolViolation('unterminated startup parameter name');
    const z2 = pkt.indexOf(0, z1 + 1);
    if (z2 < 0) throw new ProtocolViolation('unterminated startup parameter value');
    out[pkt.toString('utf8', i, z1)] = pkt.toString('utf8', z1 + 1, z2);
    i = z2 + 1;
  }
  return out;
}

/** The most a message before authentication may be: a token (the password message) and some slack. */
const PREAUTH_MAX_MESSAGE = MAX_TOKEN_CHARS + 1024;

class Refusal extends Error {
  /**
   * `limited`: the refusal is about resources (timeouts, sizes, capacity) and an
   * unauthenticated peer can cause it at will, so its log line is rate-limited;
   * 'logged' when the core already logged it.
   */
  constructor(
    readonly fields: ErrorFields,
    readonly limited?: { event: string; reason: string; [k: string]: unknown } | 'logged',
  ) {
    super(fields.message);
  }
}

/** The TLS handshake with the client failed: nothing more can be said to it. */
class TlsFailed extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** The first byte of a TLS record carrying a handshake (a ClientHello). */
const TLS_HANDSHAKE = 0x16;
/** A fatal TLS alert, handshake_failure: what a direct-TLS client gets from a listener without TLS. */
const TLS_ALERT_HANDSHAKE_FAILURE = Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]);

/**
 * Starts TLS with the client on `raw` and waits for the handshake. ALPN offers
 * `postgresql`, as Postgres 17 does: a client that offers only other protocols
 * is refused by the handshake. With sslnegotiation=direct the ClientHello is
 * already in the reader: it goes back to the socket for TLS to read.
 */
async function startTls(raw: net.Socket, reader: MessageReader, secureContext: tls.SecureContext): Promise<tls.TLSSocket> {
  const hello = reader.detach();
  if (hello.length) {
    raw.pause();
    raw.unshift(hello); // TLSSocket feeds what the socket already buffered to the handshake
  }
  const t = new tls.TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: ['postgresql'] });
  reader.reattach(t);
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      t.off('secure', onSecure);
      t.off('error', onError);
      t.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onSecure = () => done();
    const onError = (e: NodeJS.ErrnoException) => done(new TlsFailed(e.message, e.code));
    const onClose = () => done(new ConnectionClosed('client left during the TLS handshake'));
    t.on('secure', onSecure);
    t.on('error', onError);
    t.on('close', onClose);
  });
  return t;
}

/** What a direct-TLS client that did not negotiate ALPN `postgresql` gets (as from Postgres 17). */
const NO_ALPN = new Refusal(
  {
    severity: 'FATAL',
    code: '08P01',
    message: 'direct TLS connections must negotiate ALPN "postgresql"',
    hint: 'Use a Postgres 17 or later client with sslnegotiation=direct, or connect with sslnegotiation=postgres.',
  },
  { event: 'tls.refused', reason: 'no_alpn' },
);

export async function handleConnection(core: Core, state: ListenerState, raw: net.Socket): Promise<void> {
  raw.setNoDelay(true);
  const remote = { address: raw.remoteAddress ?? '?', port: raw.remotePort ?? 0 };
  const who = `${remote.address}:${remote.port}`;
  // Counted from accept, before any byte is read; `fail` exists by the time an eviction can come.
  const release = core.admitUnauthenticated({ address: remote.address, port: remote.port, protocol: 'postgres' }, () =>
    fail(new Refusal({ severity: 'FATAL', code: '53300', message: TOO_MANY_PENDING }, 'logged')),
  );
  if (!release) {
    raw.end(errorResponse({ severity: 'FATAL', code: '53300', message: TOO_MANY_PENDING }));
    // Not counted any more, so never let a peer that does not close keep the socket.
    setTimeout(() => raw.destroy(), 1000).unref();
    return;
  }

  const limits = core.config().limits;
  let socket: net.Socket | tls.TLSSocket = raw;
  // Before authentication nothing larger than a token is expected; the relay takes max_message_bytes.
  const reader = new MessageReader(raw, Math.min(PREAUTH_MAX_MESSAGE, limits.max_message_bytes));
  const timer = setTimeout(() => {
    fail(
      new Refusal(
        { severity: 'FATAL', code: '08P01', message: `authentication not completed within ${limits.auth_timeout} ms (limits.auth_timeout)` },
        { event: 'connection.timeout', reason: 'auth_timeout' },
      ),
    );
  }, limits.auth_timeout);
  // The first message (and TLS handshake) has a shorter deadline than the whole login.
  let startupTimer: NodeJS.Timeout | undefined =
    limits.startup_timeout < limits.auth_timeout
      ? setTimeout(() => {
          fail(
            new Refusal(
              { severity: 'FATAL', code: '08P01', message: `startup packet not received within ${limits.startup_timeout} ms (limits.startup_timeout)` },
              { event: 'connection.timeout', reason: 'startup_timeout' },
            ),
          );
        }, limits.startup_timeout)
      : undefined;

  let failed = false;
  const fail = (err: unknown) => {
    if (failed) return;
    failed = true;
    clearTimeout(timer);
    clearTimeout(startupTimer);
    release();
    // Nothing more is read from a connection being refused.
    reader.stop();
    if (err instanceof MessageTooLarge) {
      const password = err.type === F.Password;
      err = new Refusal(
        password
          ? { severity: 'FATAL', code: '28P01', message: `token too large: the password message has ${err.length} bytes; a Sluice token is at most ${MAX_TOKEN_CHARS} characters` }
          : { severity: 'FATAL', code: '08P01', message: `protocol violation: ${err.message}` },
        { event: 'protocol.violation', reason: 'message_too_large', type: String.fromCharCode(err.type), length: err.length, limit: err.limit, bytes_read: raw.bytesRead },
      );
    }
    if (err instanceof Refusal) {
      if (err.limited === undefined) {
        core.log.info({ event: 'auth.refused', client: who, code: err.fields.code, reason: err.fields.message }, 'connection refused');
      } else if (err.limited !== 'logged') {
        core.logPreAuth('info', { ...err.limited, protocol: 'postgres', client: who, code: err.fields.code }, `connection refused: ${err.fields.message}`);
      }
      socket.end(errorResponse(err.fields));
    } else if (err instanceof TlsFailed) {
      core.logPreAuth('info', { event: 'tls.failed', protocol: 'postgres', client: who, code: err.code, reason: err.message }, 'TLS handshake with the client failed');
      socket.destroy();
    } else if (err instanceof ProtocolViolation) {
      core.logPreAuth('info', { event: 'protocol.violation', reason: 'malformed', protocol: 'postgres', client: who, detail: err.message }, `protocol violation during startup: ${err.message}`);
      socket.end(errorResponse({ severity: 'FATAL', code: '08P01', message: `protocol violation: ${err.message}` }));
    } else if (clientGone(err)) {
      // The client reset or abandoned the connection: nothing to tell it, nothing wrong here.
      core.logPreAuth('info', { event: 'connection.reset', reason: 'client_reset', protocol: 'postgres', client: who, code: (err as NodeJS.ErrnoException).code }, 'client reset the connection during startup');
      socket.destroy();
    } else if (!(err instanceof ConnectionClosed)) {
      core.log.warn({ event: 'connection.error', client: who, err: (err as Error).message }, 'connection failed during startup');
      // The client still learns that it was Sluice, and where to look.
      socket.end(errorResponse({ severity: 'FATAL', code: 'XX000', message: 'Sluice could not set up this session (internal error); the gateway log has the details' }));
    }
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  try {
    let params: Record<string, string> | null = null;
    let negotiated = false;
    if ((await reader.peekByte()) === TLS_HANDSHAKE) {
      // sslnegotiation=direct (Postgres 17+ clients): TLS at once, without SSLRequest.
      if (!state.secureContext) {
        failed = true;
        clearTimeout(timer);
        clearTimeout(startupTimer);
        release();
        reader.stop();
        core.logPreAuth(
          'warn',
          { event: 'connection.refused', protocol: 'postgres', client: who, reason: 'direct_tls_without_tls' },
          'a client started TLS directly (sslnegotiation=direct), but this listener has no TLS (listeners.postgres.tls); refused',
        );
        raw.end(TLS_ALERT_HANDSHAKE_FAILURE);
        setTimeout(() => raw.destroy(), 1000).unref();
        return;
      }
      negotiated = true;
      const t = await startTls(raw, reader, state.secureContext);
      socket = t;
      if (t.alpnProtocol !== 'postgresql') throw NO_ALPN;
    }
    /** The protocol version spoken with the client: 3.0, or 3.2 (longer cancel keys; the upstream stays 3.0). */
    let version = PROTOCOL_3_0;
    while (!params) {
      const pkt = await reader.readStartupPacket();
      const code = pkt.readInt32BE(0);
      if (code === SSL_REQUEST) {
        if (negotiated) throw new ProtocolViolation('repeated SSLRequest');
        negotiated = true;
        if (!state.secureContext) {
          socket.write('N');
          continue;
        }
        // Bytes sent before our answer would be read as if they came over TLS.
        if (reader.buffered) throw new ProtocolViolation('unencrypted data after the SSLRequest (possible injection attempt)');
        socket.write('S');
        socket = await startTls(raw, reader, state.secureContext);
        continue;
      }
      if (code === GSSENC_REQUEST) {
        socket.write('N');
        continue;
      }
      if (code === CANCEL_REQUEST) {
        // The pid, then the secret key: 4 bytes from a 3.0 client, up to 256 from a 3.2 one.
        if (pkt.length < 12 || pkt.length > 8 + MAX_CANCEL_KEY_BYTES) throw new ProtocolViolation('malformed CancelRequest');
        const entry = state.cancelKeys.lookup(pkt.readInt32BE(4), pkt.subarray(8));
        clearTimeout(timer);
        clearTimeout(startupTimer);
        release();
        failed = true;
        socket.destroy();
        if (entry?.intercept?.()) {
          core.log.info({ event: 'cancel.approval', target: entry.target.name }, 'cancel request withdrew a statement waiting for approval');
          return;
        }
        if (entry) {
          core.log.info({ event: 'cancel.forwarded', target: entry.target.name }, 'cancel request forwarded');
          await sendCancel(entry.target, entry.pid, entry.upstreamSecret);
        }
        return;
      }
      const major = code >>> 16;
      if (major !== 3) {
        throw new Refusal({ severity: 'FATAL', code: '0A000', message: `unsupported frontend protocol ${major}.${code & 0xffff}: Sluice speaks 3.0 to 3.2` });
      }
      params = parseStartupParams(pkt);
      // As Postgres 18: a newer minor gets 3.2, and NegotiateProtocolVersion says so
      // (with the full version, major << 16 | minor); so does any `_pq_.` option,
      // none of which Sluice supports. 3.0 to 3.2 are taken as asked.
      version = Math.min(code, PROTOCOL_3_2);
      const unsupported = Object.keys(params).filter((k) => k.startsWith('_pq_.'));
      if (code > PROTOCOL_3_2 || unsupported.length) socket.write(negotiateProtocolVersion(version, unsupported));
    }
    clearTimeout(startupTimer);
    startupTimer = undefined;

    const secure = socket instanceof tls.TLSSocket;
    const client = { address: remote.address, port: remote.port, secure, user: params.user, application: params.application_name };
    if ('replication' in params && params.replication !== 'false' && params.replication !== '0') {
      throw new Refusal({ severity: 'FATAL', code: '0A000', message: 'replication connections are not supported through Sluice' });
    }
    const targetName = params.database || params.user || '';
    if (!secure && !isLoopback(remote.address) && !state.cfg.allow_insecure_auth) {
      throw new Refusal({
        severity: 'FATAL',
        code: '28000',
        message: 'Sluice accepts a token only over TLS from a non-loopback client',
        hint: 'Connect with sslmode=require (or verify-full), or set listeners.postgres.allow_insecure_auth: true.',
      });
    }

    socket.write(authRequest(AUTH_CLEARTEXT));
    const pw = await reader.readMessage();
    if (pw.type !== F.Password) throw new ProtocolViolation(`expected a password message, got type 0x${pw.type.toString(16)}`);
    const end = pw.body.indexOf(0);
    const token = pw.body.toString('utf8', 0, end < 0 ? pw.body.length : end).trim();

    let grant;
    try {
      grant = await core.authenticate(token, targetName, 'postgres', client);
    } catch (err) {
      if (err instanceof AuthError) {
        throw new Refusal({ severity: 'FATAL', code: authSqlstate(err.code), message: err.message });
      }
      throw err;
    }
    const { identity, target } = grant;
    // Authenticated: no longer one of the pending connections (auth_timeout still bounds the upstream login).
    release();

    const forward: Record<string, string> = {};
    for (const [k, v] of Object.entries(params)) if (FORWARDED_PARAMS.has(k)) forward[k] = v;
    if (forward.client_encoding && isUnsafeClientEncoding(forward.client_encoding)) {
      throw new Refusal({
        severity: 'FATAL',
        code: '22023',
        message: `client_encoding ${forward.client_encoding} is not accepted by Sluice: its multibyte characters can hide SQL from the gateway's parser`,
        hint: 'Use UTF8 (for example PGCLIENTENCODING=UTF8).',
      });
    }
    // A read-only policy also makes the server session read-only: a function that
    // writes behind a harmless-looking SELECT fails on the server.
    if (core.sessions.policies.resolve(identity, target.name, 'postgres')?.readOnly) forward.default_transaction_read_only = 'on';
    if (reader.closed) throw new ConnectionClosed('client left during authentication');
    let password: string | undefined;
    try {
      password = await core.targetPassword(target);
    } catch (err) {
      // The reason (env var, file, command) is for the operator, not the client.
      core.log.error({ event: 'credential.error', target: target.name, sub: identity.sub, err: (err as Error).message }, 'cannot read the stored credential of a target');
      throw new Refusal({
        severity: 'FATAL',
        code: '08006',
        message: `Sluice cannot read its stored credential for target "${target.name}" (targets.${target.name}.password); the gateway log says why`,
      });
    }
    let upstream;
    try {
      upstream = await connectUpstream(target, password, forward, limits.max_message_bytes);
    } catch (err) {
      if (err instanceof UpstreamError) {
        core.log[err.level]({ event: 'upstream.error', target: target.name, sub: identity.sub, err: err.message, ...err.log }, 'upstream connection failed');
        throw new Refusal({ severity: 'FATAL', code: err.sqlstate, message: err.message, detail: err.detail });
      }
      throw err;
    }
    if (failed || reader.closed) {
      // Timed out, or the client left while we were connecting upstream (its
      // close was seen only by the reader: nothing else listens yet).
      upstream.socket.destroy();
      fail(new ConnectionClosed('client left during upstream login'));
      return;
    }
    clearTimeout(timer);
    release();

    // The client learns the backend's real pid (as pg_backend_pid() and notifications
    // show it) with a secret key of Sluice's own, so a CancelRequest has to come through Sluice.
    const key = state.cancelKeys.add(target, upstream.pid, upstream.secret, version >= PROTOCOL_3_2 ? CANCEL_KEY_BYTES_3_2 : 4);
    let relay: PgRelay | null = null;
    const session = core.sessions.open({
      protocol: 'postgres',
      identity,
      target: target.name,
      client,
      terminate: (reason) => relay?.terminate(reason),
    });
    const clientLeftover = reader.detach();
    const up = upstream;
    relay = new PgRelay(socket, upstream.socket, session, {
      maxMessage: limits.max_message_bytes,
      onClose: (reason) => {
        state.cancelKeys.remove(key);
        session.close(reason);
      },
      cancelUpstream: () => {
        core.log.info({ event: 'cancel.on_close', session: session.id, target: target.name }, 'session ended mid-request; cancelling its upstream query');
        void sendCancel(target, up.pid, up.secret);
      },
      catalog: catalogFor(core, state, target),
      clientEncoding: upstream.clientEncoding,
    });
    key.intercept = () => relay?.cancelApproval() ?? false;
    const hello = Buffer.concat([authRequest(AUTH_OK), ...upstream.parameterStatus, backendKeyData(key.pid, key.secret), readyForQuery('I')]);
    session.recorder?.record(Dir.GatewayToClient, hello);
    socket.write(hello);
    relay.start(clientLeftover, upstream.leftover);
  } catch (err) {
    fail(err);
  }
}

/** A socket error that means the client went away (reset, broken pipe), not a fault of the gateway. */
function clientGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'ECONNABORTED';
}

/** The SQLSTATE of a refused login: 28P01 for a bad credential, 3D000 for an unknown target, 53100 when recording is down, else 28000. */
function authSqlstate(code: AuthErrorCode): string {
  if (code === 'unknown_target') return '3D000';
  if (code === 'recording_unavailable') return '53100';
  return code.startsWith('token') || code === 'unknown_issuer' ? '28P01' : '28000';
}
