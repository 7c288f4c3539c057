// The config schema of SSH targets (`targets.<name>` with `protocol: ssh`).
import { filePath, registerListenerSchema, allowRules, def, duration, int, object, oneOf, opt, list, registerTargetSchema, req, secretRef, str } from '../../config/load.js';
import { checkFingerprint, parseKnownHostsLine } from './known-hosts.js';

/** `{ fingerprint: "SHA256:..." }` or `{ known_hosts: "<one known_hosts line>" }`. */
const sshHostKey = object(
  {
    fingerprint: opt(str(checkFingerprint)),
    known_hosts: opt(
      str((s) => {
        const k = parseKnownHostsLine(s);
        return 'error' in k ? k.error : undefined;
      }),
    ),
  },
  (v, fail) => {
    if (!!v.fingerprint === !!v.known_hosts) fail(null, 'set exactly one of fingerprint or known_hosts');
  },
);

export const sshTarget = object(
  {
    protocol: req(oneOf(['ssh'])), // required
    host: req(str()), // required
    port: def(int(1, 65535), 22), // default 22
    user: req(str()), // required: the account Sluice logs in as
    password: opt(secretRef), // password and/or private_key
    private_key: opt(secretRef), // PEM or OpenSSH private key (unencrypted)
    host_key: opt(sshHostKey), // absent: connections are refused with what to configure (closed default)
    env_allow: def(list(str()), ['LANG', 'LC_*']), // env requests passed on (globs)
    allow: allowRules,
    connect_timeout: def(duration('ms', 1), '10s'), // default 10 s
  },
  (v, fail) => {
    if (!v.password && !v.private_key) fail(null, 'an ssh target needs private_key or password: the credential Sluice logs in with');
  },
);


registerTargetSchema('ssh', () => sshTarget);
registerListenerSchema(
  'ssh',
  object({
    host: def(str(), '127.0.0.1'), // default 127.0.0.1
    port: def(int(0, 65535), 2222), // default 2222; 0 picks a free port
    host_key: opt(filePath()), // absent: state_dir/keys/ssh_host_ed25519_key, generated on first start
  }),
);
