// The one interface between the core and a protocol module.
// A protocol module (src/protocols/<name>) owns its wire format; the core owns
// identity, targets, credentials, sessions, limits and (later) policy and recording.

import type { Logger } from './log.js';
import type { SluiceConfig, TargetConfig } from './config-types.js';

/** Any protocol listener's config (`listeners.<protocol>`). */
export type AnyListenerConfig = NonNullable<SluiceConfig['listeners'][keyof SluiceConfig['listeners']]>;
import type { Identity } from './identity-types.js';
import type { Session, SessionRegistry } from './sessions.js';

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
  /** Any stored credential of a target by its key (`password`, an SSH target's `private_key`); cached and rotated like the password. */
  targetSecret(target: TargetConfig, key: 'password' | 'private_key'): Promise<string | undefined>;
  /** Live sessions. */
  readonly sessions: SessionRegistry;
  /**
   * Admission control for connections that have not authenticated yet.
   * Returns null when the configured limit is reached, else a release function
   * to call when the connection authenticates or ends (calls after the first are no-ops).
   */
  admitUnauthenticated(): (() => void) | null;
}

export interface RunningListener {
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** Applies a reloaded listener config (certificates, flags) to new connections. */
  reload(cfg: AnyListenerConfig): void;
  /** Stops accepting; live sessions continue. */
  close(): Promise<void>;
}

export interface ProtocolModule {
  readonly protocol: string;
  listen(core: Core, cfg: AnyListenerConfig): Promise<RunningListener>;
}

export type { Session };
