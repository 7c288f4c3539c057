// SFTP version 3 (draft-ietf-secsh-filexfer-02, what OpenSSH speaks), parsed
// as a stream for audit and for `sftp: read_only` enforcement. Written from the
// draft and OpenSSH's PROTOCOL notes.
//
// Layers:
// - SftpStreamParser: frames one direction's byte stream, fed chunks split
//   anywhere. It copies at most a packet's header fields (bounded), never WRITE
//   or DATA payloads, and passes the bytes of kept packets on as slices of the
//   input chunks (one slice per chunk when nothing is dropped). A packet longer
//   than MAX_PACKET is a protocol error.
// - SftpSession: both directions of one sftp channel. Correlates replies with
//   their requests by id, tracks handles (so READ/WRITE/CLOSE know their path
//   and CLOSE reports the bytes read and written), and can refuse requests: a
//   refused request is never forwarded, and the client gets SSH_FXP_STATUS
//   PERMISSION_DENIED in its place, spliced into the server→client stream at a
//   packet boundary.
// - isWriteRequest(op), statusPacket(...): for callers doing their own relay.

export const SFTP_VERSION = 3;
/** Largest packet accepted (length field value): OpenSSH's 256 KiB limit plus header room. */
export const MAX_PACKET = 256 * 1024 + 1024;
/** Handles are at most 256 bytes (draft-02, section 3). */
const MAX_HANDLE = 256;

export const FXP = {
  INIT: 1, VERSION: 2, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, LSTAT: 7, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10,
  OPENDIR: 11, READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18,
  READLINK: 19, SYMLINK: 20, STATUS: 101, HANDLE: 102, DATA: 103, NAME: 104, ATTRS: 105,
  EXTENDED: 200, EXTENDED_REPLY: 201,
} as const;

export const FXF = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;

export const FX = {
  OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, BAD_MESSAGE: 5, NO_CONNECTION: 6,
  CONNECTION_LOST: 7, OP_UNSUPPORTED: 8,
} as const;
const STATUS_NAMES = ['ok', 'eof', 'no_such_file', 'permission_denied', 'failure', 'bad_message', 'no_connection', 'connection_lost', 'op_unsupported'];

export class SftpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SftpProtocolError';
  }
}

export interface SftpAttrs {
  size?: number;
  uid?: number;
  gid?: number;
  permissions?: number;
  atime?: number;
  mtime?: number;
}

/** What an OPEN asks for, from its pflags. */
export interface SftpAccess {
  read: boolean;
  write: boolean;
  append: boolean;
  create: boolean;
  trunc: boolean;
  excl: boolean;
}

interface Req {
  id: number;
}
/** Requests (client → server). `path` is resolved from the handle for handle operations, when known. */
export type SftpRequest =
  | ({ type: 'open'; path: string; pflags: number; access: SftpAccess; attrs: SftpAttrs } & Req)
  | ({ type: 'close'; handle: string; path?: string; bytes_read?: number; bytes_written?: number } & Req)
  | ({ type: 'read'; handle: string; path?: string; offset: number; length: number } & Req)
  | ({ type: 'write'; handle: string; path?: string; offset: number; length: number } & Req)
  | ({ type: 'lstat' | 'stat' | 'opendir' | 'remove' | 'rmdir' | 'realpath' | 'readlink'; path: string } & Req)
  | ({ type: 'mkdir' | 'setstat'; path: string; attrs: SftpAttrs } & Req)
  | ({ type: 'fstat' | 'readdir'; handle: string; path?: string } & Req)
  | ({ type: 'fsetstat'; handle: string; path?: string; attrs: SftpAttrs } & Req)
  | ({ type: 'rename'; path: string; new_path: string } & Req)
  /** OpenSSH sends SYMLINK's two paths in the reverse of the draft's order: target first, then the link. */
  | ({ type: 'symlink'; path: string; target: string } & Req)
  | ({ type: 'extended'; name: string; path?: string; new_path?: string; handle?: string } & Req);

/** Replies (server → client), with the request they answer when it was seen. */
export type SftpReply =
  | ({ type: 'status'; code: number; status: string; message: string } & Req & { request?: SftpRequest })
  | ({ type: 'handle'; handle: string } & Req & { request?: SftpRequest })
  | ({ type: 'data'; length: number } & Req & { request?: SftpRequest })
  | ({ type: 'name'; count: number; names: string[] } & Req & { request?: SftpRequest })
  | ({ type: 'attrs'; attrs: SftpAttrs } & Req & { request?: SftpRequest })
  | ({ type: 'extended_reply' } & Req & { request?: SftpRequest });

export type SftpOp =
  | { type: 'init'; version: number }
  | { type: 'version'; version: number; extensions: string[] }
  | SftpRequest
  | SftpReply
  /** A packet type this parser does not know (passed on, never a write by itself). */
  | { type: 'unknown'; code: number; id?: number };

/** Extended requests that change nothing; every other extension counts as a write (closed default). */
const READ_ONLY_EXTENSIONS = new Set([
  'statvfs@openssh.com', 'fstatvfs@openssh.com', 'limits@openssh.com', 'expand-path@openssh.com',
  'home-directory', 'users-groups-by-id@openssh.com', 'fsync@openssh.com', 'check-file-name', 'check-file-handle',
]);

/** Whether a client request may change the server's files (refused under `sftp: read_only`). */
export function isWriteRequest(op: SftpOp): boolean {
  switch (op.type) {
    case 'open':
      return (op.pflags & (FXF.WRITE | FXF.APPEND | FXF.CREAT | FXF.TRUNC)) !== 0;
    case 'write':
    case 'remove':
    case 'rename':
    case 'mkdir':
    case 'rmdir':
    case 'setstat':
    case 'fsetstat':
    case 'symlink':
      return true;
    case 'extended':
      return !READ_ONLY_EXTENSIONS.has(op.name);
    case 'unknown':
      return true; // a request type version 3 does not define: refused when writes are (closed default)
    default:
      return false;
  }
}

/** Whether an op is a request (client → server). */
export function isRequest(op: SftpOp): op is SftpRequest {
  return 'id' in op && !['status', 'handle', 'data', 'name', 'attrs', 'extended_reply', 'unknown'].includes(op.type);
}

/** An SSH_FXP_STATUS packet (length prefix included). */
export function statusPacket(id: number, code: number, message: string, language = 'en'): Buffer {
  const msg = Buffer.from(message, 'utf8');
  const lang = Buffer.from(language, 'ascii');
  const len = 1 + 4 + 4 + 4 + msg.length + 4 + lang.length;
  const b = Buffer.allocUnsafe(4 + len);
  let o = b.writeUInt32BE(len, 0);
  o = b.writeUInt8(FXP.STATUS, o);
  o = b.writeUInt32BE(id >>> 0, o);
  o = b.writeUInt32BE(code, o);
  o = b.writeUInt32BE(msg.length, o);
  o += msg.copy(b, o);
  o = b.writeUInt32BE(lang.length, o);
  lang.copy(b, o);
  return b;
}

/** SSH_FXP_STATUS with SSH_FX_PERMISSION_DENIED: what a refused request gets. */
export function permissionDenied(id: number, message: string): Buffer {
  return statusPacket(id, FX.PERMISSION_DENIED, message);
}

export function accessOf(pflags: number): SftpAccess {
  return {
    read: (pflags & FXF.READ) !== 0,
    write: (pflags & FXF.WRITE) !== 0,
    append: (pflags & FXF.APPEND) !== 0,
    create: (pflags & FXF.CREAT) !== 0,
    trunc: (pflags & FXF.TRUNC) !== 0,
    excl: (pflags & FXF.EXCL) !== 0,
  };
}

// ---------------------------------------------------------------- field reader

/** Reads fields of one packet held in buf[start, end). Throws SftpProtocolError when a field runs past the end. */
class Fields {
  buf!: Buffer;
  pos = 0;
  end = 0;

  reset(buf: Buffer, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new SftpProtocolError('SFTP packet shorter than its fields');
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return hi * 4294967296 + lo;
  }

  bytesLength(max = Infinity): number {
    const n = this.u32();
    if (n > max) throw new SftpProtocolError(`SFTP string of ${n} bytes is too long`);
    this.need(n);
    return n;
  }

  str(): string {
    const n = this.bytesLength();
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  handle(): string {
    const n = this.bytesLength(MAX_HANDLE);
    const s = this.buf.toString('hex', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  skipStr(): void {
    const n = this.bytesLength(); // (not `this.pos += …`: that reads pos before the length is consumed)
    this.pos += n;
  }

  attrs(): SftpAttrs {
    const flags = this.u32();
    const a: SftpAttrs = {};
    if (flags & 0x1) a.size = this.u64();
    if (flags & 0x2) {
      a.uid = this.u32();
      a.gid = this.u32();
    }
    if (flags & 0x4) a.permissions = this.u32();
    if (flags & 0x8) {
      a.atime = this.u32();
      a.mtime = this.u32();
    }
    if (flags & 0x80000000) {
      const n = this.u32();
      for (let i = 0; i < n; i++) {
        this.skipStr();
        this.skipStr();
      }
    }
    return a;
  }
}

/**
 * Body bytes (after the length field) the parser needs of a packet of this
 * type and length; the rest is passed on without being looked at.
 */
function fieldsNeeded(type: number, length: number): number {
  switch (type) {
    case FXP.WRITE:
      return Math.min(length, 1 + 4 + 4 + MAX_HANDLE + 8 + 4); // type, id, handle, offset, data length
    case FXP.DATA:
      return Math.min(length, 1 + 4 + 4); // type, id, data length
    case FXP.NAME:
      return Math.min(length, 16 * 1024); // the first names (REALPATH answers have one)
    default:
      return length; // every other packet is fields only (bounded by MAX_PACKET)
  }
}

function parsePacket(f: Fields, type: number, fromClient: boolean, bodyLength: number): SftpOp {
  // f is positioned after the type byte
  if (type === FXP.INIT || type === FXP.VERSION) {
    const version = f.u32();
    if (type === FXP.INIT) return { type: 'init', version };
    const extensions: string[] = [];
    while (f.pos < f.end) {
      extensions.push(f.str());
      f.skipStr();
    }
    return { type: 'version', version, extensions };
  }
  const id = f.u32();
  if (fromClient) {
    switch (type) {
      case FXP.OPEN: {
        const path = f.str();
        const pflags = f.u32();
        return { type: 'open', id, path, pflags, access: accessOf(pflags), attrs: f.attrs() };
      }
      case FXP.CLOSE:
        return { type: 'close', id, handle: f.handle() };
      case FXP.READ: {
        const handle = f.handle();
        const offset = f.u64();
        return { type: 'read', id, handle, offset, length: f.u32() };
      }
      case FXP.WRITE: {
        const handle = f.handle();
        const offset = f.u64();
        const length = f.u32();
        // the data follows; it must fit the packet exactly
        if (1 + 4 + 4 + Buffer.byteLength(handle, 'hex') + 8 + 4 + length !== bodyLength) throw new SftpProtocolError('SFTP WRITE length does not match its packet');
        return { type: 'write', id, handle, offset, length };
      }
      case FXP.LSTAT:
        return { type: 'lstat', id, path: f.str() };
      case FXP.STAT:
        return { type: 'stat', id, path: f.str() };
      case FXP.OPENDIR:
        return { type: 'opendir', id, path: f.str() };
      case FXP.REMOVE:
        return { type: 'remove', id, path: f.str() };
      case FXP.RMDIR:
        return { type: 'rmdir', id, path: f.str() };
      case FXP.REALPATH:
        return { type: 'realpath', id, path: f.str() };
      case FXP.READLINK:
        return { type: 'readlink', id, path: f.str() };
      case FXP.FSTAT:
        return { type: 'fstat', id, handle: f.handle() };
      case FXP.READDIR:
        return { type: 'readdir', id, handle: f.handle() };
      case FXP.MKDIR: {
        const path = f.str();
        return { type: 'mkdir', id, path, attrs: f.attrs() };
      }
      case FXP.SETSTAT: {
        const path = f.str();
        return { type: 'setstat', id, path, attrs: f.attrs() };
      }
      case FXP.FSETSTAT: {
        const handle = f.handle();
        return { type: 'fsetstat', id, handle, attrs: f.attrs() };
      }
      case FXP.RENAME: {
        const path = f.str();
        return { type: 'rename', id, path, new_path: f.str() };
      }
      case FXP.SYMLINK: {
        const target = f.str();
        return { type: 'symlink', id, path: f.str(), target };
      }
      case FXP.EXTENDED: {
        const name = f.str();
        const op: SftpRequest = { type: 'extended', id, name };
        if (name === 'posix-rename@openssh.com' || name === 'hardlink@openssh.com') {
          op.path = f.str();
          op.new_path = f.str();
        } else if (name === 'statvfs@openssh.com' || name === 'expand-path@openssh.com' || name === 'lsetstat@openssh.com' || name === 'home-directory') {
          op.path = f.str();
        } else if (name === 'fstatvfs@openssh.com' || name === 'fsync@openssh.com') {
          op.handle = f.handle();
        } else if (name === 'copy-data') {
          f.handle(); // read handle
          f.u64();
          f.u64();
          op.handle = f.handle(); // the handle written
        }
        return op;
      }
    }
  } else {
    switch (type) {
      case FXP.STATUS: {
        const code = f.u32();
        // draft-02 servers may omit message and language
        const message = f.pos < f.end ? f.str() : '';
        return { type: 'status', id, code, status: STATUS_NAMES[code] ?? `status_${code}`, message };
      }
      case FXP.HANDLE:
        return { type: 'handle', id, handle: f.handle() };
      case FXP.DATA: {
        const length = f.u32();
        if (1 + 4 + 4 + length !== bodyLength) throw new SftpProtocolError('SFTP DATA length does not match its packet');
        return { type: 'data', id, length };
      }
      case FXP.NAME: {
        const count = f.u32();
        const names: string[] = [];
        try {
          for (let i = 0; i < count && i < 64 && f.pos < f.end; i++) {
            names.push(f.str());
            f.skipStr();
            f.attrs();
          }
        } catch {
          // only the first names are read (a long listing continues past the fields kept)
        }
        return { type: 'name', id, count, names };
      }
      case FXP.ATTRS:
        return { type: 'attrs', id, attrs: f.attrs() };
      case FXP.EXTENDED_REPLY:
        return { type: 'extended_reply', id };
    }
  }
  return { type: 'unknown', code: type, id };
}

// ---------------------------------------------------------------- stream parser

export interface SftpSink {
  /** A packet's fields are known (before the rest of it may have arrived). Return false to drop its bytes. */
  packet(op: SftpOp): boolean | void;
  /** Bytes of kept packets, in order: slices of the input chunks, or a copy of a header split across chunks. */
  data?(bytes: Buffer): void;
  /** Called at the end of every packet while `boundaryCalls` is set (after its bytes were passed on). */
  boundary?(): void;
}

const enum State {
  Fields,
  Body,
}

/** Frames one direction of an sftp channel. Not reentrant; throws SftpProtocolError on malformed input (and after it). */
export class SftpStreamParser {
  /** Call sink.boundary() after each packet (set while something waits for a packet boundary). */
  boundaryCalls = false;
  private state = State.Fields;
  /** The fields of the current packet, when they arrive split across chunks. */
  private hold = Buffer.allocUnsafe(512);
  private held = 0;
  /** Bytes of the packet (with its length field) to gather before parsing; 0 until length and type are known. */
  private want = 0;
  private length = 0;
  private type = 0;
  /** Bytes of the current packet still to come after its fields. */
  private remaining = 0;
  private keep = true;
  private readonly fields = new Fields();
  private failed: SftpProtocolError | undefined;
  // the chunk being consumed, and where its run of kept bytes not yet passed on starts (-1: none)
  private chunk: Buffer | undefined;
  private run = -1;

  constructor(
    private readonly fromClient: boolean,
    private readonly sink: SftpSink,
  ) {}

  /** No packet is partly received: bytes injected into this direction now land between packets. */
  get atBoundary(): boolean {
    return this.state === State.Fields && this.held === 0;
  }

  push(chunk: Buffer): void {
    if (this.failed) throw this.failed;
    this.chunk = chunk;
    this.run = -1;
    try {
      this.consume(chunk);
      this.flush(chunk.length);
    } catch (e) {
      if (e instanceof SftpProtocolError) this.failed = e;
      throw e;
    } finally {
      this.chunk = undefined;
    }
  }

  private flush(to: number): void {
    if (this.run >= 0 && to > this.run) this.sink.data?.(this.chunk!.subarray(this.run, to));
    this.run = -1;
  }

  private consume(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.state === State.Body) {
        const k = Math.min(this.remaining, n - i);
        if (this.keep && this.run < 0) this.run = i;
        i += k;
        this.remaining -= k;
        if (this.remaining === 0) this.endPacket(i);
        continue;
      }
      if (this.held === 0 && n - i >= 5) {
        this.start(chunk.readUInt32BE(i), chunk[i + 4]!);
        if (n - i >= this.want) {
          // the fields are all in this chunk: parse them in place, copy nothing
          this.parse(chunk, i);
          if (!this.keep) this.flush(i);
          else if (this.run < 0) this.run = i;
          i += this.want;
          this.afterFields(i);
          continue;
        }
      }
      // the fields continue in a later chunk: gather them (bounded by fieldsNeeded)
      if (this.held === 0) this.flush(i);
      const k = Math.min((this.held < 5 ? 5 : this.want) - this.held, n - i);
      this.ensureHold(this.held + k);
      chunk.copy(this.hold, this.held, i, i + k);
      this.held += k;
      i += k;
      if (this.held === 5) this.start(this.hold.readUInt32BE(0), this.hold[4]!);
      if (this.held === this.want) {
        this.parse(this.hold, 0);
        if (this.keep) this.sink.data?.(Buffer.from(this.hold.subarray(0, this.held)));
        this.held = 0;
        this.afterFields(i);
      }
    }
  }

  private start(length: number, type: number): void {
    if (length < 1 || length > MAX_PACKET) throw new SftpProtocolError(`SFTP packet length ${length} is out of range (1 to ${MAX_PACKET})`);
    this.length = length;
    this.type = type;
    this.want = 4 + fieldsNeeded(type, length);
  }

  private ensureHold(size: number): void {
    if (size <= this.hold.length) return;
    const bigger = Buffer.allocUnsafe(Math.min(Math.max(size, this.hold.length * 2), 4 + MAX_PACKET));
    this.hold.copy(bigger, 0, 0, this.held);
    this.hold = bigger;
  }

  private parse(buf: Buffer, start: number): void {
    const op = parsePacket(this.fields.reset(buf, start + 5, start + this.want), this.type, this.fromClient, this.length);
    this.keep = this.sink.packet(op) !== false;
  }

  private afterFields(i: number): void {
    this.remaining = 4 + this.length - this.want;
    this.want = 0;
    if (this.remaining > 0) this.state = State.Body;
    else this.endPacket(i);
  }

  private endPacket(i: number): void {
    this.state = State.Fields;
    if (this.boundaryCalls) {
      this.flush(i);
      this.sink.boundary?.();
    }
  }
}

// ---------------------------------------------------------------- session

export interface SftpFile {
  path: string;
  kind: 'file' | 'dir';
  access?: SftpAccess;
  bytes_read: number;
  bytes_written: number;
}

export interface SftpSessionOptions {
  /** Bytes for the server: the client's packets, less the refused ones (slices of the input; write them in order). */
  toServer(bytes: Buffer): void;
  /** Bytes for the client: the server's packets, and the answers to refused requests between them. */
  toClient(bytes: Buffer): void;
  /** Every packet, with paths resolved from handles and replies correlated to their requests. `refused`: the message it was refused with. */
  onOp?(op: SftpOp, from: 'client' | 'server', refused?: string): void;
  /** A message refuses the request (an SftpRequest, or an unknown packet type): it is not forwarded, and the client gets SSH_FX_PERMISSION_DENIED with it. */
  refuse?(op: SftpOp): string | undefined;
}

/** Requests waiting for a reply, and open handles, beyond which the peer is misbehaving. */
const MAX_PENDING = 65536;
const MAX_HANDLES = 4096;

/**
 * Both directions of one sftp channel: relays, audits and enforces. Feed
 * clientData/serverData with the channel's chunks as they arrive; they throw
 * SftpProtocolError on a malformed stream (close the channel then).
 *
 * For `sftp: read_only`: `refuse: (op) => isWriteRequest(op) ? 'message' : undefined`.
 */
export class SftpSession {
  /** The negotiated version (after SSH_FXP_VERSION). */
  version: number | undefined;
  private readonly client: SftpStreamParser;
  private readonly server: SftpStreamParser;
  private readonly pending = new Map<number, SftpRequest>();
  private readonly handles = new Map<string, SftpFile>();
  private readonly queued: Buffer[] = [];

  constructor(private readonly opts: SftpSessionOptions) {
    this.client = new SftpStreamParser(true, { packet: (op) => this.request(op), data: (b) => opts.toServer(b) });
    this.server = new SftpStreamParser(false, {
      packet: (op) => this.reply(op),
      data: (b) => opts.toClient(b),
      boundary: () => this.flushQueued(),
    });
  }

  clientData(chunk: Buffer): void {
    this.client.push(chunk);
  }

  serverData(chunk: Buffer): void {
    this.server.push(chunk);
  }

  /** Files and directories still open (e.g. when the channel ends), with their byte counts. */
  openFiles(): SftpFile[] {
    return [...this.handles.values()];
  }

  private request(op: SftpOp): boolean {
    if (op.type === 'init' || op.type === 'version' || !('id' in op) || op.id === undefined) {
      this.opts.onOp?.(op, 'client');
      return true;
    }
    const r = op as SftpRequest;
    if ('handle' in r && r.handle !== undefined) {
      const h = this.handles.get(r.handle);
      if (h) {
        r.path = h.path;
        if (r.type === 'write') h.bytes_written += r.length;
        if (r.type === 'close') {
          r.bytes_read = h.bytes_read;
          r.bytes_written = h.bytes_written;
        }
      }
    }
    const why = this.opts.refuse?.(op);
    if (why !== undefined) {
      this.opts.onOp?.(op, 'client', why);
      this.inject(permissionDenied(r.id, why));
      return false;
    }
    if (this.pending.size >= MAX_PENDING) throw new SftpProtocolError(`more than ${MAX_PENDING} SFTP requests without a reply`);
    this.pending.set(r.id, r);
    this.opts.onOp?.(op, 'client');
    return true;
  }

  private reply(op: SftpOp): boolean {
    if (op.type === 'version') {
      this.version = op.version;
      if (op.version !== SFTP_VERSION) throw new SftpProtocolError(`SFTP version ${op.version} is not supported (only version ${SFTP_VERSION})`);
    } else if ('id' in op && op.id !== undefined && op.type !== 'unknown') {
      const rep = op as SftpReply;
      const req = this.pending.get(rep.id);
      if (req) {
        this.pending.delete(rep.id);
        rep.request = req;
        if (rep.type === 'handle' && (req.type === 'open' || req.type === 'opendir')) {
          if (this.handles.size >= MAX_HANDLES) throw new SftpProtocolError(`more than ${MAX_HANDLES} open SFTP handles`);
          this.handles.set(rep.handle, { path: req.path, kind: req.type === 'open' ? 'file' : 'dir', ...(req.type === 'open' && { access: req.access }), bytes_read: 0, bytes_written: 0 });
        } else if (rep.type === 'data' && req.type === 'read') {
          const h = this.handles.get(req.handle);
          if (h) h.bytes_read += rep.length;
        } else if (req.type === 'close') {
          this.handles.delete(req.handle);
        }
      }
    }
    this.opts.onOp?.(op, 'server');
    return true;
  }

  /** Sends bytes to the client between two server packets. */
  private inject(b: Buffer): void {
    if (this.server.atBoundary && this.queued.length === 0) this.opts.toClient(b);
    else {
      this.queued.push(b);
      this.server.boundaryCalls = true;
    }
  }

  private flushQueued(): void {
    for (const b of this.queued.splice(0)) this.opts.toClient(b);
    this.server.boundaryCalls = false;
  }
}

/** A compact audit record for the requests worth keeping (not every READ/WRITE: CLOSE carries their totals). */
export function auditRecord(op: SftpOp): Record<string, unknown> | undefined {
  switch (op.type) {
    case 'read':
    case 'write':
    case 'readdir':
    case 'fstat':
    case 'init':
    case 'version':
    case 'handle':
    case 'data':
    case 'name':
    case 'attrs':
    case 'extended_reply':
    case 'unknown':
      return undefined;
    case 'status':
      if (op.code === FX.OK || op.code === FX.EOF || !op.request) return undefined;
      return { op: op.request.type, path: 'path' in op.request ? op.request.path : undefined, status: op.status, message: op.message };
    case 'open':
      return { op: 'open', path: op.path, access: (['read', 'write', 'append', 'create', 'trunc', 'excl'] as const).filter((k) => op.access[k]) };
    case 'close':
      return { op: 'close', path: op.path, bytes_read: op.bytes_read ?? 0, bytes_written: op.bytes_written ?? 0 };
    case 'rename':
      return { op: 'rename', path: op.path, new_path: op.new_path };
    case 'symlink':
      return { op: 'symlink', path: op.path, target: op.target };
    case 'extended':
      return { op: 'extended', name: op.name, path: op.path, new_path: op.new_path };
    default:
      return { op: op.type, path: op.path };
  }
}
