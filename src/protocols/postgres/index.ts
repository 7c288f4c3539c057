// The Postgres protocol module: a listener that speaks the v3 wire protocol to
// clients and relays to Postgres targets.

import './config.js';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Core, ProtocolModule, RunningListener } from '../kit/module.js';
import type { ListenerConfig } from '../../config/types.js';
import { CancelKeys } from './cancel-keys.js';
import { handleConnection, type ListenerState } from './connection.js';
import { renderPostgres } from './replay.js';
import { listenOn } from '../../gateway/listen.js';

function secureContext(cfg: ListenerConfig): tls.SecureContext | undefined {
  if (!cfg.tls) return undefined;
  return tls.createSecureContext({ cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key), minVersion: 'TLSv1.2' });
}

export const postgres: ProtocolModule = {
  protocol: 'postgres',
  render: renderPostgres,
  async listen(core: Core, cfg: ListenerConfig): Promise<RunningListener> {
    const state: ListenerState = { cfg, secureContext: secureContext(cfg), cancelKeys: new CancelKeys(), catalogs: new Map() };
    const server = net.createServer({ noDelay: true }, (sock) => {
      sock.on('error', () => {}); // errors are handled per phase; never crash the gateway
      void handleConnection(core, state, sock);
    });
    server.maxConnections = 100_000;
    const addr = await listenOn(server, cfg.port, cfg.host);
    return {
      protocol: 'postgres',
      host: addr.address,
      port: addr.port,
      reload(next: ListenerConfig) {
        // New certificate and flags apply to new connections; live sessions keep theirs.
        state.secureContext = secureContext(next);
        state.cfg = next;
      },
      close: () =>
        new Promise<void>((resolve) => {
          for (const c of state.catalogs.values()) c.cache.close();
          server.close(() => resolve());
        }),
    };
  },
};
