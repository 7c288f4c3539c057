// The config schema of Postgres targets (`targets.<name>` with `protocol: postgres`, the default).
import { listener, registerListenerSchema, allowRules, def, duration, filePath, int, isLoopbackHost, object, oneOf, opt, list, registerTargetSchema, req, secretRef, str } from '../../config/load.js';

const PG_AUTH_METHODS = ['scram-sha-256', 'md5', 'password', 'none'] as const;
const pgAuthMethod = oneOf(PG_AUTH_METHODS, (s) => {
  const n = s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const hint = n.startsWith('scram') ? ' (did you mean "scram-sha-256"?)' : n === 'cleartext' || n === 'plain' || n === 'trust' ? ` (${n === 'trust' ? '"none"' : '"password"'} is that method)` : '';
  return `expected one of ${PG_AUTH_METHODS.join(', ')}, got ${JSON.stringify(s)}${hint}`;
});

export const postgresTarget = (name: string) =>
  object(
    {
      protocol: req(oneOf(['postgres'])), // required
      host: req(str()), // required
      port: def(int(1, 65535), 5432), // default 5432
      database: def(str(), name), // default: the target's name
      user: req(str()), // required
      password: opt(secretRef), // optional; file paths resolved
      tls: def(
        object({
          // default: verify-full, or prefer when host is a loopback address (filled in below)
          mode: opt(oneOf(['disable', 'prefer', 'require', 'verify-ca', 'verify-full'])),
          ca: opt(filePath()), // absent: system CAs
          servername: opt(str()),
        }),
      ),
      // What the server may ask for (libpq's require_auth); anything else is refused
      // before the stored credential is used. Default: SCRAM only.
      auth: def(list(pgAuthMethod, true), ['scram-sha-256']),
      channel_binding: def(oneOf(['prefer', 'require', 'disable']), 'prefer'), // default prefer
      allow: allowRules,
      connect_timeout: def(duration('ms', 1), '10s'), // default 10 s
    },
    (v, fail) => {
      v.tls.mode ??= isLoopbackHost(v.host) ? 'prefer' : 'verify-full';
      const seen = new Set<string>();
      for (const m of v.auth) {
        if (seen.has(m)) fail('auth', `${m} is listed twice`);
        seen.add(m);
      }
      if (v.channel_binding === 'require') {
        if (v.tls.mode === 'disable') fail('channel_binding', 'require needs TLS to the target, but tls.mode is disable');
        if (v.auth.some((m) => m !== 'scram-sha-256')) fail('channel_binding', 'require binds SCRAM to the TLS channel: auth must then be [scram-sha-256] only');
      }
    },
  );


registerTargetSchema('postgres', postgresTarget);
registerListenerSchema('postgres', listener(6432));
