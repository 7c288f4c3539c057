// The one interface between the core and a protocol module.
// A protocol module (src/protocols/<name>) owns its wire format; the core owns
// identity, targets, credentials, sessions, limits and (later) policy and recording.

import type { Logger } from '../../observability/log.js';
import type { SluiceConfig, TargetConfig } from '../../config/types.js';

/** Any protocol listener's config (`listeners.<protocol>`). */
export type AnyListenerConfig = NonNullable<SluiceConfig['listeners'][keyof SluiceConfig['listeners']]>;
import type { Identity } from '../../identity/types.js';
import type { Session, SessionRegistry } from '../../session/session.js';
import type { Frame } from '../../recording/types.js';

export interface ClientInfo {
  /** Remote address and port of the caller. */
  address: string;
  port: number;
  /** True when the client's transport is encrypted (TLS). */
  secure: boolean;
  /** The user name the client presented; informational only. */
  user?: string;
  /** Free-form application name, when the protocol carries one. */
  application?: string;
}

export interface AuthGrant<T extends TargetConfig = TargetConfig> {
  identity: Identity;
  target: T;
}

/** The target config of one protocol: TargetFor<'ssh'> is SshTargetConfig. */
export type TargetFor<P extends TargetConfig['protocol']> = Extract<TargetConfig, { protocol: P }>;

export interface Core {
  readonly log: Logger;
  /** The current configuration. It changes on reload; read it again for each new session. */
  config(): SluiceConfig;
  /**
   * Verifies `token`, checks that `targetName` exists, speaks `protocol` and
   * allows the identity. Throws AuthError with a message fit for the client.
   */
  authenticate<P extends TargetConfig['protocol']>(token: string, targetName: string, protocol: P, client: ClientInfo): Promise<AuthGrant<TargetFor<P>>>;
  /** The stored credential for a target (never shown to a client, never logged). */
  targetPassword(target: TargetConfig): Promise<string | undefined>;
  /** Any stored credential of a target by its config field (`password`, an SSH target's `private_key`); cached and rotated like the password. */
  targetSecret(target: TargetConfig, field: string): Promise<string | undefined>;
  /** Live sessions. */
  readonly sessions: SessionRegistry;
  /**
   * Admission control for connections that have not authenticated yet, called
   * at TCP accept: the global pool (limits.max_unauthenticated) and the cap per
   * source (limits.max_unauthenticated_per_source). Returns null when refused
   * (already logged, rate-limited): the caller sends its protocol's "too many
   * connections waiting to authenticate" error (`refusalMessage`) and closes. Else
   * a release function to call when the connection authenticates or ends (calls
   * after the first are no-ops). `evict` is called if this connection later gives
   * its slot to a newcomer from a source holding fewer: it must close the
   * connection with the same error (the slot is already free then).
   */
  admitUnauthenticated(client: PreAuthClient, evict: () => void): (() => void) | null;
  /**
   * Logs a line an unauthenticated peer caused (timeout, malformed startup,
   * oversized message), rate-limited per event, reason and source, so a flood
   * of such connections cannot flood the log.
   */
  logPreAuth(level: 'info' | 'warn', fields: PreAuthLogFields, msg: string): void;
}

/** A connection at accept, before any byte was read. */
export interface PreAuthClient {
  address: string;
  port: number;
  protocol: string;
}

export interface PreAuthLogFields {
  event: string;
  reason: string;
  protocol: string;
  /** `address:port` */
  client: string;
  [k: string]: unknown;
}

/** What a refused or evicted client is told (each protocol wraps it in its own error). */
export const TOO_MANY_PENDING = 'too many connections waiting to authenticate; try again shortly';

export interface RunningListener {
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** Applies a reloaded listener config (certificates, flags) to new connections. */
  reload(cfg: AnyListenerConfig): void;
  /** Stops accepting; live sessions continue. */
  close(): Promise<void>;
}

/** How `sluice sessions replay` shows a recorded session. */
export interface ReplayOptions {
  /** Rows shown per result (the count is always exact). */
  rows: number;
  /** Start time of the session, for absolute timestamps. */
  startedAt?: Date;
}

/** Renders a recorded session of one protocol as readable lines. */
export type Renderer = (frames: Iterable<Frame>, opts: ReplayOptions) => string[];

/** What an exporter knows of a recorded session besides its frames. */
export interface ExportMeta {
  id: string;
  target: string;
  sub: string;
  /** ISO time the session started; frame times are relative to it. */
  started_at: string;
  /** Sluice's version, for the export's creator field. */
  version: string;
}

/**
 * Standard formats a protocol's recordings export to (`sluice export --format
 * <name>`), one optional field per format so the CLI finds the exporter on the
 * module and the core imports no protocol.
 */
export interface Exporters {
  /** HAR 1.2 (HTTP sessions): one JSON document. */
  readonly har?: (frames: Iterable<Frame>, meta: ExportMeta) => object;
}

export interface ProtocolModule {
  readonly protocol: string;
  listen(core: Core, cfg: AnyListenerConfig): Promise<RunningListener>;
  /** The replay renderer of this protocol's recordings. */
  readonly render: Renderer;
  /** Export formats besides jsonl (which every protocol has). */
  readonly export?: Exporters;
}

export type { Session };
