// The core: configuration, identity, targets, credentials, sessions and the
// listeners of every protocol module. Protocol modules see it only as `Core`.

import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { SluiceConfig, TargetConfig } from './config-types.js';
import { loadConfig } from './config.js';
import { AuthError, type Identity } from './identity-types.js';
import { IdentityVerifier } from './identity.js';
import { createLogger, type Logger } from './log.js';
import type { AuthGrant, ClientInfo, Core, ProtocolModule, RunningListener } from './protocol.js';
import { resolveSecret } from './secrets.js';
import { SessionRegistry, type SessionHost } from './sessions.js';
import { isAllowed } from './access.js';
import { loadOrCreateSigningKey } from './signing-key.js';
import { PolicyResolver, type PolicySet } from '../policy/engine.js';
import { initSqlAnalysis } from '../policy/sql-facts.js';
import { MaskingResolver, type MaskingSet } from '../policy/masking/ruleset.js';
import type { MaskContext } from '../policy/masking/strategies.js';
import { loadOrCreateSecret } from './secret-key.js';
import { openRecordingStore, startRetention } from './recordings.js';
import type { RecordingStore } from '../recording/store.js';

/** Stored credentials are re-read at most this often (rotation), and never logged. */
const SECRET_TTL_MS = 30_000;

export class Gateway implements Core, SessionHost {
  readonly log: Logger;
  readonly sessions: SessionRegistry;
  private cfg: SluiceConfig;
  private verifier: IdentityVerifier;
  private readonly listeners = new Map<string, RunningListener>();
  private unauthenticated = 0;
  private resolver: PolicyResolver;
  private maskingResolver: MaskingResolver;
  maskContext: MaskContext = { hmacKey: Buffer.alloc(0) };
  private store: RecordingStore | null = null;
  private storeError: string | null = null;
  private stopRetention?: () => void;
  /** Bumped on every reload; sessions re-resolve their policy when it changes. */
  generation = 0;
  private readonly secrets = new Map<string, { value: string; at: number }>();

  constructor(
    cfg: SluiceConfig,
    private readonly modules: ProtocolModule[],
    log?: Logger,
  ) {
    this.cfg = cfg;
    this.log = log ?? createLogger(cfg.log);
    this.sessions = new SessionRegistry(this.log, this);
    this.verifier = new IdentityVerifier(cfg.identity, cfg.state_dir);
    this.resolver = new PolicyResolver(cfg.policies, cfg.policy);
    this.maskingResolver = new MaskingResolver(cfg.masking);
  }

  config(): SluiceConfig {
    return this.cfg;
  }

  /** Creates the state dir and keys, loads issuer keys, starts every configured listener. */
  async start(): Promise<RunningListener[]> {
    await mkdir(this.cfg.state_dir, { recursive: true, mode: 0o700 });
    await loadOrCreateSigningKey(this.cfg.state_dir);
    this.maskContext = { hmacKey: await loadOrCreateSecret(this.cfg.state_dir, 'masking.key') };
    await this.verifier.init();
    // The Postgres parser (WASM) loads once here; analysis is synchronous afterwards.
    await initSqlAnalysis();
    if (this.cfg.recording.enabled) await this.openRecordings();
    for (const mod of this.modules) {
      const lc = this.cfg.listeners[mod.protocol as keyof SluiceConfig['listeners']];
      if (!lc) continue;
      const l = await mod.listen(this, lc);
      this.listeners.set(mod.protocol, l);
      this.log.info({ event: 'listener.start', protocol: l.protocol, host: l.host, port: l.port, tls: !!lc.tls }, `${l.protocol} listening on ${l.host}:${l.port}`);
    }
    if (this.listeners.size === 0) this.log.warn({ event: 'listener.none' }, 'no listener is configured (listeners.*)');
    return [...this.listeners.values()];
  }

  listener(protocol: string): RunningListener | undefined {
    return this.listeners.get(protocol);
  }

  /**
   * Re-reads the config file. New sessions use the new config; live sessions are
   * not touched. Listener addresses cannot change without a restart.
   */
  async reload(): Promise<void> {
    const next = await loadConfig(this.cfg.source);
    const verifier = new IdentityVerifier(next.identity, next.state_dir);
    await verifier.init();
    for (const [proto, l] of this.listeners) {
      const lc = next.listeners[proto as keyof SluiceConfig['listeners']];
      if (!lc) {
        this.log.warn({ event: 'config.reload', protocol: proto }, `listeners.${proto} was removed; restart Sluice to stop it`);
        continue;
      }
      if (lc.host !== this.cfg.listeners[proto as keyof SluiceConfig['listeners']]?.host || lc.port !== l.port) {
        this.log.warn({ event: 'config.reload', protocol: proto }, `listeners.${proto} address changed; restart Sluice to apply it`);
      }
      l.reload(lc);
    }
    this.cfg = next;
    this.verifier = verifier;
    this.resolver = new PolicyResolver(next.policies, next.policy);
    this.maskingResolver = new MaskingResolver(next.masking);
    this.generation++;
    this.secrets.clear();
    this.log.info({ event: 'config.reload', targets: Object.keys(next.targets).length, live_sessions: this.sessions.size }, 'configuration reloaded');
  }

  resolve(identity: Identity, target: string, protocol: string): PolicySet | null {
    return this.resolver.resolve(identity, target, protocol);
  }

  private async openRecordings(): Promise<void> {
    const rc = this.cfg.recording;
    this.store = await openRecordingStore(this.cfg, {
      onFailure: (err) => {
        this.storeError = err.message;
        this.log.error({ event: 'recording.failure', err: err.message, on_failure: this.cfg.recording.on_failure }, `RECORDING STORE CANNOT WRITE: ${err.message}`);
        if (this.cfg.recording.on_failure === 'deny_new') {
          const n = this.sessions.terminateWhere(() => true, `the recording store cannot write (${err.message}); sessions cannot continue unrecorded (recording.on_failure: deny_new)`);
          if (n) this.log.error({ event: 'recording.sessions_closed', sessions: n }, 'live sessions closed because they can no longer be recorded');
        } else {
          this.log.error({ event: 'recording.unrecorded' }, 'sessions continue UNRECORDED (recording.on_failure: continue_unrecorded)');
        }
      },
      onRecover: () => {
        this.storeError = null;
        this.log.warn({ event: 'recording.recovered' }, 'the recording store can write again');
      },
    });
    this.stopRetention = startRetention(this.store, rc, (msg, n) => this.log.info({ event: 'recording.pruned', ...n }, msg));
    this.log.info({ event: 'recording.open', dir: join(this.cfg.state_dir, 'recordings'), key_id: rc.key_id }, 'recording sessions');
  }

  recordingStore(): RecordingStore | null {
    return this.store && !this.store.failed ? this.store : null;
  }

  /** The audit trail's queryable copy (the JSON log lines are the other). */
  auditEvent(event: Record<string, unknown>): void {
    if (this.store && !this.store.failed) this.store.appendAudit(event);
  }

  resolveMasking(identity: Identity, target: string, protocol: string): MaskingSet | null {
    return this.maskingResolver.resolve(identity, target, protocol);
  }

  async authenticate(token: string, targetName: string, protocol: string, client: ClientInfo): Promise<AuthGrant> {
    const identity = await this.verifier.verify(token);
    // Only a verified caller learns that recording is failing.
    if (this.cfg.recording.enabled && this.cfg.recording.on_failure === 'deny_new' && (!this.store || this.store.failed)) {
      throw new AuthError(
        'recording_unavailable',
        `Sluice cannot record sessions right now (${this.storeError ?? 'recording store unavailable'}), so new sessions are refused (recording.on_failure: deny_new)`,
        '53100',
      );
    }

    const target = this.cfg.targets[targetName];
    const who = `sub "${identity.sub}"`;
    if (!target) {
      throw new AuthError('unknown_target', `unknown target "${targetName}": ask for one of the configured targets by database name`, '3D000');
    }
    if (target.protocol !== protocol) {
      throw new AuthError('unknown_target', `target "${targetName}" is a ${target.protocol} target, not ${protocol}`, '3D000');
    }
    if (!isAllowed(target.allow, identity)) {
      this.log.info({ event: 'auth.denied', target: targetName, sub: identity.sub, groups: identity.groups, client: `${client.address}:${client.port}` }, 'identity not allowed for target');
      throw new AuthError('target_not_allowed', `${who} is not allowed to use target "${targetName}" (targets.${targetName}.allow)`);
    }
    return { identity, target };
  }

  async targetPassword(target: TargetConfig): Promise<string | undefined> {
    if (!target.password) return undefined;
    const key = JSON.stringify(target.password);
    const hit = this.secrets.get(key);
    if (hit && Date.now() - hit.at < SECRET_TTL_MS) return hit.value;
    const value = await resolveSecret(target.password, dirname(this.cfg.source || '.'), { label: `targets.${target.name}.password` });
    this.secrets.set(key, { value, at: Date.now() });
    return value;
  }

  admitUnauthenticated(): boolean {
    if (this.unauthenticated >= this.cfg.limits.max_unauthenticated) return false;
    this.unauthenticated++;
    return true;
  }

  releaseUnauthenticated(): void {
    this.unauthenticated--;
  }

  /** Stops listening, ends live sessions with `reason`, flushes logs. */
  async stop(reason = 'gateway shutting down'): Promise<void> {
    const closing = [...this.listeners.values()].map((l) => l.close());
    this.listeners.clear();
    this.sessions.terminateWhere(() => true, reason);
    await Promise.all(closing);
    this.stopRetention?.();
    await this.store?.close().catch(() => {});
    this.log.flush?.();
  }
}
