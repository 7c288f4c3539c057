// The core: configuration, identity, targets, credentials, sessions and the
// listeners of every protocol module. Protocol modules see it only as `Core`.

import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { SluiceConfig, TargetConfig } from '../config/types.js';
import { configWarnings, loadConfig } from '../config/load.js';
import { AuthError, principal, type Identity } from '../identity/types.js';
import { IdentityVerifier } from '../identity/tokens.js';
import { createLogger, type Logger } from '../observability/log.js';
import type { AuthGrant, ClientInfo, Core, PreAuthClient, PreAuthLogFields, ProtocolModule, RunningListener, TargetFor } from '../protocols/kit/module.js';
import { Admission, LogLimiter, sourceOf } from './admission.js';
import { resolveSecret } from '../config/secrets.js';
import type { SecretRef } from '../config/types.js';
import { SessionRegistry, type SessionHost } from '../session/session.js';
import { isAllowed, roleGroups, roleSetting, rolesOf } from '../identity/access.js';
import { loadOrCreateSigningKey } from '../identity/signing-key.js';
import { PolicyResolver, type PolicySet } from '../policy/engine.js';
import { initSqlAnalysis } from '../policy/sql/facts.js';
import { MaskingResolver, type MaskingSet } from '../policy/masking/ruleset.js';
import type { MaskContext } from '../policy/masking/strategies.js';
import { checkKeyPermissions, loadOrCreateSecret } from '../config/state-secrets.js';
import { openRecordingStore, startRetention } from '../recording/open.js';
import type { RecordingStore } from '../recording/store.js';
import { ApprovalBroker, type ApprovalOutcome, type ApprovalView } from '../governance/approvals.js';
import { Metrics, Tallies } from '../observability/metrics.js';
import { RevocationStore, revokes, type Revocation } from '../identity/revocations.js';
import { startAdminApi, type AdminApi } from '../admin/api.js';
import { WebhookSender } from '../governance/webhooks.js';

/** Stored credentials are re-read at most this often (rotation), and never logged. */
const SECRET_TTL_MS = 30_000;

export class Gateway implements Core, SessionHost {
  readonly log: Logger;
  readonly sessions: SessionRegistry;
  private cfg: SluiceConfig;
  private verifier: IdentityVerifier;
  private readonly listeners = new Map<string, RunningListener>();
  private readonly admission = new Admission();
  private readonly preAuthLogLimit = new LogLimiter();
  private resolver: PolicyResolver;
  private maskingResolver: MaskingResolver;
  maskContext: MaskContext = { hmacKey: Buffer.alloc(0) };
  private store: RecordingStore | null = null;
  private storeError: string | null = null;
  private stopRetention?: () => void;
  /** Bumped on every reload; sessions re-resolve their policy when it changes. */
  generation = 0;
  private readonly secrets = new Map<string, { value: string; at: number }>();
  readonly tallies = new Tallies();
  readonly approvals: ApprovalBroker;
  readonly metrics: Metrics;
  private webhooks: WebhookSender;
  revocations: RevocationStore | null = null;
  private admin: AdminApi | null = null;

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
    this.webhooks = new WebhookSender(cfg, this.log);
    this.approvals = new ApprovalBroker(cfg.approvals, {
      requested: (v) => this.approvalEvent('approval.requested', v),
      voted: (v, vote) => this.approvalEvent(`approval.${vote.action === 'approve' ? 'approved_by' : 'denied_by'}`, v, { vote }),
      decided: (v, o, ms) => this.approvalDecided(v, o, ms),
    },
    (who) => rolesOf(this.cfg, who).has('approver'),
    (who) => {
      const groups = roleGroups(this.cfg, who.issuerName).approver;
      const where = roleSetting('approver', who.issuerName);
      if (groups.length) return `members of ${groups.map((g) => `group ${g}`).join(', ')} (${where})`;
      return `not taken from issuer ${who.issuerName ?? '?'} (${where} names no group; approvals.approvers applies to Sluice's own issuer only)`;
    });
    this.metrics = new Metrics({ sessions: this.sessions, tallies: this.tallies, pendingApprovals: () => this.approvals.pendingCount });
  }

  config(): SluiceConfig {
    return this.cfg;
  }

  /** Creates the state dir and keys, loads issuer keys, starts every configured listener. */
  async start(): Promise<RunningListener[]> {
    try {
      return await this.startAll();
    } catch (err) {
      // Whatever did start (listeners, stores) must not keep a half-started gateway alive.
      await this.stop(`start failed: ${(err as Error).message}`).catch(() => {});
      throw err;
    }
  }

  private async startAll(): Promise<RunningListener[]> {
    await mkdir(this.cfg.state_dir, { recursive: true, mode: 0o700 });
    // Before any key is read or used: refuse key files that others can read or replace.
    const hostKey = this.cfg.listeners.ssh?.host_key;
    await checkKeyPermissions(this.cfg.state_dir, hostKey ? [hostKey] : []);
    await loadOrCreateSigningKey(this.cfg.state_dir);
    this.maskContext = { hmacKey: await loadOrCreateSecret(this.cfg.state_dir, 'masking.key') };
    this.logConfigReview(this.cfg);
    await this.verifier.init();
    // The Postgres parser (WASM, ~15 MiB) loads once here, only for a gateway that speaks Postgres;
    // analysis is synchronous afterwards.
    if (this.cfg.listeners.postgres) await initSqlAnalysis();
    this.revocations = await RevocationStore.open(this.cfg.state_dir);
    if (this.cfg.recording.enabled) await this.openRecordings();
    for (const mod of this.modules) {
      if (mod.protocol === 'admin') continue;
      const lc = this.cfg.listeners[mod.protocol as keyof SluiceConfig['listeners']];
      if (!lc) continue;
      const l = await mod.listen(this, lc);
      this.listeners.set(mod.protocol, l);
      this.log.info({ event: 'listener.start', protocol: l.protocol, host: l.host, port: l.port, tls: 'tls' in lc && !!lc.tls }, `${l.protocol} listening on ${l.host}:${l.port}`);
    }
    if (this.cfg.listeners.admin) {
      this.admin = await startAdminApi(this, this.cfg.listeners.admin);
      this.log.info({ event: 'listener.start', protocol: 'admin', host: this.admin.host, port: this.admin.port, tls: !!this.cfg.listeners.admin.tls }, `admin API listening on ${this.admin.url}`);
    }
    if (this.listeners.size === 0 && !this.admin) this.log.warn({ event: 'listener.none' }, 'no listener is configured (listeners.*)');
    this.warnConfig();
    return [...this.listeners.values()];
  }

  listener(protocol: string): RunningListener | undefined {
    return this.listeners.get(protocol);
  }

  /** The admin API's address, when listeners.admin is configured. */
  adminApi(): AdminApi | null {
    return this.admin;
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
    this.logConfigReview(next);
    this.resolver = new PolicyResolver(next.policies, next.policy);
    this.maskingResolver = new MaskingResolver(next.masking);
    this.approvals.reload(next.approvals);
    this.webhooks = new WebhookSender(next, this.log);
    this.admin?.reload(next.listeners.admin);
    this.generation++;
    this.secrets.clear();
    this.warnConfig();
    this.log.info({ event: 'config.reload', targets: Object.keys(next.targets).length, live_sessions: this.sessions.size }, 'configuration reloaded');
  }

  /** Settings that weaken a security default (unverified TLS to a target, password methods): one warning each. */
  private warnConfig(): void {
    for (const w of configWarnings(this.cfg)) this.log.warn({ event: 'config.warning', target: w.target, path: w.path, key: w.path }, `${w.path}: ${w.message}`);
  }

  resolve(identity: Identity, target: string, protocol: string): PolicySet | null {
    return this.resolver.resolve(identity, target, protocol);
  }

  private async openRecordings(): Promise<void> {
    const rc = this.cfg.recording;
    this.store = await openRecordingStore(this.cfg, {
      onFailure: (err) => {
        this.storeError = err.message;
        this.log.error(
          { event: 'recording.failure', err: err.message, dir: join(this.cfg.state_dir, 'recordings'), on_failure: this.cfg.recording.on_failure },
          `RECORDING STORE CANNOT WRITE: ${err.message}; it retries every second and recovers on its own once writes succeed`,
        );
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
      onNotice: (message) => this.log.warn({ event: 'recording.notice' }, message),
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

  async authenticate<P extends TargetConfig['protocol']>(token: string, targetName: string, protocol: P, client: ClientInfo): Promise<AuthGrant<TargetFor<P>>> {
    let identity: Identity;
    try {
      identity = await this.verifyIdentity(token);
    } catch (err) {
      this.tallies.logins.refused++;
      throw err;
    }
    // Only a verified caller learns that recording is failing.
    if (this.cfg.recording.enabled && this.cfg.recording.on_failure === 'deny_new' && (!this.store || this.store.failed)) {
      throw new AuthError(
        'recording_unavailable',
        `Sluice cannot record sessions right now (${this.storeError ?? 'recording store unavailable'}), so new sessions are refused (recording.on_failure: deny_new); try again later`,
      );
    }

    const target = this.cfg.targets[targetName];
    const who = `sub "${identity.sub}"`;
    if (!target) {
      const how = protocol === 'ssh' ? 'as the SSH user name (ssh TARGET@sluice-host)' : protocol === 'http' ? 'as the first path segment (https://sluice-host/TARGET/…) or the host name' : 'by database name';
      throw new AuthError('unknown_target', `unknown target "${targetName}": ask for one of the configured targets ${how}`);
    }
    if (target.protocol !== protocol) {
      throw new AuthError('unknown_target', `target "${targetName}" is a ${target.protocol} target, not ${protocol}`);
    }
    if (!isAllowed(target.allow, identity)) {
      this.log.info({ event: 'auth.denied', target: targetName, sub: identity.sub, issuer: identity.issuerName, groups: identity.groups, client: `${client.address}:${client.port}` }, 'identity not allowed for target');
      throw new AuthError('target_not_allowed', `${who} is not allowed to use target "${targetName}" (targets.${targetName}.allow)`);
    }
    this.tallies.logins.ok++;
    // Narrowed by the protocol check above.
    return { identity, target: target as TargetFor<P> };
  }

  /** Verifies a token and refuses revoked identities and tokens (also for the admin API). */
  async verifyIdentity(token: string): Promise<Identity> {
    const identity = await this.verifier.verify(token);
    const r = this.revocations?.find(identity);
    if (r) {
      const what = r.kind === 'sub' ? `identity "${r.value}"${r.issuer !== undefined ? ` of issuer ${identity.issuerName}` : ''}` : 'this token';
      throw new AuthError('token_revoked', `${what} was revoked${r.until ? ` until ${r.until}` : ''}${r.reason ? `: ${r.reason}` : ''}; ask a Sluice admin`);
    }
    return identity;
  }

  /**
   * The kill switch: persists the revocation, then ends every live session it
   * covers, on every protocol. Returns how many sessions were ended.
   */
  async revoke(r: Revocation): Promise<number> {
    if (!this.revocations) throw new Error('the gateway is not started');
    await this.revocations.add(r);
    const of = r.kind === 'sub' && r.issuer !== undefined ? ` of issuer ${r.issuer_name ?? r.issuer}` : '';
    const reason = `${r.kind === 'sub' ? `identity "${r.value}"${of}` : 'this token'} was revoked by ${r.by}${r.reason ? `: ${r.reason}` : ''}`;
    const n = this.sessions.terminateWhere((s) => revokes(r, s.identity), reason);
    this.tallies.kills.revocation += n;
    const event = { event: 'identity.revoked', time: r.at, kind: r.kind, value: r.value, issuer: r.kind === 'sub' ? (r.issuer ?? '*') : undefined, issuer_name: r.issuer_name, until: r.until, by: r.by, reason: r.reason, sessions_closed: n };
    this.log.warn(event, `${r.kind} ${r.value}${of} revoked by ${r.by}; ${n} live session(s) closed`);
    this.auditEvent(event);
    return n;
  }

  async unrevoke(scope: Pick<Revocation, 'kind' | 'value' | 'issuer'>, by: string): Promise<Revocation | undefined> {
    const had = await this.revocations?.remove(scope);
    if (had) {
      const event = { event: 'identity.unrevoked', time: new Date().toISOString(), kind: had.kind, value: had.value, issuer: had.kind === 'sub' ? (had.issuer ?? '*') : undefined, issuer_name: had.issuer_name, by };
      this.log.warn(event, `${had.kind} ${had.value} no longer revoked (by ${by})`);
      this.auditEvent(event);
    }
    return had;
  }

  /**
   * At start and reload: one line a security reviewer can read (which issuer grants what), and
   * the config's warnings (rules that name a subject of every issuer).
   */
  private logConfigReview(cfg: SluiceConfig): void {
    const issuers = [
      ...(cfg.identity.sluice_issuer.enabled ? [{ name: 'sluice', iss: cfg.identity.sluice_issuer.issuer }] : []),
      ...cfg.identity.issuers.map((i) => ({ name: i.name, iss: i.issuer })),
    ].map((i) => ({ ...i, ...roleGroups(cfg, i.name) }));
    const text = issuers.map((i) => `${i.name} (${i.iss}): admin ${i.admin.length ? `groups ${i.admin.join(', ')}` : 'none'}; approver ${i.approver.length ? `groups ${i.approver.join(', ')}` : 'none'}`).join('; ');
    this.log.info({ event: 'identity.roles', issuers }, `who may administer and approve, by issuer: ${text || 'no issuer is enabled'}`);
  }

  /** Ends one live session (admin kill). */
  kill(id: string, by: string, reason?: string): boolean {
    const s = this.sessions.get(id);
    if (!s) return false;
    const why = `session killed by ${by}${reason ? `: ${reason}` : ''}`;
    this.tallies.kills.admin++;
    const event = { event: 'session.killed', time: new Date().toISOString(), session: id, sub: s.identity.sub, target: s.init.target, protocol: s.init.protocol, by, reason };
    this.log.warn(event, why);
    this.auditEvent(event);
    s.terminate(why);
    return true;
  }

  private approvalEvent(name: string, v: ApprovalView, extra: Record<string, unknown> = {}): void {
    const s = this.sessions.get(v.session);
    const event = {
      event: name,
      time: new Date().toISOString(),
      approval: v.id,
      session: v.session,
      sub: v.sub,
      target: v.target,
      protocol: v.protocol,
      policy: v.policy,
      rule: v.rule,
      fingerprint: v.fingerprint,
      query: s?.lastFacts?.normalized,
      expires_at: v.expires_at,
      ...extra,
    };
    this.log.warn(event, name === 'approval.requested' ? `approval ${v.id} requested by ${v.sub} on ${v.target}` : `approval ${v.id}: ${name}`);
    this.auditEvent(event);
    s?.recorder?.event({ event: name, approval: v.id, rule: v.rule, statement: name === 'approval.requested' ? v.statement : undefined, ...extra });
    this.webhooks.send(name, v);
  }

  private approvalDecided(v: ApprovalView, o: ApprovalOutcome, waitedMs: number): void {
    this.metrics.approvalWait.observe({ outcome: o.status }, waitedMs / 1000);
    this.approvalEvent(`approval.${o.status}`, v, { waited_ms: waitedMs, reason: v.reason, approvers: o.status === 'approved' ? o.approvers : undefined, grant: o.status === 'approved' ? o.grant : undefined });
  }

  async targetPassword(target: TargetConfig): Promise<string | undefined> {
    return this.targetSecret(target, 'password');
  }

  async targetSecret(target: TargetConfig, field: string): Promise<string | undefined> {
    // Any secret field of any protocol's target (password, an SSH private_key, an API key next):
    // the config schema validated it as a secret reference.
    // A dotted field reaches into nested config (an HTTP target's `inject.headers.X-API-Key.secret`).
    let ref: unknown = target;
    for (const part of field.split('.')) ref = ref && typeof ref === 'object' ? (ref as Record<string, unknown>)[part] : undefined;
    if (!ref || typeof ref !== 'object') return undefined;
    if (!ref) return undefined;
    const key = JSON.stringify(ref);
    const hit = this.secrets.get(key);
    if (hit && Date.now() - hit.at < SECRET_TTL_MS) return hit.value;
    const value = await resolveSecret(ref as SecretRef, dirname(this.cfg.source || '.'), { label: `targets.${target.name}.${field}` });
    this.secrets.set(key, { value, at: Date.now() });
    return value;
  }

  admitUnauthenticated(client: PreAuthClient, evict: () => void): (() => void) | null {
    const source = sourceOf(client.address);
    const who = `${client.address}:${client.port}`;
    const r = this.admission.admit(source, who, client.protocol, this.cfg.limits, evict);
    if (!r.ok) {
      const limit = r.reason === 'max_unauthenticated' ? this.cfg.limits.max_unauthenticated : this.cfg.limits.max_unauthenticated_per_source;
      this.logPreAuth(
        'warn',
        { event: 'connection.refused', reason: r.reason, protocol: client.protocol, client: who, source, held: r.held, pending: this.admission.pending },
        r.reason === 'max_unauthenticated'
          ? `too many unauthenticated connections (limits.max_unauthenticated: ${limit}); ${source} holds ${r.held}, no source holds more`
          : `source ${source} already holds ${r.held} unauthenticated connections (limits.max_unauthenticated_per_source: ${limit})`,
      );
      return null;
    }
    if (r.evicted) {
      const e = r.evicted;
      this.logPreAuth(
        'warn',
        { event: 'connection.evicted', reason: 'max_unauthenticated', protocol: e.protocol, client: e.client, source: e.source, held: e.held, for_source: source },
        `unauthenticated connection pool full (limits.max_unauthenticated: ${this.cfg.limits.max_unauthenticated}): closed the oldest pending connection of ${e.source} (which held ${e.held}) to admit one from ${source}`,
      );
    }
    return r.release;
  }

  logPreAuth(level: 'info' | 'warn', fields: PreAuthLogFields, msg: string): void {
    const source = typeof fields.source === 'string' ? fields.source : sourceOf(fields.client.slice(0, fields.client.lastIndexOf(':')));
    const ok = this.preAuthLogLimit.allow(`${fields.event}|${fields.reason}|${source}`);
    if (!ok) return;
    if (ok.dropped) this.log.warn({ event: 'log.suppressed', lines: ok.dropped }, `${ok.dropped} log lines about unauthenticated connections were left out in the last 10 s (rate limit)`);
    this.log[level]({ ...fields, source, ...(ok.suppressed ? { suppressed: ok.suppressed } : {}) }, ok.suppressed ? `${msg} (${ok.suppressed} more like it not logged)` : msg);
  }

  /** Stops listening, ends live sessions with `reason`, flushes logs. */
  async stop(reason = 'gateway shutting down'): Promise<void> {
    const closing = [...this.listeners.values()].map((l) => l.close());
    if (this.admin) closing.push(this.admin.close());
    this.approvals.close(reason);
    this.listeners.clear();
    this.sessions.terminateWhere(() => true, reason);
    await Promise.all(closing);
    this.stopRetention?.();
    await this.store?.close().catch(() => {});
    await this.revocations?.close().catch(() => {});
    this.log.flush?.();
  }
}
