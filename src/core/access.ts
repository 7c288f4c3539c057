// Target access rules: "group:<g>", "sub:<s>", "claim:<name>=<value>", "*".
import type { Identity } from './identity-types.js';

/** Reads a claim by name, or by dotted path ("realm_access.roles"). */
function claim(claims: Record<string, unknown>, name: string): unknown {
  if (name in claims) return claims[name];
  let v: unknown = claims;
  for (const part of name.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

export function matchesRule(rule: string, id: Identity): boolean {
  if (rule === '*') return true;
  const colon = rule.indexOf(':');
  const kind = rule.slice(0, colon);
  const arg = rule.slice(colon + 1);
  switch (kind) {
    case 'group':
      return id.groups.includes(arg);
    case 'sub':
      return id.sub === arg;
    case 'claim': {
      const eq = arg.indexOf('=');
      if (eq < 0) return false;
      const v = claim(id.claims, arg.slice(0, eq));
      const want = arg.slice(eq + 1);
      return Array.isArray(v) ? v.some((x) => String(x) === want) : v !== undefined && String(v) === want;
    }
    default:
      return false;
  }
}

export function isAllowed(allow: string[], id: Identity): boolean {
  return allow.some((r) => matchesRule(r, id));
}
