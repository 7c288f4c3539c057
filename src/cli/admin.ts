// CLI commands that talk to a running gateway through its admin API:
// `sluice approvals list|approve|deny`, `sluice sessions list --live|kill`,
// `sluice revoke`.

import { parseArgs } from 'node:util';
import type { SluiceConfig } from '../config/types.js';
import { AdminClientError, adminRequest, adminTarget, type AdminTarget } from './admin-client.js';
import { printTable } from './table.js';
import { principal } from '../identity/types.js';

type Load = (path: string) => Promise<SluiceConfig | null>;

const CONNECT_OPTIONS = {
  config: { type: 'string', short: 'c' },
  admin: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export const ADMIN_HELP = {
  approvals: `Usage: sluice approvals list [--all] [--json]
       sluice approvals approve <id> [--reason TEXT] [--scope once|fingerprint]
       sluice approvals deny <id> [--reason TEXT]

Statements held by a \`review\` rule wait for approvers (members of approvals.approvers).
  --scope once         (default) this statement only
  --scope fingerprint  this query shape (libpg-query fingerprint) for this identity on this
                       target, for approvals.fingerprint_window (default 30 minutes)
Approvers are members of approvals.approvers groups (Sluice's own tokens) or of an external
issuer's identity.issuers[].approver_groups. Self-approval is refused (the same sub from any
issuer counts as the same person); approvals.min_approvals distinct approvers may be needed.

Connection (every admin command): --admin URL (or $SLUICE_ADMIN_URL; default: listeners.admin
from --config), --token JWT (or $SLUICE_TOKEN; default: a 5-minute operator token minted with
the gateway's key from state_dir), --ca FILE (or $SLUICE_ADMIN_CA).
`,
  revoke: `Usage: sluice revoke (--sub SUB [--issuer NAME|any] | --jti ID) [--until 2h|DATE] [--reason TEXT]
       sluice revoke --list
       sluice revoke --lift (--sub SUB [--issuer NAME|any] | --jti ID)

The kill switch: closes every live session of that identity (or token) on every protocol
within a second, and refuses its logins until the revocation expires (no --until: until
lifted). Revocations survive restarts. Takes the same connection flags as \`sluice approvals\`.

An identity is an issuer and a sub. --issuer names the issuer (sluice for Sluice's own tokens,
or an identity.issuers[].name); "any" revokes that sub from every issuer. Without --issuer,
the revocation applies to the only configured issuer, and is refused as ambiguous when there
are several. A --jti revocation covers that token id from any issuer.
`,
};

async function connect(values: { config?: string; admin?: string; token?: string; ca?: string }, load: Load, configPath: (v?: string) => string): Promise<AdminTarget | null> {
  // The config is optional when --admin and --token are given.
  let cfg: SluiceConfig | null = null;
  if (values.config || !(values.admin ?? process.env.SLUICE_ADMIN_URL) || !(values.token ?? process.env.SLUICE_TOKEN)) {
    cfg = await load(configPath(values.config));
    if (!cfg) return null;
  }
  return adminTarget(values, cfg);
}

/** Runs one request; prints the API's error message and returns null on failure. */
async function call(t: AdminTarget, method: string, path: string, body?: unknown): Promise<any | null> {
  const r = await adminRequest(t, method, path, body);
  if (r.status >= 200 && r.status < 300) return r.body;
  const msg = typeof r.body === 'object' && r.body?.message ? r.body.message : `HTTP ${r.status}`;
  process.stderr.write(`sluice: ${msg}\n`);
  if (r.status === 401) process.stderr.write(`(token from ${t.tokenSource})\n`);
  return null;
}

async function guarded(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AdminClientError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

const short = (iso?: string) => (iso ? iso.replace('T', ' ').slice(0, 19) : '');
const oneLine = (s: string, n = 60) => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > n ? t.slice(0, n - 1) + '…' : t;
};

export async function approvalsCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...CONNECT_OPTIONS, all: { type: 'boolean', default: false }, reason: { type: 'string' }, scope: { type: 'string', default: 'once' } },
  });
  if (sub !== 'list' && sub !== 'approve' && sub !== 'deny') {
    process.stderr.write(ADMIN_HELP.approvals);
    return 2;
  }
  const id = positionals[0];
  if (sub !== 'list' && !id) {
    process.stderr.write(`Usage: sluice approvals ${sub} <id>${sub === 'approve' ? ' [--reason TEXT] [--scope once|fingerprint]' : ' [--reason TEXT]'}\n(run \`sluice approvals list\` to see the ids)\n`);
    return 2;
  }
  if (values.scope !== 'once' && values.scope !== 'fingerprint') {
    process.stderr.write(`sluice: --scope must be once or fingerprint, got "${values.scope}"\n`);
    return 2;
  }
  return guarded(async () => {
    const t = await connect(values, load, configPath);
    if (!t) return 2;
    if (sub === 'list') {
      const body = await call(t, 'GET', `/api/approvals${values.all ? '?all=1' : ''}`);
      if (!body) return 1;
      const list = body.approvals as any[];
      if (values.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return 0;
      }
      if (list.length === 0) {
        process.stdout.write(values.all ? 'no approval requests\n' : 'no approval requests are waiting\n');
        return 0;
      }
      const rows = [['ID', 'STATUS', 'IDENTITY', 'TARGET', 'RULE', 'ASKED', 'EXPIRES', 'VOTES', 'STATEMENT']];
      for (const a of list) {
        const approvals = (a.votes as any[]).filter((v) => v.action === 'approve').length;
        rows.push([a.id, a.status, principal({ sub: a.sub, issuerName: a.issuer }), a.target, a.rule, short(a.asked_at), a.status === 'pending' ? short(a.expires_at) : '', `${approvals}/${a.min_approvals}`, oneLine(a.statement)]);
      }
      printTable(rows);
      return 0;
    }
    const body = await call(t, 'POST', `/api/approvals/${encodeURIComponent(id!)}/${sub}`, { reason: values.reason, scope: sub === 'approve' ? values.scope : undefined });
    if (!body) return 1;
    if (values.json) {
      process.stdout.write(JSON.stringify(body, null, 2) + '\n');
      return 0;
    }
    if (sub === 'deny') process.stdout.write(`denied ${id}: ${body.sub}'s statement on ${body.target} will not run${values.reason ? ` (reason: ${values.reason})` : ''}\n`);
    else if (body.status === 'approved') process.stdout.write(`approved ${id}: ${body.sub}'s statement on ${body.target} runs now${values.scope === 'fingerprint' ? ' (this query shape stays approved for the fingerprint window)' : ''}\n`);
    else {
      const n = (body.votes as any[]).filter((v) => v.action === 'approve').length;
      process.stdout.write(`approval recorded for ${id}: ${n} of ${body.min_approvals} approvers so far; it keeps waiting\n`);
    }
    return 0;
  });
}

/** `sessions list --live` and `sessions kill`; the rest of `sessions` reads the recordings. */
export async function liveSessionsCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...CONNECT_OPTIONS, live: { type: 'boolean', default: false }, reason: { type: 'string' }, identity: { type: 'string' }, target: { type: 'string' }, limit: { type: 'string', default: '100' } },
  });
  return guarded(async () => {
    const t = await connect(values, load, configPath);
    if (!t) return 2;
    if (sub === 'kill') {
      const id = positionals[0];
      if (!id) {
        process.stderr.write('Usage: sluice sessions kill <session> [--reason TEXT]\n');
        return 2;
      }
      const body = await call(t, 'DELETE', `/api/sessions/${encodeURIComponent(id)}`, { reason: values.reason });
      if (!body) return 1;
      process.stdout.write(`killed session ${id}${values.reason ? ` (reason: ${values.reason})` : ''}\n`);
      return 0;
    }
    const q = new URLSearchParams({ live: '1', limit: values.limit });
    if (values.identity) q.set('sub', values.identity);
    if (values.target) q.set('target', values.target);
    const body = await call(t, 'GET', `/api/sessions?${q}`);
    if (!body) return 1;
    const list = body.sessions as any[];
    if (values.json) {
      process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      return 0;
    }
    if (list.length === 0) {
      process.stdout.write('no live sessions\n');
      return 0;
    }
    const rows = [['SESSION', 'IDENTITY', 'TARGET', 'PROTO', 'CLIENT', 'STARTED', 'STMTS', 'DENIED', 'WAITING']];
    for (const s of list) rows.push([s.id, s.sub, s.target, s.protocol, s.client, short(s.started_at), String(s.statements), String(s.denied), (s.waiting_approvals as string[]).join(',')]);
    printTable(rows);
    return 0;
  });
}

export async function revokeCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...CONNECT_OPTIONS, sub: { type: 'string' }, issuer: { type: 'string' }, jti: { type: 'string' }, until: { type: 'string' }, reason: { type: 'string' }, list: { type: 'boolean', default: false }, lift: { type: 'boolean', default: false } },
  });
  if (!values.list && !values.sub === !values.jti) {
    process.stderr.write(ADMIN_HELP.revoke);
    return 2;
  }
  if (values.issuer !== undefined && !values.sub) {
    process.stderr.write('sluice revoke: --issuer goes with --sub (a --jti revocation covers that token id from any issuer)\n');
    return 2;
  }
  return guarded(async () => {
    const t = await connect(values, load, configPath);
    if (!t) return 2;
    if (values.list) {
      const body = await call(t, 'GET', '/api/revocations');
      if (!body) return 1;
      const list = body.revocations as any[];
      if (values.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      else if (list.length === 0) process.stdout.write('nothing is revoked\n');
      else {
        const rows = [['KIND', 'VALUE', 'ISSUER', 'UNTIL', 'BY', 'AT', 'REASON']];
        for (const r of list) rows.push([r.kind, r.value, r.kind === 'sub' ? r.issuer_name : '', r.until ? short(r.until) : 'lifted by hand', r.by, short(r.at), r.reason ?? '']);
        printTable(rows);
      }
      return 0;
    }
    const kind = values.sub ? 'sub' : 'jti';
    const value = (values.sub ?? values.jti)!;
    const of = (issuer: string | undefined) => (kind !== 'sub' ? '' : issuer === 'any' ? ' of every issuer' : ` of issuer ${issuer}`);
    if (values.lift) {
      const q = values.issuer !== undefined ? `?issuer=${encodeURIComponent(values.issuer)}` : '';
      const body = await call(t, 'DELETE', `/api/revocations/${kind}/${encodeURIComponent(value)}${q}`);
      if (!body) return 1;
      process.stdout.write(`${kind} ${value}${of(body.unrevoked?.issuer)} is no longer revoked\n`);
      return 0;
    }
    const body = await call(t, 'POST', '/api/revocations', { [kind]: value, issuer: values.issuer, until: values.until, reason: values.reason });
    if (!body) return 1;
    if (values.json) process.stdout.write(JSON.stringify(body, null, 2) + '\n');
    else process.stdout.write(`revoked ${kind} ${value}${of(body.revoked?.issuer)}${body.until ? ` until ${body.until}` : ''}: ${body.sessions_closed} live session(s) closed; new logins are refused\n`);
    return 0;
  });
}
