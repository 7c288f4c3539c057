import t from 'tap';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import '../src/protocols/index.js'; // the protocol modules register their target schemas
import { ConfigError, configFromObject, configWarnings, loadConfig, parseConfig } from '../src/config/load.js';
import { resolveSecret } from '../src/config/secrets.js';
import { parseDuration, parseSize } from '../src/config/units.js';

const SRC = '/etc/sluice/sluice.yaml';
const execFileP = promisify(execFile);

const MINIMAL_TARGET = `
targets:
  orders:
    protocol: postgres
    host: db.internal
    user: app
    allow: ["*"]
`;

/** Parse expecting failure; returns the ConfigError. */
function problems(text: string): ConfigError {
  try {
    parseConfig(text, 'sluice.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

t.test('full example: values converted, paths resolved', async (t) => {
  const cfg = parseConfig(
    `state_dir: /var/lib/sluice
listeners:
  postgres: { host: 0.0.0.0, port: 7432, tls: { cert: ./gw.crt, key: /pki/gw.key }, allow_insecure_auth: true }
identity:
  clock_skew: 1m
  sluice_issuer: { enabled: false, issuer: me, audience: you, max_ttl: 2h }
  issuers:
    - issuer: https://token.actions.githubusercontent.com
      audience: sluice
      jwks_uri: https://token.actions.githubusercontent.com/.well-known/jwks
      groups_claim: roles
      algorithms: [RS256, ES256]
    - issuer: corp
      audience: [a, b]
      jwks_file: keys/jwks.json
targets:
  orders:
    protocol: postgres
    host: 127.0.0.1
    port: 5433
    database: orders_db
    user: app
    password: { file: ./secrets/orders }
    tls: { mode: verify-full, ca: ./db-ca.pem, servername: db.internal }
    allow: ["group:ci", "sub:nightly-etl", "claim:repository=org/repo", "*"]
    connect_timeout: 500ms
limits: { max_message_bytes: 1MB, auth_timeout: 5s, max_unauthenticated: 10 }
log: { level: debug, file: logs/sluice.log }
`,
    SRC,
  );
  t.same(cfg, {
    source: SRC,
    state_dir: '/var/lib/sluice',
    listeners: {
      postgres: {
        host: '0.0.0.0',
        port: 7432,
        tls: { cert: '/etc/sluice/gw.crt', key: '/pki/gw.key' },
        allow_insecure_auth: true,
      },
    },
    identity: {
      clock_skew: 60,
      sluice_issuer: { enabled: false, issuer: 'me', audience: 'you', max_ttl: 7200 },
      issuers: [
        {
          name: 'token.actions.githubusercontent.com',
          issuer: 'https://token.actions.githubusercontent.com',
          audience: ['sluice'],
          jwks_uri: 'https://token.actions.githubusercontent.com/.well-known/jwks',
          groups_claim: 'roles',
          algorithms: ['RS256', 'ES256'],
          max_ttl: 86400,
          admin_groups: [],
          approver_groups: [],
        },
        {
          name: 'corp',
          issuer: 'corp',
          audience: ['a', 'b'],
          jwks_file: '/etc/sluice/keys/jwks.json',
          groups_claim: 'groups',
          algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
          max_ttl: 86400,
          admin_groups: [],
          approver_groups: [],
        },
      ],
    },
    targets: {
      orders: {
        name: 'orders',
        protocol: 'postgres',
        host: '127.0.0.1',
        port: 5433,
        database: 'orders_db',
        user: 'app',
        password: { file: '/etc/sluice/secrets/orders' },
        tls: { mode: 'verify-full', ca: '/etc/sluice/db-ca.pem', servername: 'db.internal' },
        auth: ['scram-sha-256'],
        channel_binding: 'prefer',
        allow: ['group:ci', 'sub:nightly-etl', 'claim:repository=org/repo', '*'],
        connect_timeout: 500,
      },
    },
    limits: { max_message_bytes: 1024 * 1024, auth_timeout: 5000, startup_timeout: 5000, max_unauthenticated: 10, max_unauthenticated_per_source: 32 },
    log: { level: 'debug', file: '/etc/sluice/logs/sluice.log' },
    policies: [],
    policy: { default: 'deny', on_parse_error: 'deny' },
    masking: [],
    recording: {
      enabled: true,
      key_id: 'k1',
      old_keys: {},
      retention: 30 * 86400_000,
      max_size: 0,
      map_size: 8 * 1024 ** 3,
      on_failure: 'deny_new',
      page_cache: 'drop',
    },
    admin: { groups: ['sluice-admins'], public_metrics: false },
    approvals: { approvers: ['sluice-approvers'], min_approvals: 1, timeout: 600_000, fingerprint_window: 1_800_000, webhooks: [] },
  });
});

t.test('policies: rules, defaults and errors with lines', async (t) => {
  const cfg = parseConfig(
    `policies:
  - name: ci
    match: { groups: [ci] }
    rules:
      - deny: { kind: [drop], message: no }
      - allow: {}
  - name: ro
    read_only: true
`,
    SRC,
  );
  t.same(cfg.policies[0], {
    name: 'ci',
    match: { groups: ['ci'] },
    read_only: false,
    rules: [
      { action: 'deny', name: 'ci#1', when: { kind: ['drop'] }, message: 'no' },
      { action: 'allow', name: 'ci#2', when: {} },
    ],
  });
  t.same(cfg.policies[1], { name: 'ro', match: {}, read_only: true, rules: [] });
  t.same(cfg.policy, { default: 'deny', on_parse_error: 'deny' });
  const err = t.throws(() =>
    parseConfig(
      `policies:
  - name: bad
    rules:
      - dney: { kind: [drop] }
      - deny: { kind: [drp] }
      - allow: { where: sometimes }
  - name: empty
`,
      SRC,
    ),
  ) as Error;
  t.match(err.message, /line 4: policies\[0\]\.rules\[0\]: unknown rule action "dney" \(did you mean "deny"\?\)/);
  t.match(err.message, /line 5: .*unknown statement kind "drp" \(did you mean "drop"\?\)/);
  t.match(err.message, /line 6: .*where: expected one of absent, present/);
  t.match(err.message, /policies\[1\].*a policy needs rules, read_only: true or an ssh block/);
});

t.test('defaults', async (t) => {
  const cfg = parseConfig(`listeners:\n  postgres:\n${MINIMAL_TARGET}`, SRC);
  t.equal(cfg.state_dir, '/etc/sluice/.sluice');
  t.same(cfg.listeners.postgres, { host: '127.0.0.1', port: 6432, allow_insecure_auth: false });
  t.same(cfg.identity, {
    clock_skew: 30,
    sluice_issuer: { enabled: true, issuer: 'sluice', audience: 'sluice', max_ttl: 86400 },
    issuers: [],
  });
  t.same(cfg.targets.orders, {
    name: 'orders',
    protocol: 'postgres',
    host: 'db.internal',
    port: 5432,
    database: 'orders',
    user: 'app',
    tls: { mode: 'verify-full' }, // not a loopback host
    auth: ['scram-sha-256'],
    channel_binding: 'prefer',
    allow: ['*'],
    connect_timeout: 10000,
  });
  t.same(cfg.limits, { max_message_bytes: 64 * 1024 * 1024, auth_timeout: 15000, startup_timeout: 5000, max_unauthenticated: 256, max_unauthenticated_per_source: 32 });
  t.same(cfg.log, { level: 'info' });

  const anchored = parseConfig(MINIMAL_TARGET.replace('["*"]', '&all ["group:a"]') + '  other: { protocol: postgres, host: h, user: u, allow: *all }\n', SRC);
  t.same(anchored.targets.other!.allow, ['group:a'], 'YAML aliases work');

  const empty = parseConfig('', SRC);
  t.same(empty.listeners, {}, 'no listeners is fine');
  t.same(empty.targets, {});
  t.equal(parseConfig('listeners: {}\n', 'rel/sluice.yaml').source, join(process.cwd(), 'rel/sluice.yaml'));
});

t.test('postgres targets: tls default by host, auth and channel_binding checked with lines, warnings', async (t) => {
  const target = (host: string, extra = '') => `targets:\n  t1:\n    protocol: postgres\n    host: ${host}\n    user: app\n    allow: ["*"]\n${extra}`;
  for (const host of ['127.0.0.1', '127.3.4.5', 'localhost', '::1', '"[::1]"']) {
    t.equal(parseConfig(target(host), SRC).targets.t1!.tls.mode, 'prefer', `${host}: loopback, prefer`);
  }
  for (const host of ['db.internal', '10.0.0.5', '128.0.0.1', 'localhost.example.com']) {
    t.equal(parseConfig(target(host), SRC).targets.t1!.tls.mode, 'verify-full', `${host}: verify-full`);
  }
  const t1 = parseConfig(target('db', '    auth: [scram-sha-256, md5, password, none]\n    tls: { mode: require }\n'), SRC).targets.t1!;
  t.same(t1.protocol === 'postgres' && t1.auth, ['scram-sha-256', 'md5', 'password', 'none']);
  t.equal(t1.protocol === 'postgres' && t1.tls.mode, 'require', 'an explicit mode is kept');

  const bad = problems(target('db', '    auth: [scram, md5, md5, cleartext]\n'));
  t.match(bad.message, /line 7: targets\.t1\.auth\[0\]: expected one of scram-sha-256, md5, password, none, got "scram" \(did you mean "scram-sha-256"\?\)/);
  t.match(bad.message, /line 7: targets\.t1\.auth\[3\]: .*got "cleartext" \("password" is that method\)/);
  t.match(problems(target('db', '    auth: []\n')).message, /line 7: targets\.t1\.auth: must not be empty/);
  t.match(problems(target('db', '    auth: [md5, md5]\n')).message, /line 7: targets\.t1\.auth: md5 is listed twice/);
  t.match(
    problems(target('db', '    channel_binding: require\n    tls: { mode: disable }\n')).message,
    /line 7: targets\.t1\.channel_binding: require needs TLS to the target, but tls\.mode is disable/,
  );
  t.match(problems(target('db', '    channel_binding: require\n    auth: [scram-sha-256, md5]\n')).message, /targets\.t1\.channel_binding: require binds SCRAM to the TLS channel/);
  t.match(problems(target('db', '    channel_binding: always\n')).message, /line 7: targets\.t1\.channel_binding: expected one of prefer, require, disable/);

  // Warnings: unverified TLS and password methods over it, for non-loopback hosts only.
  const w = (host: string, extra: string) => configWarnings(parseConfig(target(host, extra), SRC)).map((x) => `${x.path}: ${x.message}`);
  t.same(w('db', ''), [], 'the defaults warn about nothing');
  t.same(w('127.0.0.1', '    tls: { mode: disable }\n    auth: [password]\n'), [], 'loopback: nothing leaves the machine');
  t.same(w('db', '    tls: { mode: verify-full }\n    auth: [md5]\n'), [], 'md5 to a verified server');
  const warned = w('db', '    tls: { mode: require }\n    auth: [scram-sha-256, password]\n');
  t.equal(warned.length, 2);
  t.match(warned[0], /^targets\.t1\.tls\.mode: tls\.mode is require: the target's certificate is not verified, so anyone on the network path can read the session or impersonate the target; set tls\.mode: verify-full/);
  t.match(warned[1], /^targets\.t1\.auth: auth allows password over a connection whose server is not verified: an impostor that asks for it gets the password itself/);
  t.match(w('db', '    tls: { mode: prefer }\n')[0], /may be unencrypted/);
  t.match(w('db', '    tls: { mode: disable }\n')[0], /is not encrypted/);
});

t.test("sluice config check shows each target's TLS and auth, and the warnings", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    `targets:
  safe: { protocol: postgres, host: db.internal, user: app, allow: ["*"], tls: { mode: verify-full, ca: ./ca.pem } }
  risky: { protocol: postgres, host: db.internal, user: app, allow: ["*"], tls: { mode: require }, auth: [scram-sha-256, md5] }
  local: { protocol: postgres, host: 127.0.0.1, user: app, allow: ["*"] }
`,
  );
  const { stdout, stderr } = await execFileP(process.execPath, [join(import.meta.dirname, '../bin/sluice.js'), 'config', 'check', '--config', file]);
  t.equal(
    stdout,
    `ok: ${file} (3 targets)
target safe: tls verify-full, auth scram-sha-256, channel_binding prefer
target risky: tls require (not verified), auth scram-sha-256, md5, channel_binding prefer
target local: tls prefer (not verified), auth scram-sha-256, channel_binding prefer
`,
  );
  t.equal(
    stderr,
    `warning: targets.risky.tls.mode: tls.mode is require: the target's certificate is not verified, so anyone on the network path can read the session or impersonate the target; set tls.mode: verify-full (with tls.ca)
warning: targets.risky.auth: auth allows md5 over a connection whose server is not verified: an impostor that asks for it gets the password's md5 hash; use auth: [scram-sha-256], or tls.mode: verify-full
`,
  );
});

t.test('YAML syntax errors report their line', async (t) => {
  const e = problems('listeners:\n  postgres: { port: 1\ntargets: {}\n');
  t.equal(e.issues.length, 1);
  t.equal(e.issues[0]!.line, 3);
  t.match(e.message, /^sluice\.yaml: 1 problem:\n  line 3: YAML syntax error: /);
  t.match(problems('a: 1\na: 2\n').message, /line 2: YAML syntax error: Map keys must be unique/);
});

t.test('unknown key with a suggestion', async (t) => {
  const e = problems('listeners:\n  postgres:\n    prot: 6432\n');
  t.same(e.issues, [{ path: 'listeners.postgres', line: 3, column: 5, message: 'unknown key "prot" (did you mean "port"?)' }]);
  t.equal(e.message, 'sluice.yaml: 1 problem:\n  line 3: listeners.postgres: unknown key "prot" (did you mean "port"?)');
  t.match(problems('stat_dir: x\n').message, 'line 1: unknown key "stat_dir" (did you mean "state_dir"?)');
  t.match(problems('zzz: x\n').message, /unknown key "zzz"$/, 'no suggestion when nothing is close');
});

t.test('wrong types name key and line', async (t) => {
  const e = problems(MINIMAL_TARGET.replace('user: app', 'user: app\n    port: abc'));
  t.equal(e.message, 'sluice.yaml: 1 problem:\n  line 7: targets.orders.port: expected an integer from 1 to 65535, got "abc"');
  t.match(problems('limits: { auth_timeout: soon }').message, /line 1: limits\.auth_timeout: invalid duration "soon": expected a number of seconds/);
  t.match(problems('limits: { max_message_bytes: lots }').message, /limits\.max_message_bytes: invalid size "lots"/);
  t.match(problems('limits:\n  max_unauthenticated_per_source: 0\n').message, /line 2: limits\.max_unauthenticated_per_source: expected an integer from 1 to 1000000/);
  t.match(problems('limits:\n  startup_timeout: whenever\n').message, /line 2: limits\.startup_timeout: invalid duration "whenever"/);
  t.match(problems('listeners: { postgres: { allow_insecure_auth: yes } }').message, /expected true or false, got "yes"/);
  t.match(problems('targets: [a]').message, /line 1: targets: expected a map, got a list/);
  t.match(problems('log: { level: loud }').message, /log\.level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"/);
  t.match(problems(MINIMAL_TARGET.replace('protocol: postgres', 'protocol: mysql')).message, /targets\.orders\.protocol: expected one of postgres, ssh, http, got "mysql"/);
});

t.test('missing required keys name the parent line', async (t) => {
  const e = problems('\n\ntargets:\n  orders:\n    protocol: postgres\n    allow: ["*"]\n');
  t.same(
    e.issues.map((i) => [i.line, i.path, i.message]),
    [
      [4, 'targets.orders', 'missing required key "host"'],
      [4, 'targets.orders', 'missing required key "user"'],
    ],
  );
  t.match(problems('listeners:\n  postgres:\n    tls: { cert: ./c }\n').message, /line 3: listeners\.postgres\.tls: missing required key "key"/);
});

t.test('bad allow entries', async (t) => {
  const e = problems(MINIMAL_TARGET.replace('["*"]', '["group:ci", "grp:ci", "claim:repo", "sub:"]'));
  t.same(e.issues.map((i) => i.path), ['targets.orders.allow[1]', 'targets.orders.allow[2]', 'targets.orders.allow[3]']);
  t.match(e.issues[0]!.message, /"grp:ci" is not a valid rule; expected "group:<name>", "sub:<subject>", "claim:<name>=<value>" or "\*", optionally after an issuer name and "\/"/);
  t.equal(e.issues[0]!.line, 7);
  t.match(problems(MINIMAL_TARGET.replace('["*"]', '[]')).message, /targets\.orders\.allow: must not be empty/);
});

const ISSUER = (extra: string) => `identity:\n  issuers:\n    - issuer: https://idp.example\n      audience: sluice\n${extra}`;

t.test('symmetric algorithms are rejected', async (t) => {
  const e = problems(ISSUER('      algorithms: [RS256, HS256, none]\n'));
  t.same(e.issues.map((i) => [i.line, i.path]), [
    [5, 'identity.issuers[0].algorithms[1]'],
    [5, 'identity.issuers[0].algorithms[2]'],
  ]);
  t.match(e.issues[0]!.message, /"HS256" is not accepted: only asymmetric algorithms .* symmetric key/);
});

t.test('plain-string password is an error and is not echoed', async (t) => {
  const e = problems(MINIMAL_TARGET + '    password: hunter2\n');
  t.equal(e.issues[0]!.path, 'targets.orders.password');
  t.equal(e.issues[0]!.line, 8);
  t.match(e.message, /plain-text secrets are not allowed .*use \{ env: VAR_NAME \}, \{ file: \.\/path \} or \{ command: "\.\.\." \}/);
  t.notMatch(e.message, 'hunter2');
  t.notMatch(problems(MINIMAL_TARGET + '    password: 918273\n').message, '918273');
  t.match(problems(MINIMAL_TARGET + '    password: { env: A, file: b }\n').message, /expected exactly one of env, file or command/);
  t.match(problems(MINIMAL_TARGET + '    password: { envv: A }\n').message, /unknown key "envv" \(did you mean "env"\?\)/);
  const ok = parseConfig(MINIMAL_TARGET + '    password: { command: "vault read x" }\n', SRC);
  t.same(ok.targets.orders!.password, { command: 'vault read x' });
});

t.test('issuer key checks', async (t) => {
  const both = problems(ISSUER('      jwks_uri: https://idp.example/jwks\n      jwks_file: ./jwks.json\n'));
  t.equal(both.message, 'sluice.yaml: 1 problem:\n  line 6: identity.issuers[0].jwks_file: set at most one of jwks_uri and jwks_file');
  t.match(problems(ISSUER('      jwks_uri: ftp://x\n')).message, /jwks_uri: must be an https URL, got "ftp:\/\/x"/);
  t.match(
    problems('identity:\n  issuers:\n    - { issuer: corp, audience: x }\n').message,
    /issuers\[0\]\.issuer: must be an https URL for OIDC discovery/,
  );
  t.match(problems('identity:\n  issuers:\n    - { issuer: https://x }\n').message, /line 3: identity\.issuers\[0\]: missing required key "audience"/);
});

t.test('all problems are reported, in line order', async (t) => {
  const e = problems(`listeners:
  postgres: { prot: 1 }
targets:
  orders:
    protocol: postgres
    host: h
    user: u
    port: 0
    allow: [bogus]
  "bad name!": {}
limits: { max_unauthenticated: -1 }
`);
  t.equal(e.issues.length, 5);
  t.same(e.issues.map((i) => i.line), [2, 8, 9, 10, 11]);
  t.match(e.message, /^sluice\.yaml: 5 problems:\n  line 2: /);
});

t.test('configFromObject', async (t) => {
  const cfg = configFromObject({ targets: { db: { protocol: 'postgres', host: 'h', user: 'u', allow: ['*'], port: 1 } } }, '');
  t.equal(cfg.source, '');
  t.equal(cfg.state_dir, join(process.cwd(), '.sluice'));
  t.equal(cfg.targets.db!.port, 1);
  t.throws(() => configFromObject({ targets: { db: { protocol: 'postgres' } } }, '/x/s.yaml'), {
    message: '/x/s.yaml: 3 problems:\n  targets.db: missing required key "host"\n  targets.db: missing required key "user"\n  targets.db: missing required key "allow"',
  });
});

t.test('loadConfig resolves relative to the file', async (t) => {
  const dir = t.testdir({ 'sluice.yaml': 'state_dir: state\nlog: { file: out.log }\n' });
  const cfg = await loadConfig(join(dir, 'sluice.yaml'));
  t.equal(cfg.state_dir, join(dir, 'state'));
  t.equal(cfg.log.file, join(dir, 'out.log'));
  t.equal(cfg.source, join(dir, 'sluice.yaml'));
});

t.test('units', async (t) => {
  for (const [v, ms] of [
    ['15m', 900_000], ['30s', 30_000], ['10min', 600_000], ['1h', 3_600_000], ['2d', 172_800_000],
    ['500ms', 500], [30, 30_000], ['30', 30_000], ['1h30m', 5_400_000], ['1.5s', 1500], [' 2 hours ', 7_200_000],
  ] as const) t.equal(parseDuration(v), ms, String(v));
  for (const bad of ['', 'abc', '-5s', '5 parsecs', '5s junk', -1]) t.throws(() => parseDuration(bad), /invalid duration .*e\.g\. "500ms"/);
  for (const [v, n] of [
    ['64MB', 64 * 1024 ** 2], ['1GiB', 1024 ** 3], ['512k', 512 * 1024], [100, 100], ['100', 100], ['1.5KB', 1536], ['2 mib', 2 * 1024 ** 2],
  ] as const) t.equal(parseSize(v), n, String(v));
  for (const bad of ['', 'big', '-1', '5XB', 1.5, -3]) t.throws(() => parseSize(bad), /invalid size .*1024-based/);
});

t.test('secrets', async (t) => {
  const dir = t.testdir({ pw: 's3cret-file\n', crlf: 'two\r\n\n', empty: '' });
  const label = 'targets.orders.password';

  process.env.SLUICE_TEST_PW = 's3cret-env';
  t.teardown(() => delete process.env.SLUICE_TEST_PW);
  t.equal(await resolveSecret({ env: 'SLUICE_TEST_PW' }, dir), 's3cret-env');
  await t.rejects(resolveSecret({ env: 'ORDERS_PG_PASSWORD_UNSET' }, dir, { label }), {
    message: 'environment variable ORDERS_PG_PASSWORD_UNSET is not set (targets.orders.password)',
  });

  t.equal(await resolveSecret({ file: 'pw' }, dir), 's3cret-file', 'relative to baseDir, one newline trimmed');
  t.equal(await resolveSecret({ file: join(dir, 'crlf') }, '/'), 'two\r\n');
  await t.rejects(resolveSecret({ file: 'missing' }, dir, { label }), /cannot read secret file .*missing \(targets\.orders\.password\): ENOENT/);
  await t.rejects(resolveSecret({ file: 'empty' }, dir), /secret is empty/);

  t.equal(await resolveSecret({ command: 'cat pw; echo extra' }, dir), 's3cret-file\nextra', 'runs in baseDir');
  // A failing command's output may hold the secret (or the token that fetches it): never shown.
  const failing = resolveSecret({ command: 'echo s3cret-out; echo "denied: s3cret-err" >&2; echo more >&2; exit 3' }, dir, { label });
  await t.rejects(failing, {
    message: "secret command exited with code 3 (targets.orders.password); its output is not shown because it may contain the secret: run the command by hand, as the gateway's user, to see why",
  });
  const err = await failing.catch((e: Error) => e);
  t.notMatch(String(err), 's3cret');
  t.notMatch(String(err), 'denied');
  await t.rejects(resolveSecret({ command: 'kill -TERM $$' }, dir, { label }), /^secret command was killed by signal SIGTERM \(targets\.orders\.password\); its output is not shown/);
  await t.rejects(resolveSecret({ command: 'no-such-command-sluice-test' }, dir, { label }), /^secret command exited with code 127 \(command not found\?\) \(targets/);

  const started = Date.now();
  await t.rejects(resolveSecret({ command: 'echo s3cret; sleep 5' }, dir, { timeoutMs: 200 }), /timed out after 200 ms/);
  t.ok(Date.now() - started < 3000, 'does not wait for the pipeline');
});

t.test('admin listener and approvals: defaults and errors', async (t) => {
  const cfg = parseConfig(
    `listeners:
  admin: { port: 0 }
approvals:
  approvers: [dba-leads]
  min_approvals: 2
  timeout: 30s
  webhooks:
    - url: https://hooks.example/sluice
      secret: { env: HOOK_SECRET }
    - { url: "http://127.0.0.1:9/x", format: slack, retries: 0 }
`,
    SRC,
  );
  t.same(cfg.listeners.admin, { host: '127.0.0.1', port: 0, allow_insecure_auth: false });
  t.same(cfg.approvals, {
    approvers: ['dba-leads'],
    min_approvals: 2,
    timeout: 30_000,
    fingerprint_window: 1_800_000,
    webhooks: [
      { url: 'https://hooks.example/sluice', secret: { env: 'HOOK_SECRET' }, format: 'json', timeout: 5000, retries: 5 },
      { url: 'http://127.0.0.1:9/x', format: 'slack', timeout: 5000, retries: 0 },
    ],
  });
  t.match(problems('approvals: { min_approvals: 0 }').message, /approvals\.min_approvals: expected an integer from 1 to 10/);
  t.match(problems('approvals: { webhooks: [{ url: "ftp://x" }] }').message, /approvals\.webhooks\[0\]\.url: expected an http:\/\/ or https:\/\/ URL/);
  t.match(problems('approvals: { webhooks: [{ url: "https://x", secret: "plain" }] }').message, /plain-text secrets are not allowed/);
  t.match(problems('approvals: { aprovers: [x] }').message, /unknown key "aprovers".*did you mean "approvers"/);
});

t.test('issuers: names, https key URLs, lifetimes and per-issuer roles', async (t) => {
  const cfg = parseConfig(
    `identity:
  issuers:
    - issuer: https://Login.Example.com/realms/a
      audience: sluice
    - name: okta
      issuer: https://corp.okta.example
      audience: sluice
      jwks_uri: https://corp.okta.example/keys
      max_ttl: 1h
      admin_groups: [sluice-admins]
      approver_groups: [dba-leads]
    - { issuer: http://127.0.0.1:8080/oidc, audience: x }
    - { issuer: local, audience: x, jwks_uri: "http://localhost:9/jwks" }
`,
    SRC,
  );
  t.same(cfg.identity.issuers.map((i) => [i.name, i.max_ttl, i.admin_groups, i.approver_groups]), [
    ['login.example.com', 86400, [], []],
    ['okta', 3600, ['sluice-admins'], ['dba-leads']],
    ['127.0.0.1', 86400, [], []],
    ['local', 86400, [], []],
  ], 'name defaults to the host; no roles unless mapped; max_ttl default 24h');

  // Plain http to a host that is not loopback: anyone on the path could swap the keys.
  const http1 = problems(ISSUER('      jwks_uri: http://idp.example/jwks\n'));
  t.equal(http1.issues[0]!.path, 'identity.issuers[0].jwks_uri');
  t.equal(http1.issues[0]!.line, 5);
  t.match(http1.issues[0]!.message, /^"http:\/\/idp\.example\/jwks" is plain http: anyone on the network path could swap the issuer's keys and mint tokens; use https \(http is accepted only for loopback hosts: 127\.0\.0\.1, ::1, localhost\)$/);
  const http2 = problems('identity:\n  issuers:\n    - { issuer: "http://idp.example", audience: x }\n');
  t.match(http2.message, /line 3: identity\.issuers\[0\]\.issuer: OIDC discovery \(no jwks_uri or jwks_file\) fetches the keys from the issuer URL, and "http:\/\/idp\.example" is plain http/);

  // Names: distinct, valid, not reserved.
  const dup = problems('identity:\n  issuers:\n    - { issuer: "https://a.example/x", audience: x }\n    - { issuer: "https://a.example/y", audience: x }\n');
  t.match(dup.message, /identity\.issuers\[1\] and identity\.issuers\[0\] are both named "a\.example" \(a name defaults to the issuer URL's host\): give each a distinct name/);
  t.match(problems('identity:\n  issuers:\n    - { name: sluice, issuer: "https://a.example", audience: x }\n').message, /"sluice" is reserved \(it names Sluice's own issuer\)/);
  t.match(problems('identity:\n  issuers:\n    - { name: "a/b", issuer: "https://a.example", audience: x }\n').message, /"a\/b" is not a valid issuer name: .*no "\/", ":" or "@"/);
  t.match(problems('identity:\n  issuers:\n    - { issuer: "urn:corp:idp", audience: x, jwks_file: j.json }\n').message, /cannot derive a short name from "urn:corp:idp": set name/);
});

t.test('allow rules and match blocks can name an issuer', async (t) => {
  const base = `identity:
  issuers:
    - { name: okta, issuer: "https://okta.example", audience: x }
targets:
  orders:
    protocol: postgres
    host: db.internal
    user: app
`;
  const cfg = parseConfig(
    base +
      `    allow: ["okta/group:dba", "sluice/sub:ci", "group:org/team", "sub:repo:org/app:ref:refs/heads/main", "okta/*", "okta/claim:repository=org/app", "sub:a@b/c"]
policies:
  - { name: p, match: { issuers: [okta, sluice], subs: [x] }, read_only: true }
`,
    SRC,
  );
  t.same(cfg.policies[0]!.match, { issuers: ['okta', 'sluice'], subs: ['x'] });

  const syntax = problems(base + '    allow: ["okta/group:dba", "Okta/group:x", "a/b/group:c", "okta/"]\n');
  t.same(syntax.issues.map((i) => [i.line, i.path]), [[9, 'targets.orders.allow[1]'], [9, 'targets.orders.allow[2]'], [9, 'targets.orders.allow[3]']]);
  // A typo in an issuer name would make a rule match nothing: an error, with its line.
  const e = problems(base + '    allow: ["okta/group:dba", "oktaa/group:dba"]\npolicies:\n  - { name: p, match: { issuers: [nope] }, read_only: true }\n');
  t.same(e.issues.map((i) => [i.line, i.path]), [
    [9, 'targets.orders.allow[1]'],
    [11, 'policies[0].match.issuers[0]'],
  ]);
  t.match(e.issues[0]!.message, /^"oktaa" in "oktaa\/group:dba" is not a configured issuer name; the issuers are "sluice", "okta" \(identity\.issuers\[\]\.name\)$/);
  t.match(e.issues[1]!.message, /^"nope" is not a configured issuer name/);

  // Warnings: a sub rule (or match.subs) without an issuer when several issuers can issue that sub.
  const w = configWarnings(parseConfig(base + '    allow: ["sub:nightly-etl", "sluice/sub:ci", "group:dba"]\npolicies:\n  - { name: p, match: { subs: [x] }, read_only: true }\n  - { name: q, match: { subs: [x], issuers: [okta] }, read_only: true }\n', SRC));
  t.same(w.map((x) => x.path), ['targets.orders.allow[0]', 'policies[0].match.subs']);
  t.match(w[0]!.message, /^"sub:nightly-etl" admits that subject from every configured issuer \(sluice, okta\); write "<issuer>\/sub:nightly-etl" \(e\.g\. "sluice\/sub:nightly-etl"\) to admit it from one issuer only$/);
  t.same(configWarnings(parseConfig(MINIMAL_TARGET.replace('["*"]', '["sub:nightly-etl"]'), SRC)), [], 'one issuer: nothing is ambiguous');
});
