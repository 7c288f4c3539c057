// Sluice as an SSH client of the target: the stored key and/or password, the
// host key verified against the config, and errors that say where to look
// (never the credential).

import ssh2 from 'ssh2';
import type { ConnectConfig } from 'ssh2';
import type { SshTargetConfig } from '../../config/types.js';
import { hostKeyCheck } from './host-key.js';

const { Client } = ssh2;
export type SshClient = InstanceType<typeof Client>;

export class UpstreamError extends Error {
  constructor(
    message: string,
    /** For the operator's log only (may name internals, never secrets). */
    readonly detail?: string,
    /** True for a host key problem: logged at error level. */
    readonly hostKey = false,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamCredentials {
  password?: string;
  privateKey?: string;
}

export interface UpstreamOptions {
  /** The relay agent for agent forwarding (forwarding.ts); it never signs Sluice's own login. */
  agent?: ConnectConfig['agent'];
}

/** A network error code in words that name no internals. */
function netCategory(code: string | undefined): string {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to the host';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return 'network error';
  }
}

/** Connects and logs in; resolves with a ready client. */
export function connectUpstream(target: SshTargetConfig, creds: UpstreamCredentials, opts: UpstreamOptions = {}): Promise<SshClient> {
  const hk = hostKeyCheck(target);
  return new Promise((resolve, reject) => {
    const c = new Client();
    let hostKeyProblem: string | undefined;
    let settled = false;
    const fail = (e: UpstreamError) => {
      if (settled) return;
      settled = true;
      c.removeAllListeners('ready');
      c.on('error', () => {});
      c.end();
      reject(e);
    };
    // Explicit methods in order: the key first, then the password. Never "agent":
    // Sluice must not sign with a forwarded client agent to log itself in.
    const auth: NonNullable<ConnectConfig['authHandler']> = [];
    if (creds.privateKey) auth.push({ type: 'publickey', username: target.user, key: creds.privateKey } as never);
    if (creds.password) {
      auth.push({ type: 'password', username: target.user, password: creds.password } as never);
      // Many sshd setups take passwords only through PAM's keyboard-interactive: answer its prompts with it.
      const password = creds.password;
      auth.push({
        type: 'keyboard-interactive',
        username: target.user,
        prompt: (_name: string, _instructions: string, _lang: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => password)),
      } as never);
    }
    if (creds.privateKey) {
      const k = ssh2.utils.parseKey(creds.privateKey);
      if (k instanceof Error) {
        fail(new UpstreamError(`Sluice cannot use its stored private key for target "${target.name}" (targets.${target.name}.private_key); the gateway log says why`, `private key: ${k.message}`));
        return;
      }
    }
    c.on('ready', () => {
      if (settled) return c.end();
      c.setNoDelay(true);
      settled = true;
      resolve(c);
    });
    c.on('error', (err: Error & { level?: string }) => {
      // The client is told the target's name, the kind of failure and what to do; the
      // host, port and user name stay in the gateway log (detail).
      const where = `${target.user}@${target.host}:${target.port}`;
      if (hostKeyProblem) {
        fail(new UpstreamError(`refused to connect to target "${target.name}": ${hostKeyProblem}`, where, true));
      } else if (err.level === 'client-authentication') {
        fail(
          new UpstreamError(
            `target "${target.name}" rejected Sluice's stored credential; check targets.${target.name}.${creds.privateKey ? 'private_key' : 'password'}, targets.${target.name}.user and the server's authorized_keys (the gateway log has the details)`,
            `${where}: ${err.message}`,
          ),
        );
      } else if (err.level === 'client-timeout') {
        fail(new UpstreamError(`target "${target.name}" did not complete the SSH handshake within ${target.connect_timeout} ms (targets.${target.name}.connect_timeout); the gateway log has the details`, `${where}: ${err.message}`));
      } else {
        const code = (err as NodeJS.ErrnoException).code;
        fail(new UpstreamError(`cannot reach target "${target.name}" (${netCategory(code)}); the gateway log has the details`, `${where}: ${code ?? ''} ${err.message}`.trim()));
      }
    });
    c.on('close', () => fail(new UpstreamError(`target "${target.name}" closed the connection during login; the gateway log has the details`, `${target.user}@${target.host}:${target.port}`)));
    try {
      c.connect({
        host: target.host,
        port: target.port,
        username: target.user,
        readyTimeout: target.connect_timeout,
        keepaliveInterval: 30_000,
        authHandler: auth,
        ...(hk.algorithms && { algorithms: { serverHostKey: hk.algorithms as never } }),
        // Without hostHash, ssh2 passes the raw public key blob.
        hostVerifier: (key: Buffer) => {
          hostKeyProblem = hk.check(key);
          return hostKeyProblem === undefined;
        },
        // An agent only for relaying the client's agent: agentForward stays off here, so
        // forwarding is requested per channel (exec/shell option) when the client asked and policy allows.
        ...(opts.agent && { agent: opts.agent }),
      });
    } catch (err) {
      fail(new UpstreamError(`cannot connect to target "${target.name}"; the gateway log has the details`, (err as Error).message));
    }
  });
}
