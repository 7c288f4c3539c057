// The SSH protocol module: an ssh2 Server that takes a token as the password,
// picks the target from the user name and relays to the target's sshd.

import './config.js';
import { renderSsh } from './replay.js';
import net from 'node:net';
import ssh2 from 'ssh2';
import type { AnyListenerConfig, Core, ProtocolModule, RunningListener } from '../kit/module.js';
import type { SshListenerConfig } from '../../config/types.js';
import { handleConnection } from './connection.js';
import { loadListenerHostKey } from './host-key.js';
import { SshPreAuth } from './preauth.js';
import { listenOn } from '../../gateway/listen.js';

const { Server } = ssh2;
const IDENT = 'Sluice';

export const ssh: ProtocolModule = {
  protocol: 'ssh',
  render: (frames) => renderSsh(frames),
  async listen(core: Core, anyCfg: AnyListenerConfig): Promise<RunningListener> {
    const cfg = anyCfg as SshListenerConfig;
    const hk = await loadListenerHostKey(core.config().state_dir, cfg.host_key);
    core.log.info(
      { event: 'ssh.host_key', path: hk.path, type: hk.type, fingerprint: hk.fingerprint, generated: hk.generated },
      `ssh host key ${hk.type} ${hk.fingerprint}${hk.generated ? ' (generated)' : ''}`,
    );
    const server = new Server({ hostKeys: [hk.key], ident: IDENT }, (conn, info) => {
      try {
        handleConnection(core, conn, info);
      } catch (err) {
        core.log.error({ event: 'connection.error', protocol: 'ssh', err: (err as Error).message }, 'ssh connection setup failed');
        conn.end();
      }
    });
    server.on('error', (err: Error) => core.log.warn({ event: 'ssh.server_error', err: err.message }, 'ssh listener error'));
    // Sluice accepts the TCP connection itself: ssh2 reports one only after the
    // client's identification, and a client that never sends it must still be
    // counted and timed (preauth.ts).
    const tcp = net.createServer({ noDelay: true }, (sock) => {
      sock.on('error', () => {}); // errors are handled by ssh2 and the session; never crash the gateway
      if (!SshPreAuth.accept(core, sock, IDENT)) return;
      server.injectSocket(sock);
    });
    tcp.on('error', (err: Error) => core.log.warn({ event: 'ssh.server_error', err: err.message }, 'ssh listener error'));
    const addr = await listenOn(tcp, cfg.port, cfg.host);
    return {
      protocol: 'ssh',
      host: addr.address,
      port: addr.port,
      reload() {
        // The host key is read at start; changing it needs a restart (clients pin it).
      },
      close: () => new Promise<void>((resolve) => tcp.close(() => resolve())),
    };
  },
};
