// What a verified token becomes. Protocol modules see only this, never the token.

/** The name of Sluice's own issuer in rules, roles and revocations. */
export const SLUICE_ISSUER_NAME = 'sluice';

/**
 * An identity as people read it: `sub` for Sluice's own issuer, `sub (name)` for another one,
 * so that a same-named subject from an external issuer is never mistaken for Sluice's.
 */
export function principal(id: { sub: string; issuerName?: string }): string {
  return id.issuerName === undefined || id.issuerName === SLUICE_ISSUER_NAME ? id.sub : `${id.sub} (${id.issuerName})`;
}

export interface Identity {
  /** The token's subject. */
  sub: string;
  /** Groups from the issuer's groups claim (string or array), normalised to an array. */
  groups: string[];
  /** The issuer that signed the token (its `iss`). */
  issuer: string;
  /**
   * The configured short name of that issuer (`sluice` for Sluice's own). Rules, roles, approvals
   * and revocations use it together with `sub`: an identity is (issuer, sub). Absent (identities
   * built by hand in tools and tests): the identity matches no issuer-qualified rule and has no role.
   */
  issuerName?: string;
  /** The token id (`jti`), if the token has one; revocations can name it. */
  jti?: string;
  /** Expiry, seconds since the epoch. */
  exp?: number;
  /** Every claim of the token, for audit (CI claims such as repository, workflow, run id). */
  claims: Record<string, unknown>;
}

/**
 * Why a client could not be let in. `code` is stable (for tests and audit),
 * `message` is what the user reads; each protocol encodes `code` in its own
 * wire format (a SQLSTATE for Postgres). The message never contains the token.
 */
export type AuthErrorCode =
  | 'token_missing'
  | 'token_malformed'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_issued_in_future'
  | 'token_lifetime_too_long'
  | 'token_bad_audience'
  | 'token_bad_signature'
  | 'token_alg_not_allowed'
  | 'token_claim_invalid'
  | 'token_revoked'
  | 'unknown_issuer'
  | 'issuer_unreachable'
  | 'unknown_target'
  | 'target_not_allowed'
  | 'insecure_transport'
  | 'recording_unavailable';

export class AuthError extends Error {
  readonly code: AuthErrorCode;
  constructor(code: AuthErrorCode, message: string) {
    super(message);
    this.name = 'AuthError';
    this.code = code;
  }
}
