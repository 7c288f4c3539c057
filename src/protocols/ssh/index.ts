// The SSH protocol module: an ssh2 Server that takes a token as the password,
// picks the target from the user name and relays to the target's sshd.

import ssh2 from 'ssh2';
import type { AnyListenerConfig, Core, ProtocolModule, RunningListener } from '../../core/protocol.js';
import type { SshListenerConfig } from '../../core/config-types.js';
import { handleConnection } from './connection.js';
import { loadListenerHostKey } from './host-key.js';

const { Server } = ssh2;

export const ssh: ProtocolModule = {
  protocol: 'ssh',
  async listen(core: Core, anyCfg: AnyListenerConfig): Promise<RunningListener> {
    const cfg = anyCfg as SshListenerConfig;
    const hk = await loadListenerHostKey(core.config().state_dir, cfg.host_key);
    core.log.info(
      { event: 'ssh.host_key', path: hk.path, type: hk.type, fingerprint: hk.fingerprint, generated: hk.generated },
      `ssh host key ${hk.type} ${hk.fingerprint}${hk.generated ? ' (generated)' : ''}`,
    );
    const server = new Server({ hostKeys: [hk.key], ident: 'Sluice' }, (conn, info) => {
      try {
        handleConnection(core, conn, info);
      } catch (err) {
        core.log.error({ event: 'connection.error', protocol: 'ssh', err: (err as Error).message }, 'ssh connection setup failed');
        conn.end();
      }
    });
    server.on('error', (err: Error) => core.log.warn({ event: 'ssh.server_error', err: err.message }, 'ssh listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.port, cfg.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as { address: string; port: number };
    return {
      protocol: 'ssh',
      host: addr.address,
      port: addr.port,
      reload() {
        // The host key is read at start; changing it needs a restart (clients pin it).
      },
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
};
