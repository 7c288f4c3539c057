// Public types of the session recording store. See README.md in this folder for the on-disk format.

export const enum Dir {
  ClientToGateway = 0,
  GatewayToClient = 1,
  Event = 2,
}

export interface Frame {
  session: string;
  /** 0, 1, 2, … per session, without gaps (frames dropped while the store failed never get a seq). */
  seq: number;
  /** Monotonic µs since the session started recording. */
  t_us: number;
  dir: Dir;
  payload: Buffer;
}

export interface SessionMeta {
  id: string;
  protocol: string;
  target: string;
  sub: string;
  groups: string[];
  issuer: string;
  claims: Record<string, unknown>;
  client: string;
  started_at: string;
}

export type SessionStatus = 'live' | 'closed' | 'interrupted';

/** The signed end of a session's hash chain. */
export interface ChainHead {
  /** seq of the last frame, -1 for a session without frames. */
  seq: number;
  /** hex SHA-256 chain value after that frame. */
  hash: string;
  /** frames covered (= seq + 1). */
  frames: number;
  /** base64url signature over headMessage() (chain.ts), present once closed or recovered. */
  signature?: string;
  /** kid of the signer. */
  kid?: string;
}

export interface SessionIndexEntry extends SessionMeta {
  status: SessionStatus;
  ended_at?: string;
  close_reason?: string;
  bytes_from_client: number;
  bytes_to_client: number;
  statements: number;
  /** Decision counts, e.g. { allow: 3, deny: 1 }. */
  decisions: Record<string, number>;
  /** Frames stored (for a live session of this process: frames recorded so far). */
  frames: number;
  /** Frames that could not be recorded (store full, failing or falling behind); a `recording.gap` event marks where. */
  dropped_frames: number;
  /** Estimated bytes this session takes in the store (values rounded to LMDB pages). */
  stored_bytes: number;
  /** Batches written (frame keys 0 … batches-1). */
  batches: number;
  /** id of the master key that wraps this session's data key. */
  key_id: string;
  /** base64 of nonce(12) ‖ AES-256-GCM(master key, data key)(32) ‖ tag(16). */
  wrapped_key: string;
  head?: ChainHead;
}

export interface Signer {
  kid: string;
  sign(data: Buffer): Buffer;
  verify(data: Buffer, sig: Buffer): boolean;
}

export interface StoreOptions {
  /** Directory of the LMDB environment, normally <state_dir>/recordings. */
  dir: string;
  /** 32-byte key that wraps per-session data keys and seals audit events. */
  masterKey: { id: string; key: Buffer };
  /** Earlier master keys by id, to read sessions and audit events written before a rotation. */
  oldKeys?: Record<string, Buffer>;
  signer: Signer;
  /**
   * Storage budget in bytes (default 8 GiB). lmdb-js grows its memory map on its own, so LMDB itself
   * practically never reports MDB_MAP_FULL: the store enforces this budget itself (see README.md).
   */
  mapSize?: number;
  /**
   * Largest stored batch value in bytes, 256 to 65512 (default 32744: exactly eight LMDB overflow
   * pages, k·4096−24 bytes; see README.md for the measurements behind it).
   */
  batchBytes?: number;
  /** Longest time a recorded frame waits in memory before it is handed to the writer (default 200 ms). */
  flushMs?: number;
  /**
   * Shared buffer between record() and the writer thread (default 64 MiB, touched only as used): every
   * session with a partial batch holds one batch-sized slot. When none is free, a session's frames
   * wait outside it (copied, at most a quarter of it or 4 MiB per session) and `pressure` asks its
   * relay to pause; sessions get slots back in turn. Frames are dropped only while the store fails.
   */
  bufferBytes?: number;
  /**
   * How long the writer may have work waiting without committing anything before the store counts
   * as failed (a hung disk; default 30 s). Slow progress is backpressure, not failure.
   */
  stallMs?: number;
  /**
   * Queries only (get, list, frames, verify, audit), e.g. for a CLI while the gateway records: no
   * writer thread, no crash recovery, no ownership claim. The store must exist.
   */
  readOnly?: boolean;
  /**
   * Drop the data file's pages from the page cache every 64 MiB stored (default true; page-cache.ts).
   * Recordings are read rarely; false leaves the cache to the kernel, for stores that are replayed a lot.
   */
  dropPageCache?: boolean;
  /** Called once per failure episode (store full, write errors, writer stalled or gone). */
  onFailure?: (err: Error) => void;
  /** Called when a failure episode ends. */
  onRecover?: () => void;
  /** Something the operator should know that is not a failure (e.g. page-cache.ts turning itself off). */
  onNotice?: (message: string) => void;
}

export interface ListFilter {
  sub?: string;
  target?: string;
  /** started_at >= since */
  since?: Date;
  /** started_at < until */
  until?: Date;
  status?: string;
  /** sessions with at least one decision of this kind */
  decision?: string;
  limit?: number;
}

export interface AuditFilter {
  sub?: string;
  target?: string;
  decision?: string;
  since?: Date;
  until?: Date;
  limit?: number;
}

export type VerifyResult =
  | { ok: true; frames: number }
  | { ok: false; frames: number; firstBadSeq: number; reason: string };
