// The LMDB environment and its databases, opened the same way by the main thread and the writer thread
// (lmdb-js shares one environment per path within a process).

import { open, type Database, type RootDatabase } from 'lmdb';
import type { SessionIndexEntry } from './types.js';

export interface Dbs {
  env: RootDatabase;
  /** (session id, batch) -> sealed batch */
  frames: Database<Buffer, Buffer>;
  /** session id -> SessionIndexEntry (msgpack) */
  sessions: Database<SessionIndexEntry, string>;
  /** (started_at ms, session id) -> empty */
  byStart: Database<Buffer, Buffer>;
  /** (ms, counter, random) -> StoredAudit (msgpack) */
  audit: Database<StoredAudit, Buffer>;
  /** store-level records: format version, owner pid */
  meta: Database<unknown, string>;
}

/** An audit event at rest: the filter fields in clear, the event itself sealed (crypto.ts sealAudit). */
export interface StoredAudit {
  ts: string;
  sub?: string;
  target?: string;
  decision?: string;
  session?: string;
  key_id: string;
  sealed: Buffer;
}

/** 2: the hash chain runs over sealed batch values (1 chained every frame). */
export const FORMAT_VERSION = 2;

export function openDbs(dir: string, initialMapSize: number, readOnly = false): Dbs {
  const env = open({
    path: dir,
    readOnly,
    maxDbs: 8,
    // Only the initial map: lmdb-js grows it when a transaction needs more (see README.md, budget).
    mapSize: initialMapSize,
    compression: false,
    noMemInit: false,
  });
  return {
    env,
    frames: env.openDB<Buffer, Buffer>({ name: 'frames', keyEncoding: 'binary', encoding: 'binary' }),
    sessions: env.openDB<SessionIndexEntry, string>({ name: 'sessions', encoding: 'msgpack' }),
    byStart: env.openDB<Buffer, Buffer>({ name: 'by_start', keyEncoding: 'binary', encoding: 'binary' }),
    audit: env.openDB<StoredAudit, Buffer>({ name: 'audit', keyEncoding: 'binary', encoding: 'msgpack' }),
    meta: env.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' }),
  };
}

export const EMPTY = Buffer.alloc(1);
