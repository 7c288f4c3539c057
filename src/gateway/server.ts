// Process-level wiring for `sluice serve`: start the gateway, reload on SIGHUP,
// stop cleanly on SIGTERM/SIGINT.

import type { SluiceConfig } from '../config/types.js';
import { ConfigError } from '../config/load.js';
import { Gateway } from './gateway.js';
import type { Logger } from '../observability/log.js';
import { protocolModules } from '../protocols/index.js';

export async function startGateway(cfg: SluiceConfig, opts: { log?: Logger; signals?: boolean } = {}): Promise<Gateway> {
  const gw = new Gateway(cfg, protocolModules, opts.log);
  await gw.start();
  if (opts.signals !== false) {
    process.on('SIGHUP', () => {
      gw.reload().catch((err) => {
        const msg = err instanceof ConfigError ? err.message : (err as Error).message;
        gw.log.error({ event: 'config.reload_failed', err: msg }, 'config reload failed; keeping the running config');
      });
    });
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) process.exit(1);
      stopping = true;
      gw.log.info({ event: 'shutdown', signal: sig, live_sessions: gw.sessions.size }, 'shutting down');
      const force = setTimeout(() => process.exit(0), 5000);
      force.unref();
      gw.stop().then(() => setTimeout(() => process.exit(0), 100));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  }
  return gw;
}
