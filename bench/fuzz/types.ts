// What one protocol's fuzzer provides (bench/fuzz/run.ts runs each entry of its table), and
// helpers the live tier of every protocol shares.
import net from 'node:net';
import type { Sluice } from '../../test/helpers/sluice.js';
import type { Bench } from '../lib/paths.js';

/** An in-process throw that is not the codec's documented error: reproducible from seed, stream and case. */
export interface Finding {
  protocol: string;
  stream: string;
  case: number;
  error: string;
  ops?: string[];
  /** The first bytes of the input, hex (at most 256). */
  input?: string;
}

export interface Counts {
  /** Cases by kind, e.g. { 'pre-auth': 1234, 'sftp-packet': 99 }. */
  cases: Record<string, number>;
  /** Extra figures worth reporting (sessions opened, refusals seen, …). */
  notes: Record<string, number>;
}

export interface Bystander {
  name: string;
  ok: number;
  failed: number;
  /** Latencies of successful rounds, ms. */
  latencies: number[];
  errors: string[];
  stop(): Promise<void>;
}

export interface Ctx {
  seed: number;
  gw: Sluice;
  /** Token of the fuzzing identity (group fuzz: policies deny every command, sftp read-only). */
  fuzzToken: string;
  /** Token of the bystander identity (group ci). */
  bystanderToken: string;
  /** Loopback source addresses the live tier connects from (bystanders use 127.0.0.1). */
  sources: string[];
  /** Concurrent live connections per protocol. */
  concurrency: number;
  /** Where in-process findings go. */
  findings: Finding[];
  /** Stop the live tier at this time (ms since epoch). */
  deadline: number;
  /** Also stop once this many live cases ran. */
  maxLiveCases: number;
  log(s: string): void;
}

/** A target and the config a protocol adds to the gateway under test. */
export interface Prepared {
  /** Merged into the gateway config's `targets`. */
  targets: Record<string, unknown>;
  /** Start the gateway's SSH listener too. */
  ssh?: boolean;
  /** Merged into the gateway config's `policies`. */
  policies?: Record<string, unknown>[];
  /** Captures corpus from real clients once the tokens exist; returns lines for the report. */
  capture?(fuzzToken: string): Promise<string[]>;
}

export interface FuzzProtocol {
  name: string;
  /** One line: what is fuzzed, for the report. */
  describe: string;
  /** Starts the protocol's real target server; returns the gateway config it needs. */
  prepare(b: Bench): Promise<Prepared>;
  /** A session that must keep working while the listener is fuzzed. */
  bystander(ctx: Ctx): Bystander;
  /** Live tier: mutated bytes over loopback sockets into the running gateway until ctx.deadline. */
  live(ctx: Ctx): Promise<Counts>;
  /** In-process tier: the codecs and parsers called directly, cases `from` to `from + cases - 1`. */
  inProcess(ctx: Ctx, cases: number, onProgress: (done: number) => void, from?: number): Promise<Counts>;
  /** A fresh login after the run (true: it worked). */
  freshLogin(ctx: Ctx): Promise<{ ok: boolean; detail: string }>;
  /**
   * Corpus captured at prepare time that inProcess uses, to hand to the child process that runs
   * the in-process tier (child.ts); structured-clone friendly. Absent: nothing captured is needed.
   */
  exportCorpus?(): unknown;
  importCorpus?(c: unknown): void;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function add(into: Record<string, number>, key: string, n = 1): void {
  into[key] = (into[key] ?? 0) + n;
}

/**
 * Sends `chunks` on a fresh connection (each chunk its own write, a macrotask apart, so they
 * tend to arrive as separate segments), then either half-closes at once or waits up to `waitMs`
 * for the peer to answer or close, then drops the connection. Resolves with what came back; never rejects.
 */
export function shoot(port: number, localAddress: string, chunks: Buffer[], opts: { waitMs: number; halfClose: boolean }): Promise<{ reply: number; closedByPeer: boolean; error?: string }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    sock.setNoDelay(true);
    let reply = 0;
    let closedByPeer = false;
    let error: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ reply, closedByPeer, error });
    };
    sock.on('data', (c: Buffer) => (reply += c.length));
    sock.on('end', () => {
      closedByPeer = true;
      done();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      done();
    });
    sock.on('close', done);
    sock.once('connect', async () => {
      for (const c of chunks) {
        if (sock.destroyed) break;
        sock.write(c);
        if (chunks.length > 1) await new Promise((r) => setImmediate(r));
      }
      if (opts.halfClose && !sock.destroyed) sock.end();
      timer = setTimeout(done, opts.waitMs);
    });
  });
}

/** Runs `n` workers until each returns false. */
export async function workers(n: number, fn: (w: number) => Promise<boolean>): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, async (_, w) => {
      while (await fn(w)) {
        /* next */
      }
    }),
  );
}

/**
 * For an in-process loop: every 16 cases, if 10 ms went by, reports progress and
 * yields to the event loop (IPC and timers run). `await pace(n - from)` per case.
 */
export function pacer(onProgress: (done: number) => void): (done: number) => Promise<void> | undefined {
  let last = performance.now();
  return (done) => {
    if ((done & 15) !== 0 || performance.now() - last <= 10) return undefined;
    onProgress(done);
    return new Promise<void>((r) =>
      setImmediate(() => {
        last = performance.now();
        r();
      }),
    );
  };
}
