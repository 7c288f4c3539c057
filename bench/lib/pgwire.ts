// A minimal Postgres wire client for measurements: it authenticates (cleartext,
// MD5 or SCRAM-SHA-256, no TLS), sends simple queries and counts what comes back
// without decoding rows, so the client's own CPU stays out of the figures. A
// query can be read at a fixed pace (a slow reader) by pausing the socket.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { ScramClient } from '../../src/protocols/postgres/scram.js';

export interface ConnectOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface QueryResult {
  /** Bytes received from the query until ReadyForQuery, protocol framing included. */
  bytes: number;
  /** DataRow messages (or CopyData messages for COPY TO STDOUT). */
  rows: number;
  seconds: number;
}

type Handler = (type: number, body: Buffer | null, len: number) => void;

function msg(type: string | null, ...parts: (Buffer | string)[]): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p + '\0') : p)));
  const head = Buffer.alloc(type ? 5 : 4);
  if (type) head.write(type);
  head.writeInt32BE(body.length + 4, type ? 1 : 0);
  return Buffer.concat([head, body]);
}
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

function errorText(body: Buffer): string {
  const f: Record<string, string> = {};
  for (let o = 0; o < body.length && body[o] !== 0; ) {
    const z = body.indexOf(0, o + 1);
    f[String.fromCharCode(body[o]!)] = body.toString('utf8', o + 1, z);
    o = z + 1;
  }
  return `${f.S ?? 'ERROR'} ${f.C ?? ''}: ${f.M ?? '?'}`;
}

export class WireClient {
  private handler: Handler | null = null;
  private failure: ((e: Error) => void) | null = null;
  // Parser state: the header of the current message, then its body (kept only for
  // the few message types whose content matters; DataRows are only counted).
  private head = Buffer.alloc(5);
  private headLen = 0;
  private bodyLeft = 0;
  private body: Buffer | null = null;
  private bodyAt = 0;
  private type = 0;
  private len = 0;
  /** Bytes received since the counter was last reset. */
  bytes = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('error', (e) => this.failure?.(e));
    socket.on('close', () => this.failure?.(new Error('connection closed')));
  }

  static async connect(o: ConnectOptions): Promise<WireClient> {
    const socket = net.connect(o.port, o.host);
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new WireClient(socket);
    await c.startup(o);
    return c;
  }

  private onData(c: Buffer): void {
    this.bytes += c.length;
    let o = 0;
    while (o < c.length) {
      if (this.headLen < 5) {
        const n = Math.min(5 - this.headLen, c.length - o);
        c.copy(this.head, this.headLen, o, o + n);
        this.headLen += n;
        o += n;
        if (this.headLen < 5) return;
        this.type = this.head[0]!;
        this.len = this.head.readInt32BE(1) - 4;
        this.bodyLeft = this.len;
        // Keep bodies of everything but rows and COPY data.
        this.body = this.type === 0x44 || this.type === 0x64 ? null : Buffer.alloc(this.len);
        this.bodyAt = 0;
        if (this.len === 0) {
          this.headLen = 0;
          this.handler?.(this.type, this.body, 0);
          continue;
        }
      }
      const n = Math.min(this.bodyLeft, c.length - o);
      if (this.body) c.copy(this.body, this.bodyAt, o, o + n);
      this.bodyAt += n;
      this.bodyLeft -= n;
      o += n;
      if (this.bodyLeft === 0) {
        this.headLen = 0;
        this.handler?.(this.type, this.body, this.len);
      }
    }
  }

  /** Resolves when `done` returns a value for a message; rejects on ErrorResponse or a lost connection. */
  private until<T>(done: (type: number, body: Buffer | null, len: number) => T | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let error: Error | null = null;
      this.failure = (e) => {
        this.handler = null;
        reject(e);
      };
      this.handler = (type, body, len) => {
        if (type === 0x45) error = new Error(errorText(body!));
        let v: T | undefined;
        try {
          v = done(type, body, len);
        } catch (e) {
          this.handler = null;
          this.failure = null;
          reject(e as Error);
          return;
        }
        if (v !== undefined || (error && type === 0x5a)) {
          this.handler = null;
          this.failure = null;
          if (error) reject(error);
          else resolve(v!);
        }
      };
    });
  }

  private async startup(o: ConnectOptions): Promise<void> {
    const startup = Buffer.concat([int32(196608), Buffer.from(`user\0${o.user}\0database\0${o.database}\0application_name\0sluice-bench\0\0`)]);
    let scram: ScramClient | null = null;
    const ready = this.until((type, body) => {
      if (type === 0x45) throw new Error(errorText(body!)); // during startup an error is final
      if (type !== 0x52) return type === 0x5a ? true : undefined; // R: authentication request
      const code = body!.readInt32BE(0);
      if (code === 3) this.socket.write(msg('p', o.password));
      else if (code === 5) {
        const inner = createHash('md5').update(o.password + o.user).digest('hex');
        this.socket.write(msg('p', 'md5' + createHash('md5').update(inner).update(body!.subarray(4, 8)).digest('hex')));
      } else if (code === 10) {
        scram = new ScramClient(o.password);
        const first = Buffer.from(scram.first());
        this.socket.write(msg('p', 'SCRAM-SHA-256', int32(first.length), first));
      } else if (code === 11) {
        const serverFirst = body!.toString('utf8', 4);
        scram!.final(serverFirst).then(
          (f) => void this.socket.write(msg('p', Buffer.from(f))),
          (e: Error) => this.failure?.(e),
        );
      } else if (code === 12) scram!.verify(body!.toString('utf8', 4));
      else if (code !== 0) throw new Error(`unsupported authentication request ${code}`);
      return undefined;
    });
    this.socket.write(msg(null, startup));
    await ready;
  }

  /**
   * Runs one simple query and counts the result. With `mbps`, reads no faster
   * than that (MB/s, 1 MB = 1e6 bytes): the socket is paused whenever the reader is ahead.
   */
  async query(sql: string, opts: { mbps?: number } = {}): Promise<QueryResult> {
    const t0 = process.hrtime.bigint();
    this.bytes = 0;
    let rows = 0;
    let timer: NodeJS.Timeout | null = null;
    const pace = opts.mbps ? opts.mbps * 1e6 : 0;
    const onData = pace
      ? () => {
          const ahead = this.bytes / pace - Number(process.hrtime.bigint() - t0) / 1e9;
          if (ahead > 0.005 && !timer) {
            this.socket.pause();
            timer = setTimeout(() => {
              timer = null;
              this.socket.resume();
            }, ahead * 1000);
          }
        }
      : null;
    if (onData) this.socket.on('data', onData);
    try {
      const done = this.until((type) => {
        if (type === 0x44 || type === 0x64) rows++;
        return type === 0x5a ? true : undefined;
      });
      this.socket.write(msg('Q', sql));
      await done;
    } finally {
      if (onData) this.socket.off('data', onData);
      if (timer) {
        clearTimeout(timer);
        this.socket.resume();
      }
    }
    return { bytes: this.bytes, rows, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  }

  close(): void {
    this.failure = null;
    this.handler = null;
    if (!this.socket.destroyed) this.socket.end(msg('X'));
  }
}
