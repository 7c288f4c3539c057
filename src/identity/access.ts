// Who may do what, by issuer.
//
// Target access rules: "group:<g>", "sub:<s>", "claim:<name>=<value>", "*", each optionally
// qualified by an issuer name: "okta/group:dba" matches only tokens of the issuer named okta.
// The issuer prefix can only appear before the first ':' and issuer names hold no '/', ':' or
// '@', so a subject or group that contains those characters never reads as a prefix.
//
// Roles (admin API, approvals) are per issuer: `admin.groups` and `approvals.approvers` are
// groups of Sluice's own issuer; an external issuer grants a role only through its own
// `admin_groups` / `approver_groups`, which are empty unless configured.
import type { SluiceConfig } from '../config/types.js';
import { SLUICE_ISSUER_NAME, type Identity } from './types.js';

export interface ParsedRule {
  /** The issuer name before '/', if the rule is qualified. */
  issuer?: string;
  kind: 'group' | 'sub' | 'claim' | '*' | 'invalid';
  arg: string;
}

/** Splits "[issuer/]kind:arg". Only the text before the first ':' can hold the issuer. */
export function parseRule(rule: string): ParsedRule {
  let issuer: string | undefined;
  let rest = rule;
  const colon = rule.indexOf(':');
  const head = colon < 0 ? rule : rule.slice(0, colon);
  const slash = head.indexOf('/');
  if (slash >= 0) {
    issuer = rule.slice(0, slash);
    rest = rule.slice(slash + 1);
  }
  if (rest === '*') return { issuer, kind: '*', arg: '' };
  const c = rest.indexOf(':');
  const kind = c < 0 ? '' : rest.slice(0, c);
  const arg = rest.slice(c + 1);
  if (kind === 'group' || kind === 'sub' || kind === 'claim') return { issuer, kind, arg };
  return { issuer, kind: 'invalid', arg };
}

/** Reads a claim by name, or by dotted path ("realm_access.roles"). */
function claim(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let v: unknown = claims;
  for (const part of name.split('.')) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

export function matchesRule(rule: string, id: Identity): boolean {
  const r = parseRule(rule);
  if (r.issuer !== undefined && r.issuer !== id.issuerName) return false;
  switch (r.kind) {
    case '*':
      return true;
    case 'group':
      return id.groups.includes(r.arg);
    case 'sub':
      return id.sub === r.arg;
    case 'claim': {
      const eq = r.arg.indexOf('=');
      if (eq < 0) return false;
      const v = claim(id.claims, r.arg.slice(0, eq));
      const want = r.arg.slice(eq + 1);
      return Array.isArray(v) ? v.some((x) => String(x) === want) : v !== undefined && String(v) === want;
    }
    default:
      return false;
  }
}

export function isAllowed(allow: string[], id: Identity): boolean {
  return allow.some((r) => matchesRule(r, id));
}

export type Role = 'admin' | 'approver';

/** The groups that carry each role for tokens of the identity's issuer (none for an unknown issuer). */
export function roleGroups(cfg: Pick<SluiceConfig, 'admin' | 'approvals' | 'identity'>, issuerName: string | undefined): Record<Role, string[]> {
  if (issuerName === SLUICE_ISSUER_NAME && cfg.identity.sluice_issuer.enabled) return { admin: cfg.admin.groups, approver: cfg.approvals.approvers };
  const ext = issuerName === undefined ? undefined : cfg.identity.issuers.find((i) => i.name === issuerName);
  return { admin: ext?.admin_groups ?? [], approver: ext?.approver_groups ?? [] };
}

/** The roles an identity holds: only through its own issuer's groups. */
export function rolesOf(cfg: Pick<SluiceConfig, 'admin' | 'approvals' | 'identity'>, id: Identity): Set<Role> {
  const g = roleGroups(cfg, id.issuerName);
  const out = new Set<Role>();
  if (id.groups.some((x) => g.admin.includes(x))) out.add('admin');
  if (id.groups.some((x) => g.approver.includes(x))) out.add('approver');
  return out;
}

/** Where a role is configured for an issuer, for messages: "admin.groups" or "identity.issuers[okta].admin_groups". */
export function roleSetting(role: Role, issuerName: string | undefined): string {
  if (issuerName === SLUICE_ISSUER_NAME) return role === 'admin' ? 'admin.groups' : 'approvals.approvers';
  return `identity.issuers[${issuerName ?? '?'}].${role}_groups`;
}
