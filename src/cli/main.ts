// The `sluice` command line.

// The protocol modules register their target config schemas when loaded.
import '../protocols/index.js';
import { parseArgs } from 'node:util';
import { ConfigError, configWarnings, loadConfig } from '../config/load.js';
import { mintToken } from '../identity/tokens.js';
import { parseDuration } from '../config/units.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_HELP } from './admin.js';

const DEMO_CONFIG = join('.sluice-demo', 'sluice.yaml');

const HELP = `sluice — identity-aware access gateway

Usage:
  sluice serve --config sluice.yaml      run the gateway (SIGHUP reloads the config)
  sluice demo [--port 6432] [--admin-port 6480] [--state-dir DIR]
                                         embedded Postgres + Sluice, no setup needed
  sluice token mint --config sluice.yaml --sub NAME [--groups a,b] [--ttl 15m] [--claim k=v ...]
                                         print a short-lived token signed by Sluice's own key
  sluice config check --config sluice.yaml
                                         validate a config file and exit
  sluice policy check --config sluice.yaml --as sub=ci,groups=ci --target orders "SQL"
                                         show the facts of a statement and the policy decision
  sluice sessions list [--identity SUB --target T --since 2h --until DATE --decision deny]
                                         recorded sessions, newest first
  sluice sessions list --live | sessions kill <session> [--reason TEXT]
                                         live sessions, and ending one (admin API)
  sluice approvals list | approve <id> | deny <id> [--reason TEXT] [--scope once|fingerprint]
                                         statements waiting for approval (admin API)
  sluice revoke --sub SUB [--until 2h] [--reason TEXT] | --jti ID | --list | --lift --sub SUB
                                         the kill switch: cut an identity's sessions, refuse its logins
  sluice replay <session> [--rows 20] [--raw] [--follow] [--speed N] [--no-wait]
                                         a recorded session as a timeline (or hexdump frames)
  sluice export <session> --format jsonl|asciicast|har [--out FILE]
                                         machine-readable frames, a terminal cast, an HTTP archive
  sluice recordings verify <session>     check a recording's hash chain and signature
  sluice audit [--identity SUB --target T --decision deny --since 1d]
                                         the audit trail: sessions and policy decisions
  sluice --help | --version

Every command that reads a config takes --config (default: $SLUICE_CONFIG, ./sluice.yaml, or
the demo's .sluice-demo/sluice.yaml when it is the only one there).
Run "sluice <command> --help" for the options of one command.
`;

const COMMAND_HELP: Record<string, string> = {
  serve: `Usage: sluice serve --config sluice.yaml

Starts every listener in the config. Logs are JSON lines (pino) on stdout or log.file.
Signals: SIGHUP reloads the config without dropping sessions; SIGTERM/SIGINT stop the gateway.
`,
  demo: `Usage: sluice demo [--port 6432] [--admin-port 6480] [--state-dir .sluice-demo] [--in-memory]

Starts an embedded Postgres (PGlite) seeded with fake customer data, puts Sluice in front
of it with a self-signed certificate and a minted token, and prints the psql line to paste.
  --port        the gateway's Postgres port (0: any free port)
  --admin-port  the admin API's port, used by \`sluice approvals\` and \`sluice revoke\` (0: any free port)
  --state-dir   where the config, keys, recordings, log and the embedded database live
  --in-memory   keep the embedded database in memory (nothing written to pgdata)
Both ports are checked before the embedded database starts.
`,
  token: `Usage: sluice token mint --config sluice.yaml --sub NAME [--groups a,b] [--ttl 15m] [--claim key=value ...]

Prints a token signed with Sluice's own Ed25519 key (kept in state_dir/keys).
Use it as the password: PGPASSWORD=$(sluice token mint ...) psql "host=... dbname=<target>"
--ttl accepts 30s, 15m, 1h (default 15m; at most identity.sluice_issuer.max_ttl).
`,
  policy: `Usage: sluice policy check --config sluice.yaml --as sub=NAME[,groups=a+b][,issuer=NAME][,claim=value...] --target NAME "SQL"

Analyses what a target's client would send exactly as the gateway does and prints the facts
found and the decision with the policy and rule that made it: SQL for a Postgres target (the
real Postgres parser: statement kinds, tables, functions, nested statements), a command line
for an SSH target, a request line for an HTTP target ("POST /v1/refunds?dry=1", the path
within the target). Reads it from stdin when no argument is given.
Exit status: 0 allow, 1 deny, 3 review, 2 usage or config error.
`,
  sessions: `Usage: sluice sessions list [--config sluice.yaml] [--identity SUB] [--target T] [--since 2h|DATE] [--until DATE]
                           [--decision deny|review|allow] [--status live|closed|interrupted] [--limit 50] [--json]
       sluice sessions list --live [--identity SUB] [--target T] [--json]
       sluice sessions kill <session> [--reason TEXT]

Without --live: recorded sessions, newest first, read from state_dir/recordings (also while
the gateway runs). With --live, and for kill: the running gateway's admin API (listeners.admin;
see \`sluice approvals --help\` for --admin, --token and --ca).
`,
  approvals: ADMIN_HELP.approvals,
  revoke: ADMIN_HELP.revoke,
  replay: `Usage: sluice replay <session> [--config sluice.yaml] [--rows 20] [--raw] [--follow] [--speed N] [--no-wait]

Renders a recorded session from the recording alone: each statement with its time, duration,
decision and rule, its result as a table (first --rows rows and the row count), errors and
notices. --raw prints every frame as a hexdump; --follow tails a live session.
An SSH session is played back in the terminal at the recorded pace (--speed 4 plays four
times as fast, --no-wait all at once): shells as the user saw them, each exec as its
command, output and exit status, sftp and forwarding as lines of what happened.
An HTTP session is shown request by request: status, duration, bytes, decision, outcome,
approvals and masking, then the request body and the first --rows lines of the response
(decoded from gzip, deflate or br).
`,
  export: `Usage: sluice export <session> --format jsonl|asciicast|har [--config sluice.yaml] [--out FILE]

jsonl: one JSON object per line: the session's index entry, then every frame
({seq, t_us, dir: client|server|event, data_b64 | event}).
asciicast: an SSH session as asciicast v2, for \`asciinema play\`.
har: an HTTP session as HAR 1.2 (Chrome devtools: Network, Import HAR): each request with
its headers, bodies as recorded (masked, decoded), timings, and Sluice's decision in _sluice.
`,
  recordings: `Usage: sluice recordings verify <session> [--config sluice.yaml]

Decrypts every batch, recomputes the hash chain and checks the signed head.
Prints "intact" (exit 0) or the first bad frame (exit 1).
`,
  audit: `Usage: sluice audit [--config sluice.yaml] [--identity SUB] [--target T] [--decision deny|review] [--since 1d] [--until DATE] [--limit 100] [--json]

The queryable audit trail: session opens and closes, denied and held statements.
Every event (allowed statements too) is also a JSON log line.
`,
  config: `Usage: sluice config check --config sluice.yaml

Validates the file and prints every problem with its line, or "ok" (exit 0) after any
warnings (on stderr): rules that are valid but probably not meant, such as a "sub:" rule that
admits a subject from every configured issuer.
`,
};

function configPath(v: string | undefined): string {
  if (v) return v;
  if (process.env.SLUICE_CONFIG) return process.env.SLUICE_CONFIG;
  // In a second terminal next to `sluice demo`, commands find the demo's config.
  if (!existsSync('sluice.yaml') && existsSync(DEMO_CONFIG)) return DEMO_CONFIG;
  return 'sluice.yaml';
}

export async function loadOrExplain(path: string) {
  try {
    return await loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      return null;
    }
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`sluice: config file ${path} not found (pass --config FILE or set SLUICE_CONFIG)\n`);
      return null;
    }
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === '-v') {
    const { createRequire } = await import('node:module');
    process.stdout.write(createRequire(import.meta.url)('../../package.json').version + '\n');
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    const h = COMMAND_HELP[cmd];
    if (h) {
      process.stdout.write(h);
      return 0;
    }
  }
  if (cmd === 'sessions' && (rest[0] === 'kill' || (rest[0] === 'list' && rest.includes('--live')))) {
    const { liveSessionsCommand } = await import('./admin.js');
    return liveSessionsCommand(rest, loadOrExplain, configPath);
  }
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'demo': {
      const { runDemo } = await import('../demo/demo.js');
      return runDemo(rest);
    }
    case 'token':
      return token(rest);
    case 'config':
      return configCheck(rest);
    case 'approvals': {
      const { approvalsCommand } = await import('./admin.js');
      return approvalsCommand(rest, loadOrExplain, configPath);
    }
    case 'revoke': {
      const { revokeCommand } = await import('./admin.js');
      return revokeCommand(rest, loadOrExplain, configPath);
    }
    case 'sessions':
    case 'replay':
    case 'export':
    case 'recordings':
    case 'audit': {
      const m = await import('./recordings.js');
      const fn = { sessions: m.sessionsCommand, replay: m.replayCommand, export: m.exportCommand, recordings: m.recordingsCommand, audit: m.auditCommand }[cmd];
      return fn(rest, loadOrExplain, configPath);
    }
    case 'policy': {
      const { policyCheck } = await import('./policy.js');
      return policyCheck(rest, loadOrExplain, configPath, COMMAND_HELP.policy!);
    }
    default:
      process.stderr.write(`sluice: unknown command "${cmd}"\n\n${HELP}`);
      return 2;
  }
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const cfg = await loadOrExplain(configPath(values.config));
  if (!cfg) return 2;
  const { startGateway } = await import('../gateway/server.js');
  await startGateway(cfg);
  return new Promise<number>(() => {}); // runs until a signal stops the process
}

async function token(args: string[]): Promise<number> {
  const [sub, ...opts] = args;
  if (sub !== 'mint') {
    process.stderr.write(COMMAND_HELP.token);
    return 2;
  }
  const { values } = parseArgs({
    args: opts,
    options: {
      config: { type: 'string', short: 'c' },
      sub: { type: 'string' },
      groups: { type: 'string', default: '' },
      ttl: { type: 'string', default: '15m' },
      claim: { type: 'string', multiple: true, default: [] },
    },
  });
  if (!values.sub) {
    process.stderr.write('sluice token mint: --sub is required\n\n' + COMMAND_HELP.token);
    return 2;
  }
  const cfg = await loadOrExplain(configPath(values.config));
  if (!cfg) return 2;
  const claims: Record<string, unknown> = {};
  for (const c of values.claim) {
    const eq = c.indexOf('=');
    if (eq < 1) {
      process.stderr.write(`sluice token mint: --claim expects key=value, got "${c}"\n`);
      return 2;
    }
    claims[c.slice(0, eq)] = c.slice(eq + 1);
  }
  let ttlSeconds: number;
  try {
    ttlSeconds = Math.round(parseDuration(values.ttl) / 1000);
  } catch (err) {
    process.stderr.write(`sluice token mint: --ttl: ${(err as Error).message}\n`);
    return 2;
  }
  const groups = values.groups.split(',').map((g) => g.trim()).filter(Boolean);
  const jwt = await mintToken(cfg.identity, cfg.state_dir, { sub: values.sub, groups, ttlSeconds, claims });
  process.stdout.write(jwt + '\n');
  return 0;
}

async function configCheck(args: string[]): Promise<number> {
  const [sub, ...opts] = args;
  if (sub !== 'check') {
    process.stderr.write(COMMAND_HELP.config);
    return 2;
  }
  const { values } = parseArgs({ args: opts, options: { config: { type: 'string', short: 'c' } } });
  const cfg = await loadOrExplain(configPath(values.config));
  if (!cfg) return 2;
  for (const w of configWarnings(cfg)) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
  process.stdout.write(`ok: ${cfg.source} (${Object.keys(cfg.targets).length} targets)\n`);
  for (const t of Object.values(cfg.targets)) {
    if (t.protocol !== 'postgres') continue;
    const verified = t.tls.mode === 'verify-ca' || t.tls.mode === 'verify-full';
    process.stdout.write(`target ${t.name}: tls ${t.tls.mode}${verified ? '' : ' (not verified)'}, auth ${t.auth.join(', ')}, channel_binding ${t.channel_binding}\n`);
  }
  return 0;
}
