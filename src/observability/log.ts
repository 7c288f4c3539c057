import { pino, type Logger } from 'pino';
import type { LogConfig } from '../config/types.js';

export type { Logger };

/**
 * Paths that may carry a secret if someone logs a whole object by mistake.
 * Tokens and passwords are never logged on purpose; this is the safety net.
 */
const REDACT = ['token', 'password', 'secret', 'claims.token', 'headers.authorization'];

/**
 * Collects log lines into ~16 KB strings before they reach SonicBoom. SonicBoom
 * measures the UTF-8 length of its whole pending buffer on every write, which
 * made one audit line per statement cost ~10 µs of CPU (bench/pgbench.ts);
 * here a line costs a string append. Every line, pino's and pre-built ones,
 * goes through the same batch, so their order is kept.
 */
class LineBatch {
  private pending = '';

  constructor(private readonly sonic: ReturnType<typeof pino.destination>) {}

  write(line: string): boolean {
    this.pending += line;
    if (this.pending.length >= 16_384) this.flushPending();
    return true;
  }

  private flushPending(): void {
    if (this.pending === '') return;
    const chunk = this.pending;
    this.pending = '';
    this.sonic.write(chunk);
  }

  /** Hands everything to SonicBoom and asks it to write now. */
  flush(cb?: (err?: Error) => void): void {
    this.flushPending();
    if (cb) this.sonic.flush(cb);
    else this.sonic.flush();
  }

  flushSync(): void {
    this.flushPending();
    this.sonic.flushSync?.();
  }
}

export function createLogger(cfg: Pick<LogConfig, 'level' | 'file'>): Logger {
  // Lines are batched into 16 KB writes: one write(2) per log line cost ~25% of
  // the gateway's CPU with one audit event per statement (bench/pgbench.ts).
  // Flushed every 100 ms, at exit and on shutdown (logger.flush()).
  const opts = { minLength: 0, sync: false };
  const sonic = cfg.file ? pino.destination({ dest: cfg.file, mkdir: true, ...opts }) : pino.destination({ fd: 1, ...opts });
  const dest = new LineBatch(sonic);
  // An idle gateway still gets its lines out within 100 ms.
  setInterval(() => dest.flush(), 100).unref();
  process.once('exit', () => dest.flushSync());
  return pino(
    {
      level: cfg.level,
      base: { svc: 'sluice' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Top-level paths only: wildcard redaction cost ~3% of CPU per log line.
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

/**
 * Writes pre-built JSON lines to the logger's destination, bypassing pino's
 * serializer. Only for hot, fixed-shape lines (one per allowed statement) that
 * are built in the shape pino writes: {"level","time","svc",…,"msg"}.
 */
export function rawLineWriter(log: Logger): ((line: string) => void) | null {
  const stream = (log as unknown as Record<symbol, { write?: (s: string) => unknown }>)[pino.symbols.streamSym];
  return stream && typeof stream.write === 'function' ? (line) => void stream.write!(line) : null;
}
