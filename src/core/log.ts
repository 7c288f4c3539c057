import { pino, type Logger } from 'pino';
import type { LogConfig } from './config-types.js';

export type { Logger };

/**
 * Paths that may carry a secret if someone logs a whole object by mistake.
 * Tokens and passwords are never logged on purpose; this is the safety net.
 */
const REDACT = [
  'token', 'password', 'secret', '*.token', '*.password', '*.secret',
  'claims.token', 'headers.authorization', '*.headers.authorization',
];

export function createLogger(cfg: Pick<LogConfig, 'level' | 'file'>): Logger {
  const dest = cfg.file
    ? pino.destination({ dest: cfg.file, mkdir: true, sync: false })
    : pino.destination({ fd: 1, sync: false });
  return pino(
    {
      level: cfg.level,
      base: { svc: 'sluice' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}
