// The validated, defaulted and path-resolved shape of sluice.yaml.
// `loadConfig` (config.ts) produces it; everything else only reads it.

/** Where a secret comes from. Secrets are never written inline in the config. */
export type SecretRef = { env: string } | { file: string } | { command: string };

export interface ListenerTls {
  cert: string; // absolute path, PEM
  key: string; // absolute path, PEM
}

export interface ListenerConfig {
  host: string;
  port: number;
  tls?: ListenerTls;
  /** Accept a token over a non-TLS connection from a non-loopback client. Off by default. */
  allow_insecure_auth: boolean;
}

/** `listeners.ssh`: the SSH transport is always encrypted, so no TLS and no insecure-auth flag. */
export interface SshListenerConfig {
  host: string;
  port: number;
  /** Absolute path of the host key (OpenSSH or PEM private key); absent: state_dir/keys/ssh_host_ed25519_key, generated on first start. */
  host_key?: string;
}

export interface IssuerConfig {
  /**
   * Short name of the issuer in rules (`okta/group:dba`), match blocks (`issuers: [okta]`),
   * revocations and logs. Default: the host of the issuer URL. `sluice` is Sluice's own issuer.
   */
  name: string;
  issuer: string;
  audience: string[];
  /** Exactly one of jwks_uri / jwks_file may be set; neither means OIDC discovery from `issuer`. */
  jwks_uri?: string;
  jwks_file?: string; // absolute path
  groups_claim: string;
  /** Asymmetric algorithms only (RS*, PS*, ES*, EdDSA). */
  algorithms: string[];
  /** Longest token lifetime accepted, in seconds: exp - iat, or exp - now without iat. */
  max_ttl: number;
  /** Groups of THIS issuer whose members may use the whole admin API. Default none. */
  admin_groups: string[];
  /** Groups of THIS issuer whose members may approve or deny held statements. Default none. */
  approver_groups: string[];
}

export interface SluiceIssuerConfig {
  enabled: boolean;
  issuer: string;
  audience: string;
  /** Longest TTL `sluice token mint` will sign, and the longest token lifetime accepted, in seconds. */
  max_ttl: number;
}

export interface IdentityConfig {
  issuers: IssuerConfig[];
  sluice_issuer: SluiceIssuerConfig;
  /** Allowed clock skew for exp/nbf/iat, in seconds. */
  clock_skew: number;
}

export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** What every target has, whatever its protocol. */
export interface TargetCommon {
  name: string;
  host: string;
  port: number;
  /** The account Sluice logs in as. */
  user: string;
  password?: SecretRef;
  /**
   * Access rules: "group:<g>", "sub:<s>", "claim:<name>=<value>" or "*" (tokens of any configured
   * issuer), each optionally qualified by an issuer name: "okta/group:dba" (tokens of that issuer only).
   */
  allow: string[];
  /** Milliseconds to wait for the target to accept and authenticate. */
  connect_timeout: number;
}

/**
 * How a Postgres target may make Sluice authenticate (libpq's require_auth):
 * `none` is a server that asks for no password at all.
 */
export type PgAuthMethod = 'scram-sha-256' | 'md5' | 'password' | 'none';
export type ChannelBindingMode = 'prefer' | 'require' | 'disable';

export interface PostgresTargetConfig extends TargetCommon {
  protocol: 'postgres';
  database: string;
  /** Default verify-full, or prefer for a loopback host. */
  tls: { mode: UpstreamTlsMode; ca?: string; servername?: string };
  /** Methods the server may ask for; anything else is refused before a credential is sent. Default [scram-sha-256]. */
  auth: PgAuthMethod[];
  /** SCRAM channel binding (tls-server-end-point) when TLS is on; default prefer. */
  channel_binding: ChannelBindingMode;
}

/** How Sluice recognises an SSH target's host key; absent: connections are refused (closed default). */
export type SshHostKeyConfig = { fingerprint: string } | { known_hosts: string };

export interface SshTargetConfig extends TargetCommon {
  protocol: 'ssh';
  /** Private key (PEM or OpenSSH format) Sluice authenticates with; with `password`, both are tried. */
  private_key?: SecretRef;
  host_key?: SshHostKeyConfig;
  /** Environment variables a client may pass (`env` requests); globs such as "LC_*". */
  env_allow: string[];
}

/** A header, query parameter or Basic credential Sluice adds toward an HTTP target. */
export interface InjectedValue {
  secret: SecretRef;
  /** Written before the secret, e.g. "Bearer ". */
  prefix?: string;
}

export interface HttpTargetConfig extends TargetCommon {
  protocol: 'http';
  /** Upstream base URL (http or https); the routed path is appended to its path. */
  url: string;
  /** Path of `url` without its trailing slash ('' for the root). */
  base_path: string;
  scheme: 'http' | 'https';
  /** https upstreams: verified against `ca` (default: system CAs) and `servername` (default: the URL's host). */
  tls: { ca?: string; servername?: string; insecure_skip_verify: boolean };
  /** Milliseconds the upstream has to send response headers, and the longest pause within a body. */
  timeout: number;
  inject: {
    headers: Record<string, InjectedValue>;
    query: Record<string, InjectedValue>;
    basic?: { user: string; password: SecretRef };
    client_cert?: { cert: string; key: SecretRef };
  };
}

/** `listeners.http`. */
export interface HttpListenerConfig extends ListenerConfig {
  /** Host routing: `<target>.<domain>`; absent: path routing only (`/<target>/…`). */
  domain?: string;
  /** Another header that may carry the caller's token (besides Authorization Bearer or Basic). */
  token_header?: string;
  /** Milliseconds a held request waits for approval before it is answered 403 with the approval id. */
  approval_wait: number;
  /** Milliseconds an idle keep-alive connection is kept. */
  idle_timeout: number;
  /** Largest request head in bytes. */
  max_header_bytes: number;
  /** Largest request body read whole when a policy rule looks into JSON bodies. */
  max_policy_body: number;
}

/** A target, discriminated by `protocol`. */
export type TargetConfig = PostgresTargetConfig | SshTargetConfig | HttpTargetConfig;
export type TargetProtocol = TargetConfig['protocol'];

export interface LimitsConfig {
  /** Largest frontend message accepted, in bytes. */
  max_message_bytes: number;
  /** Milliseconds a client has to finish startup and authentication. */
  auth_timeout: number;
  /** Milliseconds a client has to send its first message (startup packet, SSH key exchange, HTTP headers). */
  startup_timeout: number;
  /** Connections that have not authenticated yet, across all listeners. */
  max_unauthenticated: number;
  /** Of those, from one source (an IPv4 address or an IPv6 /64). */
  max_unauthenticated_per_source: number;
}

export interface LogConfig {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Absolute path; absent means stdout. */
  file?: string;
}

export interface SluiceConfig {
  /** Absolute path to the config file it was loaded from (or '' if built in memory). */
  source: string;
  state_dir: string; // absolute
  listeners: { postgres?: ListenerConfig; admin?: ListenerConfig; ssh?: SshListenerConfig; http?: HttpListenerConfig };
  admin: AdminConfig;
  approvals: ApprovalsConfig;
  identity: IdentityConfig;
  targets: Record<string, TargetConfig>;
  limits: LimitsConfig;
  log: LogConfig;
  /** Statement policies, in order. Empty: no statement policy (every statement is relayed). */
  policies: PolicyConfig[];
  policy: PolicySettings;
  /** Masking rule sets, in order; every set whose match fits a session applies. */
  masking: MaskingConfig[];
  recording: RecordingConfig;
}

// ---------------------------------------------------------------------------
// Statement policy (src/policy). Absent `policies` means no statement policy.

export type PolicyAction = 'allow' | 'review' | 'deny';

/** Conditions of a rule; every condition given must hold (an empty rule matches every statement). */
export interface RuleCondition {
  kind?: string[];
  /** Table patterns (globs), matched against tables read or written. */
  tables?: string[];
  /** Function patterns (globs). */
  functions?: string[];
  where?: 'absent' | 'present';
  copy?: ('stdin' | 'stdout' | 'file' | 'program')[];
  explain_analyze?: boolean;
  set_role?: boolean;
  dynamic?: boolean;
  changes_state?: boolean;
  // Shell commands (SSH exec and shell lines, src/policy/shell-facts.ts). A rule with any of these
  // matches only commands; a rule with tables/functions/where/copy/explain_analyze/set_role only SQL.
  /** Program globs: the program's basename, or its path as written when the glob holds '/'. */
  commands?: string[];
  /** Argument globs (`*` matches any characters): some argument matches one. */
  args?: string[];
  /** Path globs (`*` within a segment, `**` across): some path the command writes matches one. */
  writes?: string[];
  /** A shell or interpreter runs code produced by another command (`curl … | sh`). */
  pipe_to_shell?: boolean;
  // HTTP requests (src/policy/http/). A rule with any of these matches only http statements. Deny and
  // review rules read them loosely, allow rules strictly (src/policy/http/match.ts).
  /** Upper-case methods. */
  methods?: string[];
  /** Globs on the normalised, decoded path: `*` within a segment, `**` across segments. */
  paths?: string[];
  /** Parameter name → value globs: the parameter is present with a value matching one. */
  query?: Record<string, string[]>;
  /** Header name (lower-case) → value globs. */
  headers?: Record<string, string[]>;
  /** JSON path (`$.amount`) → value globs on the value's text (strings raw, others as JSON). */
  body?: Record<string, string[]>;
}

export interface PolicyRule {
  action: PolicyAction;
  /** "<policy>#<n>" unless named. */
  name: string;
  when: RuleCondition;
  /** What the client is told (deny) or what approvers see (review). */
  message?: string;
}

export interface PolicyMatch {
  targets?: string[];
  /** Issuer names (identity.issuers[].name, or `sluice`); absent: any issuer. */
  issuers?: string[];
  groups?: string[];
  subs?: string[];
  protocols?: string[];
}

export interface PolicyConfig {
  name: string;
  match: PolicyMatch;
  /** No state change of any kind: denies every statement that changes state, allows the rest, and opens the upstream session read-only. */
  read_only: boolean;
  rules: PolicyRule[];
  /** SSH session options; absent fields abstain (see SshOptions for how policies combine). */
  ssh?: SshPolicyConfig;
}

/** `ssh:` in a policy: what an SSH session may do besides exec commands. */
export interface SshPolicyConfig {
  shell?: 'allow' | 'deny';
  sftp?: 'read_write' | 'read_only' | 'deny';
  forwarding?: { local?: boolean; remote?: boolean; agent?: boolean; x11?: boolean };
}

export interface PolicySettings {
  /** When no rule matches a statement (also when no policy matches the session). */
  default: 'allow' | 'deny';
  /** SQL that does not parse. */
  on_parse_error: 'allow' | 'deny';
}

// ---------------------------------------------------------------------------
// In-stream masking (src/policy/masking). Absent `masking` means no masking.

export type MaskStrategy = 'redact' | 'partial' | 'hash' | 'null';

export interface MaskColumnRule {
  /** Column glob, optionally qualified: "email", "*.ssn", "customers.card", "public.customers.*". */
  column: string;
  strategy: MaskStrategy;
}

export interface MaskFieldRule {
  /** JSON path into HTTP bodies: "$.customers[*].email", "$..card", "$.items[0]['full name']". */
  path: string;
  strategy: MaskStrategy;
}

export interface MaskDetectorRule {
  name: string;
  strategy: MaskStrategy;
}

export interface MaskCustomRule {
  name: string;
  /** RE2 syntax. */
  pattern: string;
  strategy: MaskStrategy;
}

export interface MaskingConfig {
  name: string;
  match: PolicyMatch;
  columns: MaskColumnRule[];
  /** JSON paths in HTTP bodies (a bare-name `columns` rule also matches a JSON member of that name). */
  fields: MaskFieldRule[];
  detectors: MaskDetectorRule[];
  custom: MaskCustomRule[];
  /** Binary COPY of results this rule set could mask is refused unless allowed. */
  allow_binary_copy: boolean;
}

// ---------------------------------------------------------------------------
// Session recording (src/recording).

export interface RecordingConfig {
  enabled: boolean;
  /** Master key that wraps per-session data keys: 32 bytes, base64 or hex. Absent: generated into state_dir/keys/recording.key. */
  master_key?: SecretRef;
  /** Id stored with every session's wrapped key, so keys can rotate. */
  key_id: string;
  /** Older master keys, by id, still needed to read older sessions. */
  old_keys: Record<string, SecretRef>;
  /** Sessions older than this (ms) are pruned in the background; 0 keeps everything. */
  retention: number;
  /** Size budget in bytes; the oldest closed sessions are pruned beyond it. 0: no budget. */
  max_size: number;
  /** LMDB map size in bytes (the store's hard ceiling). */
  map_size: number;
  /** When the store cannot write: refuse new sessions and close live ones, or go on unrecorded (logged loudly). */
  on_failure: 'deny_new' | 'continue_unrecorded';
  /** drop: the store drops its file from the page cache every 64 MiB written; keep: leave it to the kernel. */
  page_cache: 'drop' | 'keep';
}

// ---------------------------------------------------------------------------
// Admin API and just-in-time approvals (src/core/admin-*.ts, src/core/approvals.ts).

export interface AdminConfig {
  /**
   * Identities from Sluice's own issuer in these groups may use the whole admin API (sessions,
   * kill, revocations). External issuers grant it only through identity.issuers[].admin_groups.
   */
  groups: string[];
  /** Serve /metrics without a token. */
  public_metrics: boolean;
}

export interface WebhookConfig {
  url: string;
  /** Key for the HMAC-SHA256 signature header; absent: unsigned. */
  secret?: SecretRef;
  format: 'json' | 'slack';
  /** Milliseconds per attempt. */
  timeout: number;
  retries: number;
}

export interface ApprovalsConfig {
  /**
   * Groups of Sluice's own issuer whose members may approve or deny held statements. External
   * issuers grant it only through identity.issuers[].approver_groups.
   */
  approvers: string[];
  /** Distinct approvers a request needs. */
  min_approvals: number;
  /** Milliseconds a request waits before it fails. */
  timeout: number;
  /** Milliseconds a `fingerprint` approval lasts. */
  fingerprint_window: number;
  webhooks: WebhookConfig[];
}
