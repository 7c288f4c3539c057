// `sluice policy check`: the gateway's own analysis and decision for one statement.

import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { SluiceConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import { PolicyResolver } from '../policy/engine.js';
import { analyzeSql, initSqlAnalysis, type QueryFacts } from '../policy/sql/facts.js';
import { httpAction } from '../policy/http/cache-key.js';
import { analyzeShell } from '../policy/shell/facts.js';

/** Parses `sub=ci,groups=ci+dba,issuer=okta,repository=org/app` into an identity (issuer default: sluice). */
function parseAs(spec: string): Identity {
  const claims: Record<string, unknown> = {};
  let sub = '';
  let groups: string[] = [];
  let issuerName = 'sluice';
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new Error(`--as expects key=value pairs separated by commas, got "${part}"`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 'sub') sub = v;
    else if (k === 'issuer') issuerName = v;
    else if (k === 'groups' || k === 'group') groups = groups.concat(v.split('+').filter(Boolean));
    else claims[k] = v;
  }
  if (!sub) throw new Error('--as needs sub=<subject>');
  return { sub, groups, issuer: 'sluice policy check', issuerName, claims: { ...claims, sub, groups } };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function policyCheck(
  args: string[],
  load: (path: string) => Promise<SluiceConfig | null>,
  configPath: (v: string | undefined) => string,
  help: string,
): Promise<number> {
  const [sub, ...opts] = args;
  if (sub !== 'check') {
    process.stderr.write(help);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: opts,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, as: { type: 'string' }, target: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  if (!values.as || !values.target) {
    process.stderr.write('sluice policy check: --as and --target are required\n\n' + help);
    return 2;
  }
  const cfg = await load(configPath(values.config));
  if (!cfg) return 2;
  const target = cfg.targets[values.target];
  if (!target) {
    process.stderr.write(`sluice policy check: unknown target "${values.target}" (configured: ${Object.keys(cfg.targets).join(', ') || 'none'})\n`);
    return 2;
  }
  let identity: Identity;
  try {
    identity = parseAs(values.as);
  } catch (err) {
    process.stderr.write(`sluice policy check: ${(err as Error).message}\n`);
    return 2;
  }
  const sql = positionals.length ? positionals.join(' ') : await readStdin();
  const set = new PolicyResolver(cfg.policies, cfg.policy).resolve(identity, target.name, target.protocol);
  // SSH targets take shell command lines, HTTP targets a request line ("POST /v1/refunds?x=1",
  // the path within the target); Postgres targets take SQL.
  let text = sql;
  let analyze: (s: string) => QueryFacts;
  let key: string | undefined;
  if (target.protocol === 'ssh') analyze = analyzeShell;
  else if (target.protocol === 'http') {
    const [method = 'GET', reqTarget = '/'] = sql.trim().split(/\s+/);
    if (set) {
      const a = httpAction(set, { method, target: reqTarget });
      [text, analyze, key] = [a.text, a.analyze, a.cacheKey];
    } else analyze = () => ({ statements: [] });
  } else {
    await initSqlAnalysis();
    analyze = analyzeSql;
  }
  const facts = analyze(text);
  const decision = set ? set.decide(text, analyze, key).decision : { action: 'allow' as const, rule: 'none', message: 'no statement policy is configured (policies)' };
  const out = {
    identity: { sub: identity.sub, groups: identity.groups },
    target: target.name,
    policies: set ? set.names : [],
    read_only_session: set?.readOnly ?? false,
    facts: {
      ...(facts.parse_error !== undefined && { parse_error: facts.parse_error }),
      fingerprint: facts.fingerprint,
      statements: facts.statements,
    },
    decision,
  };
  process.stdout.write(values.json ? JSON.stringify(out, null, 2) + '\n' : stringify(out));
  return decision.action === 'allow' ? 0 : decision.action === 'deny' ? 1 : 3;
}
