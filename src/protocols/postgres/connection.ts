// One client connection, from accept to relay: TLS negotiation, startup packet,
// token as a cleartext password, identity and target checks, upstream login with
// the stored credential, then the relay.

import net from 'node:net';
import tls from 'node:tls';
import type { Core } from '../../core/protocol.js';
import type { ListenerConfig, PostgresTargetConfig } from '../../core/config-types.js';
import { CatalogCache } from './catalog.js';
import { Dir } from '../../recording/types.js';
import { AuthError } from '../../core/identity-types.js';
import { CANCEL_REQUEST, F, GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST } from './constants.js';
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
import { ConnectionClosed, MessageReader } from './reader.js';
import { PgRelay } from './relay.js';
import { connectUpstream, sendCancel, UpstreamError } from './upstream.js';
import type { CancelKeys } from './cancel-keys.js';
import { isUnsafeClientEncoding } from '../../policy/parser-safety.js';

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

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
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

class Refusal extends Error {
  constructor(readonly fields: ErrorFields) {
    super(fields.message);
  }
}

export async function handleConnection(core: Core, state: ListenerState, raw: net.Socket): Promise<void> {
  raw.setNoDelay(true);
  const remote = { address: raw.remoteAddress ?? '?', port: raw.remotePort ?? 0 };
  const release = core.admitUnauthenticated();
  if (!release) {
    raw.end(errorResponse({ severity: 'FATAL', code: '53300', message: 'too many connections waiting to authenticate; try again shortly' }));
    // Not counted any more, so never let a peer that does not close keep the socket.
    setTimeout(() => raw.destroy(), 1000).unref();
    core.log.warn({ event: 'connection.refused', client: `${remote.address}:${remote.port}`, reason: 'max_unauthenticated' }, 'too many unauthenticated connections');
    return;
  }

  const limits = core.config().limits;
  let socket: net.Socket | tls.TLSSocket = raw;
  const reader = new MessageReader(raw, limits.max_message_bytes);
  const timer = setTimeout(() => {
    fail(new Refusal({ severity: 'FATAL', code: '08P01', message: `authentication not completed within ${limits.auth_timeout} ms (limits.auth_timeout)` }));
  }, limits.auth_timeout);

  let failed = false;
  const fail = (err: unknown) => {
    if (failed) return;
    failed = true;
    clearTimeout(timer);
    release();
    if (err instanceof Refusal) {
      core.log.info({ event: 'auth.refused', client: `${remote.address}:${remote.port}`, code: err.fields.code, reason: err.fields.message }, 'connection refused');
      socket.end(errorResponse(err.fields));
    } else if (err instanceof ProtocolViolation) {
      core.log.info({ event: 'protocol.violation', client: `${remote.address}:${remote.port}`, reason: err.message }, 'protocol violation during startup');
      socket.end(errorResponse({ severity: 'FATAL', code: '08P01', message: `protocol violation: ${err.message}` }));
    } else if (!(err instanceof ConnectionClosed)) {
      core.log.warn({ event: 'connection.error', client: `${remote.address}:${remote.port}`, err: (err as Error).message }, 'connection failed during startup');
      // The client still learns that it was Sluice, and where to look.
      socket.end(errorResponse({ severity: 'FATAL', code: 'XX000', message: 'Sluice could not set up this session (internal error); the gateway log has the details' }));
    }
    setTimeout(() => socket.destroy(), 1000).unref();
  };

  try {
    let params: Record<string, string> | null = null;
    let negotiated = false;
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
        socket.write('S');
        reader.detach();
        const t = new tls.TLSSocket(raw, { isServer: true, secureContext: state.secureContext });
        socket = t;
        reader.reattach(t);
        continue;
      }
      if (code === GSSENC_REQUEST) {
        socket.write('N');
        continue;
      }
      if (code === CANCEL_REQUEST) {
        if (pkt.length !== 12) throw new ProtocolViolation('malformed CancelRequest');
        const entry = state.cancelKeys.lookup(pkt.readInt32BE(4), pkt.readInt32BE(8));
        clearTimeout(timer);
        release();
        failed = true;
        socket.destroy();
        if (entry?.intercept?.()) {
          core.log.info({ event: 'cancel.approval', target: entry.target.name }, 'cancel request withdrew a statement waiting for approval');
          return;
        }
        if (entry) {
          core.log.info({ event: 'cancel.forwarded', target: entry.target.name }, 'cancel request forwarded');
          await sendCancel(entry.target, entry.upstreamPid, entry.upstreamSecret);
        }
        return;
      }
      const major = code >>> 16;
      if (major !== 3) {
        throw new Refusal({ severity: 'FATAL', code: '0A000', message: `unsupported frontend protocol ${major}.${code & 0xffff}: Sluice speaks 3.0` });
      }
      params = parseStartupParams(pkt);
      const minor = code & 0xffff;
      const unsupported = Object.keys(params).filter((k) => k.startsWith('_pq_.'));
      if (minor > 0 || unsupported.length) socket.write(negotiateProtocolVersion(PROTOCOL_3_0 & 0xffff, unsupported));
    }

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
        throw new Refusal({ severity: 'FATAL', code: err.sqlstate, message: err.message });
      }
      throw err;
    }
    const { identity, target } = grant;

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

    const key = state.cancelKeys.add(target, upstream.pid, upstream.secret);
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
        state.cancelKeys.remove(key.pid);
        session.close(reason);
      },
      cancelUpstream: () => {
        core.log.info({ event: 'cancel.on_close', session: session.id, target: target.name }, 'session ended mid-request; cancelling its upstream query');
        void sendCancel(target, up.pid, up.secret);
      },
      pids: { upstream: upstream.pid, client: key.pid },
      catalog: catalogFor(core, state, target),
      clientEncoding: upstream.clientEncoding,
    });
    state.cancelKeys.setIntercept(key.pid, () => relay?.cancelApproval() ?? false);
    const hello = Buffer.concat([authRequest(AUTH_OK), ...upstream.parameterStatus, backendKeyData(key.pid, key.secret), readyForQuery('I')]);
    session.recorder?.record(Dir.GatewayToClient, hello);
    socket.write(hello);
    relay.start(clientLeftover, upstream.leftover);
  } catch (err) {
    fail(err);
  }
}
