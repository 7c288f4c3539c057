// The one interface between the core and a protocol module.
// A protocol module (src/protocols/<name>) owns its wire format; the core owns
// identity, targets, credentials, sessions, limits and (later) policy and recording.

import type { Logger } from './log.js';
import type { ListenerConfig, SluiceConfig, TargetConfig } from './config-types.js';
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

export interface AuthGrant {
  identity: Identity;
  target: TargetConfig;
}

export interface Core {
  readonly log: Logger;
  /** The current configuration. It changes on reload; read it again for each new session. */
  config(): SluiceConfig;
  /**
   * Verifies `token`, checks that `targetName` exists, speaks `protocol` and
   * allows the identity. Throws AuthError with a message fit for the client.
   */
  authenticate(token: string, targetName: string, protocol: string, client: ClientInfo): Promise<AuthGrant>;
  /** The stored credential for a target (never shown to a client, never logged). */
  targetPassword(target: TargetConfig): Promise<string | undefined>;
  /** Live sessions. */
  readonly sessions: SessionRegistry;
  /**
   * Admission control for connections that have not authenticated yet.
   * Returns false when the configured limit is reached; call `release` exactly once after a true.
   */
  admitUnauthenticated(): boolean;
  releaseUnauthenticated(): void;
}

export interface RunningListener {
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  /** Applies a reloaded listener config (certificates, flags) to new connections. */
  reload(cfg: ListenerConfig): void;
  /** Stops accepting; live sessions continue. */
  close(): Promise<void>;
}

export interface ProtocolModule {
  readonly protocol: string;
  listen(core: Core, cfg: ListenerConfig): Promise<RunningListener>;
}

export type { Session };
