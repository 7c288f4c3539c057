// The SFTP v3 stream parser (src/protocols/ssh/sftp-packets.ts): hand-built
// packets fed whole, split at every byte boundary and one byte at a time;
// read_only refusals spliced into the server stream at packet boundaries;
// malformed input; and a real OpenSSH `sftp` client talking to a real
// `sftp-server` through an SftpSession relay (sftp -D, no sshd needed).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  auditRecord,
  FX,
  FXF,
  FXP,
  isWriteRequest,
  MAX_PACKET,
  permissionDenied,
  SftpProtocolError,
  SftpSession,
  SftpStreamParser,
  statusPacket,
  type SftpOp,
} from '../src/protocols/ssh/sftp-packets.js';
import { u32, u64, str } from './helpers/ssh-wire.js';

// ---------------------------------------------------------------- packet builders

const attrs = (a: { size?: number; perm?: number } = {}) => {
  let flags = 0;
  const parts: Buffer[] = [];
  if (a.size !== undefined) {
    flags |= 1;
    parts.push(u64(a.size));
  }
  if (a.perm !== undefined) {
    flags |= 4;
    parts.push(u32(a.perm));
  }
  return Buffer.concat([u32(flags), ...parts]);
};
function pkt(type: number, ...fields: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...fields]);
  return Buffer.concat([u32(body.length), body]);
}
const H1 = Buffer.from([0, 0, 0, 1]);
const H2 = Buffer.from([0, 0, 0, 2]);
const D1 = Buffer.from('d1');

/** A whole conversation: [direction, packet]. */
function conversation(): ['c' | 's', Buffer][] {
  const data1 = crypto.randomBytes(1000);
  const data2 = crypto.randomBytes(500);
  return [
    ['c', pkt(FXP.INIT, u32(3))],
    ['s', pkt(FXP.VERSION, u32(3), str('posix-rename@openssh.com'), str('1'), str('statvfs@openssh.com'), str('2'))],
    ['c', pkt(FXP.REALPATH, u32(1), str('.'))],
    ['s', pkt(FXP.NAME, u32(1), u32(1), str('/home/u'), str('/home/u'), attrs())],
    ['c', pkt(FXP.OPEN, u32(2), str('/tmp/a.bin'), u32(FXF.WRITE | FXF.CREAT | FXF.TRUNC), attrs({ perm: 0o644 }))],
    ['s', pkt(FXP.HANDLE, u32(2), str(H1))],
    ['c', pkt(FXP.WRITE, u32(3), str(H1), u64(0), str(data1))],
    ['c', pkt(FXP.WRITE, u32(4), str(H1), u64(1000), str(data2))],
    ['s', pkt(FXP.STATUS, u32(3), u32(FX.OK), str('Success'), str('en'))],
    ['s', pkt(FXP.STATUS, u32(4), u32(FX.OK), str('Success'), str('en'))],
    ['c', pkt(FXP.CLOSE, u32(5), str(H1))],
    ['s', pkt(FXP.STATUS, u32(5), u32(FX.OK), str('Success'), str('en'))],
    ['c', pkt(FXP.OPEN, u32(6), str('/tmp/a.bin'), u32(FXF.READ), attrs())],
    ['s', pkt(FXP.HANDLE, u32(6), str(H2))],
    ['c', pkt(FXP.READ, u32(7), str(H2), u64(0), u32(32768))],
    ['s', pkt(FXP.DATA, u32(7), str(Buffer.concat([data1, data2])))],
    ['c', pkt(FXP.READ, u32(8), str(H2), u64(1500), u32(32768))],
    ['s', pkt(FXP.STATUS, u32(8), u32(FX.EOF), str('End of file'), str('en'))],
    ['c', pkt(FXP.FSTAT, u32(9), str(H2))],
    ['s', pkt(FXP.ATTRS, u32(9), attrs({ size: 1500 }))],
    ['c', pkt(FXP.CLOSE, u32(10), str(H2))],
    ['s', pkt(FXP.STATUS, u32(10), u32(FX.OK), str('Success'), str('en'))],
    ['c', pkt(FXP.STAT, u32(11), str('/tmp/a.bin'))],
    ['c', pkt(FXP.LSTAT, u32(12), str('/tmp/a.bin'))],
    ['c', pkt(FXP.SETSTAT, u32(13), str('/tmp/a.bin'), attrs({ perm: 0o600 }))],
    ['c', pkt(FXP.MKDIR, u32(14), str('/tmp/d'), attrs({ perm: 0o755 }))],
    ['c', pkt(FXP.RENAME, u32(15), str('/tmp/a.bin'), str('/tmp/d/b.bin'))],
    ['c', pkt(FXP.SYMLINK, u32(16), str('/tmp/d/b.bin'), str('/tmp/link'))],
    ['c', pkt(FXP.READLINK, u32(17), str('/tmp/link'))],
    ['c', pkt(FXP.OPENDIR, u32(18), str('/tmp/d'))],
    ['s', pkt(FXP.HANDLE, u32(18), str(D1))],
    ['c', pkt(FXP.READDIR, u32(19), str(D1))],
    ['s', pkt(FXP.NAME, u32(19), u32(2), str('.'), str('dr-x . '), attrs(), str('b.bin'), str('-rw b.bin'), attrs({ size: 1500 }))],
    ['c', pkt(FXP.FSETSTAT, u32(20), str(D1), attrs({ perm: 0o700 }))],
    ['c', pkt(FXP.EXTENDED, u32(21), str('posix-rename@openssh.com'), str('/tmp/d/b.bin'), str('/tmp/d/c.bin'))],
    ['c', pkt(FXP.EXTENDED, u32(22), str('statvfs@openssh.com'), str('/tmp'))],
    ['s', pkt(FXP.EXTENDED_REPLY, u32(22), u64(1), u64(2))],
    ['c', pkt(FXP.REMOVE, u32(23), str('/tmp/link'))],
    ['c', pkt(FXP.RMDIR, u32(24), str('/tmp/d'))],
    ['s', pkt(FXP.STATUS, u32(24), u32(FX.FAILURE), str('Directory not empty'), str('en'))],
  ];
}

interface Seen {
  ops: { op: SftpOp; from: string; refused?: string }[];
  toServer: Buffer[];
  toClient: Buffer[];
}

function session(refuse?: (op: SftpOp) => string | undefined): { s: SftpSession; seen: Seen } {
  const seen: Seen = { ops: [], toServer: [], toClient: [] };
  const s = new SftpSession({
    toServer: (b) => seen.toServer.push(b),
    toClient: (b) => seen.toClient.push(b),
    onOp: (op, from, refused) => seen.ops.push({ op: structuredClone(op), from, ...(refused !== undefined && { refused }) }),
    ...(refuse && { refuse }),
  });
  return { s, seen };
}

/** Feeds the conversation, each packet's bytes cut into pieces by `cut`, and interleaving directions in order. */
function feed(s: SftpSession, conv: ['c' | 's', Buffer][], cut: (b: Buffer) => Buffer[]): void {
  // Concatenate consecutive packets of one direction, then cut the stream (so cuts cross packet boundaries).
  const runs: ['c' | 's', Buffer][] = [];
  for (const [d, p] of conv) {
    const last = runs[runs.length - 1];
    if (last && last[0] === d) last[1] = Buffer.concat([last[1], p]);
    else runs.push([d, p]);
  }
  for (const [d, bytes] of runs) for (const piece of cut(bytes)) (d === 'c' ? s.clientData(piece) : s.serverData(piece));
}

const summary = (seen: Seen) => seen.ops.map(({ op, from, refused }) => ({ from, refused, ...op }));

t.test('a whole conversation, parsed and correlated', async (t) => {
  const conv = conversation();
  const { s, seen } = session();
  feed(s, conv, (b) => [b]);
  t.equal(s.version, 3);
  t.same(
    Buffer.concat(seen.toServer),
    Buffer.concat(conv.filter(([d]) => d === 'c').map(([, p]) => p)),
    'every client byte is forwarded unchanged',
  );
  t.same(Buffer.concat(seen.toClient), Buffer.concat(conv.filter(([d]) => d === 's').map(([, p]) => p)), 'every server byte is forwarded unchanged');
  const ops = seen.ops.map((x) => x.op);
  const types = ops.map((o) => o.type);
  t.same(types, [
    'init', 'version', 'realpath', 'name', 'open', 'handle', 'write', 'write', 'status', 'status', 'close', 'status',
    'open', 'handle', 'read', 'data', 'read', 'status', 'fstat', 'attrs', 'close', 'status', 'stat', 'lstat', 'setstat',
    'mkdir', 'rename', 'symlink', 'readlink', 'opendir', 'handle', 'readdir', 'name', 'fsetstat', 'extended', 'extended',
    'extended_reply', 'remove', 'rmdir', 'status',
  ]);
  const version = ops[1] as Extract<SftpOp, { type: 'version' }>;
  t.same(version.extensions, ['posix-rename@openssh.com', 'statvfs@openssh.com']);
  const name = ops[3] as Extract<SftpOp, { type: 'name' }>;
  t.same(name.names, ['/home/u'], 'REALPATH answer');
  t.equal(name.request?.type, 'realpath', 'reply correlated by id');
  const open = ops[4] as Extract<SftpOp, { type: 'open' }>;
  t.match(open, { path: '/tmp/a.bin', access: { write: true, create: true, trunc: true, read: false } });
  const w = ops[6] as Extract<SftpOp, { type: 'write' }>;
  t.match(w, { type: 'write', path: '/tmp/a.bin', offset: 0, length: 1000, handle: '00000001' }, 'WRITE knows its path');
  t.match(ops[7], { type: 'write', path: '/tmp/a.bin', offset: 1000, length: 500 });
  t.match(ops[10], { type: 'close', path: '/tmp/a.bin', bytes_written: 1500, bytes_read: 0 }, 'CLOSE carries the totals');
  t.match(ops[11], { type: 'status', code: FX.OK, status: 'ok', request: { type: 'close', path: '/tmp/a.bin', bytes_written: 1500 } });
  t.match(ops[14], { type: 'read', path: '/tmp/a.bin', offset: 0, length: 32768 });
  t.match(ops[15], { type: 'data', length: 1500, request: { type: 'read', path: '/tmp/a.bin' } });
  t.match(ops[17], { type: 'status', status: 'eof' });
  t.match(ops[18], { type: 'fstat', path: '/tmp/a.bin' });
  t.match(ops[19], { type: 'attrs', attrs: { size: 1500 } });
  t.match(ops[20], { type: 'close', path: '/tmp/a.bin', bytes_read: 1500, bytes_written: 0 });
  t.match(ops[24], { type: 'setstat', path: '/tmp/a.bin', attrs: { permissions: 0o600 } });
  t.match(ops[26], { type: 'rename', path: '/tmp/a.bin', new_path: '/tmp/d/b.bin' });
  t.match(ops[27], { type: 'symlink', target: '/tmp/d/b.bin', path: '/tmp/link' }, "OpenSSH's SYMLINK order: target, then link");
  t.match(ops[31], { type: 'readdir', path: '/tmp/d' });
  t.match(ops[32], { type: 'name', count: 2, names: ['.', 'b.bin'] });
  t.match(ops[33], { type: 'fsetstat', path: '/tmp/d' });
  t.match(ops[34], { type: 'extended', name: 'posix-rename@openssh.com', path: '/tmp/d/b.bin', new_path: '/tmp/d/c.bin' });
  t.match(ops[35], { type: 'extended', name: 'statvfs@openssh.com', path: '/tmp' });
  t.match(ops[39], { type: 'status', code: FX.FAILURE, message: 'Directory not empty', request: { type: 'rmdir', path: '/tmp/d' } });
  t.same(s.openFiles(), [{ path: '/tmp/d', kind: 'dir', bytes_read: 0, bytes_written: 0 }], 'the directory handle was never closed');
  // audit records
  t.same(auditRecord(ops[4]!), { op: 'open', path: '/tmp/a.bin', access: ['write', 'create', 'trunc'] });
  t.same(auditRecord(ops[10]!), { op: 'close', path: '/tmp/a.bin', bytes_read: 0, bytes_written: 1500 });
  t.equal(auditRecord(ops[6]!), undefined, 'no record per WRITE');
  t.same(auditRecord(ops[39]!), { op: 'rmdir', path: '/tmp/d', status: 'failure', message: 'Directory not empty' });
});

t.test('split at every byte boundary, and one byte at a time: same operations, same bytes', async (t) => {
  const conv = conversation();
  const whole = session();
  feed(whole.s, conv, (b) => [b]);
  const expected = summary(whole.seen);
  const clientBytes = Buffer.concat(whole.seen.toServer);
  const serverBytes = Buffer.concat(whole.seen.toClient);
  let splits = 0;
  let mismatches = 0;
  const maxLen = Math.max(...conv.map(([, p]) => p.length)) + 64;
  for (let k = 1; k < maxLen; k++) {
    const { s, seen } = session();
    feed(s, conv, (b) => {
      const out: Buffer[] = [];
      for (let i = 0; i < b.length; i += k) out.push(b.subarray(i, i + k));
      return out;
    });
    splits++;
    if (JSON.stringify(summary(seen)) !== JSON.stringify(expected) || !Buffer.concat(seen.toServer).equals(clientBytes) || !Buffer.concat(seen.toClient).equals(serverBytes)) mismatches++;
  }
  t.equal(mismatches, 0, `${splits} chunk sizes (1 to ${maxLen - 1} bytes) give the same operations and bytes`);
  // every single two-chunk cut of each direction's whole stream
  for (const dir of ['c', 's'] as const) {
    const stream = Buffer.concat(conv.filter(([d]) => d === dir).map(([, p]) => p));
    let bad = 0;
    for (let cut = 1; cut < stream.length; cut++) {
      const ops: string[] = [];
      const out: Buffer[] = [];
      const p = new SftpStreamParser(dir === 'c', { packet: (op) => void ops.push(JSON.stringify(op)), data: (b) => out.push(b) });
      p.push(stream.subarray(0, cut));
      p.push(stream.subarray(cut));
      if (!Buffer.concat(out).equals(stream) || ops.length !== conv.filter(([d]) => d === dir).length) bad++;
    }
    t.equal(bad, 0, `${dir === 'c' ? 'client' : 'server'} stream cut at each of ${stream.length - 1} offsets`);
  }
});

t.test('payloads are passed on as slices of the input, never copied', async (t) => {
  const big = crypto.randomBytes(255 * 1024);
  const stream = Buffer.concat([
    pkt(FXP.WRITE, u32(1), str(H1), u64(0), str(big)),
    pkt(FXP.WRITE, u32(2), str(H1), u64(big.length), str(big)),
  ]);
  const out: Buffer[] = [];
  const ops: SftpOp[] = [];
  const p = new SftpStreamParser(true, { packet: (op) => void ops.push(op), data: (b) => out.push(b) });
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 1000) chunks.push(Buffer.from(stream.subarray(i, i + 1000))); // own memory per chunk
  for (const c of chunks) p.push(c);
  t.equal(ops.length, 2);
  t.match(ops[1], { type: 'write', length: big.length, offset: big.length });
  t.ok(Buffer.concat(out).equals(stream), 'bytes unchanged');
  const copies = out.filter((b) => !chunks.some((c) => c.buffer === b.buffer && b.byteOffset >= c.byteOffset && b.byteOffset + b.length <= c.byteOffset + c.length));
  t.ok(copies.every((b) => b.length <= 4 + 1 + 4 + 4 + 4 + 8 + 4), `only split headers are copied (${copies.length} small copies)`);
  t.equal(out.length - copies.length >= chunks.length - 2, true, 'about one slice per chunk');
  t.ok(((p as unknown as { hold: Buffer }).hold.length as number) <= 512, 'the header buffer stays small');
});

t.test('read_only: write requests are refused, answered, and never forwarded', async (t) => {
  const conv = conversation();
  const refusedTypes: string[] = [];
  const { s, seen } = session((op) => (isWriteRequest(op) ? `sftp is read-only for you (policy "analysts")` : undefined));
  feed(s, conv, (b) => [b]);
  for (const x of seen.ops) if (x.refused) refusedTypes.push(x.op.type);
  t.same(refusedTypes, ['open', 'write', 'write', 'setstat', 'mkdir', 'rename', 'symlink', 'fsetstat', 'extended', 'remove', 'rmdir']);
  // what reached the server: exactly the client packets that are not writes
  const allowed = conv.filter(([d, p]) => d === 'c' && !refusedIds(p));
  function refusedIds(p: Buffer): boolean {
    const r = seen.ops.find((x) => x.refused && 'id' in x.op && x.op.id === p.readUInt32BE(5) && p[4] !== FXP.INIT);
    return r !== undefined;
  }
  t.same(Buffer.concat(seen.toServer), Buffer.concat(allowed.map(([, p]) => p)), 'refused packets are dropped, the rest forwarded byte for byte');
  // what the client got: the server's packets plus one PERMISSION_DENIED per refusal, each whole
  const replies: SftpOp[] = [];
  const rp = new SftpStreamParser(false, { packet: (op) => void replies.push(op) });
  for (const b of seen.toClient) rp.push(b);
  const denied = replies.filter((r) => r.type === 'status' && r.code === FX.PERMISSION_DENIED);
  t.equal(denied.length, refusedTypes.length, 'one PERMISSION_DENIED per refused request');
  t.match(denied[0], { type: 'status', id: 2, message: 'sftp is read-only for you (policy "analysts")' });
  t.ok(rp.atBoundary, 'the client stream ends between packets');
});

t.test('a refusal waits for the server packet in flight', async (t) => {
  const { s, seen } = session((op) => (isWriteRequest(op) ? 'no' : undefined));
  s.clientData(pkt(FXP.INIT, u32(3)));
  s.serverData(pkt(FXP.VERSION, u32(3)));
  s.clientData(pkt(FXP.OPEN, u32(1), str('/r'), u32(FXF.READ), attrs()));
  s.serverData(pkt(FXP.HANDLE, u32(1), str(H1)));
  s.clientData(pkt(FXP.READ, u32(2), str(H1), u64(0), u32(100000)));
  const data = pkt(FXP.DATA, u32(2), str(crypto.randomBytes(100000)));
  s.serverData(data.subarray(0, 5000)); // the DATA reply is half-way through
  const before = seen.toClient.length;
  s.clientData(pkt(FXP.REMOVE, u32(3), str('/r')));
  t.equal(seen.toClient.length, before, 'not injected in the middle of DATA');
  s.serverData(data.subarray(5000, 60000));
  s.serverData(Buffer.concat([data.subarray(60000), pkt(FXP.STATUS, u32(99), u32(0), str(''), str(''))]));
  const all = Buffer.concat(seen.toClient);
  const types: [number, number][] = [];
  const p = new SftpStreamParser(false, { packet: (op) => void types.push([op.type === 'status' ? op.code : -1, 'id' in op ? (op.id ?? -1) : -1]) });
  p.push(all);
  t.same(types.slice(-3), [[-1, 2], [FX.PERMISSION_DENIED, 3], [0, 99]], 'DATA, then the refusal, then the next server packet');
  // and at a boundary it goes out at once
  const n = seen.toClient.length;
  s.clientData(pkt(FXP.MKDIR, u32(4), str('/x'), attrs()));
  t.equal(seen.toClient.length, n + 1, 'sent at once when the server stream is between packets');
  t.same(seen.toClient[n], permissionDenied(4, 'no'));
});

t.test('statusPacket', async (t) => {
  const b = statusPacket(7, FX.PERMISSION_DENIED, 'nope — denied');
  const ops: SftpOp[] = [];
  new SftpStreamParser(false, { packet: (op) => void ops.push(op) }).push(b);
  t.same(ops, [{ type: 'status', id: 7, code: 3, status: 'permission_denied', message: 'nope — denied' }]);
  t.same(permissionDenied(7, 'nope — denied'), b);
});

t.test('isWriteRequest', async (t) => {
  const cases: [SftpOp, boolean][] = [
    [{ type: 'open', id: 1, path: 'a', pflags: FXF.READ, access: {} as never, attrs: {} }, false],
    [{ type: 'open', id: 1, path: 'a', pflags: 0, access: {} as never, attrs: {} }, false],
    [{ type: 'open', id: 1, path: 'a', pflags: FXF.WRITE, access: {} as never, attrs: {} }, true],
    [{ type: 'open', id: 1, path: 'a', pflags: FXF.READ | FXF.APPEND, access: {} as never, attrs: {} }, true],
    [{ type: 'open', id: 1, path: 'a', pflags: FXF.READ | FXF.CREAT, access: {} as never, attrs: {} }, true],
    [{ type: 'open', id: 1, path: 'a', pflags: FXF.READ | FXF.TRUNC, access: {} as never, attrs: {} }, true],
    [{ type: 'read', id: 1, handle: '', offset: 0, length: 1 }, false],
    [{ type: 'write', id: 1, handle: '', offset: 0, length: 1 }, true],
    [{ type: 'stat', id: 1, path: 'a' }, false],
    [{ type: 'lstat', id: 1, path: 'a' }, false],
    [{ type: 'fstat', id: 1, handle: '' }, false],
    [{ type: 'opendir', id: 1, path: 'a' }, false],
    [{ type: 'readdir', id: 1, handle: '' }, false],
    [{ type: 'realpath', id: 1, path: 'a' }, false],
    [{ type: 'readlink', id: 1, path: 'a' }, false],
    [{ type: 'close', id: 1, handle: '' }, false],
    [{ type: 'remove', id: 1, path: 'a' }, true],
    [{ type: 'rmdir', id: 1, path: 'a' }, true],
    [{ type: 'mkdir', id: 1, path: 'a', attrs: {} }, true],
    [{ type: 'rename', id: 1, path: 'a', new_path: 'b' }, true],
    [{ type: 'setstat', id: 1, path: 'a', attrs: {} }, true],
    [{ type: 'fsetstat', id: 1, handle: '', attrs: {} }, true],
    [{ type: 'symlink', id: 1, path: 'a', target: 'b' }, true],
    [{ type: 'extended', id: 1, name: 'statvfs@openssh.com' }, false],
    [{ type: 'extended', id: 1, name: 'limits@openssh.com' }, false],
    [{ type: 'extended', id: 1, name: 'posix-rename@openssh.com' }, true],
    [{ type: 'extended', id: 1, name: 'hardlink@openssh.com' }, true],
    [{ type: 'extended', id: 1, name: 'lsetstat@openssh.com' }, true],
    [{ type: 'extended', id: 1, name: 'copy-data' }, true],
    [{ type: 'extended', id: 1, name: 'something-new@example.com' }, true],
    [{ type: 'unknown', code: 21, id: 1 }, true],
  ];
  for (const [op, want] of cases) t.equal(isWriteRequest(op), want, `${op.type}${'name' in op ? ' ' + op.name : ''}${'pflags' in op ? ' pflags ' + op.pflags : ''}`);
});

t.test('malformed streams are protocol errors', async (t) => {
  const bad: [string, Buffer, boolean][] = [
    ['zero length', Buffer.concat([u32(0), Buffer.from([1])]), true],
    ['absurd length', Buffer.concat([u32(MAX_PACKET + 1), Buffer.from([FXP.WRITE])]), true],
    ['4 GiB length', Buffer.from([0xff, 0xff, 0xff, 0xff, FXP.DATA]), false],
    ['OPEN shorter than its fields', pkt(FXP.OPEN, u32(1), u32(50), Buffer.from('short')), true],
    ['WRITE whose data length disagrees', pkt(FXP.WRITE, u32(1), str(H1), u64(0), u32(10), Buffer.alloc(3)), true],
    ['handle over 256 bytes', pkt(FXP.CLOSE, u32(1), str(Buffer.alloc(300))), true],
    ['DATA whose length disagrees', pkt(FXP.DATA, u32(1), u32(100), Buffer.alloc(10)), false],
    ['a packet with no id', pkt(FXP.STAT), true],
  ];
  for (const [what, bytes, fromClient] of bad) {
    const p = new SftpStreamParser(fromClient, { packet: () => {} });
    t.throws(() => p.push(bytes), SftpProtocolError, what);
    t.throws(() => p.push(pkt(FXP.INIT, u32(3))), SftpProtocolError, `${what}: the stream stays failed`);
  }
  const { s } = session();
  s.clientData(pkt(FXP.INIT, u32(6)));
  t.throws(() => s.serverData(pkt(FXP.VERSION, u32(6))), /version 6 is not supported/, 'only version 3 is spoken');
});

// ---------------------------------------------------------------- a real client and server

const SFTP_SERVER = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/lib/ssh/sftp-server'].find((p) => fs.existsSync(p));
const haveSftp = spawnSync('sftp', ['-h'], { encoding: 'utf8' }).error === undefined;

interface RealRun {
  code: number | null;
  stderr: string;
  ops: { op: SftpOp; from: string; refused?: string }[];
  raw: { c: Buffer[]; s: Buffer[] };
}

/** Runs `sftp -b batch` against sftp-server, through an SftpSession relay (sftp -D starts a shim that connects back here). */
async function realRun(dir: string, batch: string, refuse?: (op: SftpOp) => string | undefined): Promise<RealRun> {
  const ops: RealRun['ops'] = [];
  const raw = { c: [] as Buffer[], s: [] as Buffer[] };
  const server = net.createServer((sock) => {
    const srv = spawn(SFTP_SERVER!, ['-d', path.join(dir, 'remote')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const s = new SftpSession({
      toServer: (b) => srv.stdin.write(b),
      toClient: (b) => sock.write(b),
      onOp: (op, from, refused) => ops.push({ op, from, ...(refused !== undefined && { refused }) }),
      ...(refuse && { refuse }),
    });
    sock.on('data', (c: Buffer) => {
      raw.c.push(Buffer.from(c));
      s.clientData(c);
    });
    srv.stdout.on('data', (c: Buffer) => {
      raw.s.push(Buffer.from(c));
      s.serverData(c);
    });
    sock.on('end', () => srv.stdin.end());
    srv.on('exit', () => sock.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const shim = path.join(dir, 'shim.cjs');
  fs.writeFileSync(
    shim,
    `const s = require('net').connect(${port}, '127.0.0.1', () => { process.stdin.pipe(s); s.pipe(process.stdout); });\ns.on('close', () => process.exit(0));\n`,
  );
  fs.writeFileSync(path.join(dir, 'batch'), batch);
  const child = spawn('sftp', ['-q', '-b', path.join(dir, 'batch'), '-D', `${process.execPath} ${shim}`], { cwd: path.join(dir, 'local'), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  server.close();
  return { code, stderr, ops, raw };
}

t.test('a real sftp client and sftp-server through the parser', { skip: !SFTP_SERVER || !haveSftp ? 'OpenSSH sftp and sftp-server are not installed' : false }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sftp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'local'));
  fs.mkdirSync(path.join(dir, 'remote'));
  const payload = crypto.randomBytes(3 * 1024 * 1024 + 12345);
  fs.writeFileSync(path.join(dir, 'local', 'up.bin'), payload);
  fs.writeFileSync(path.join(dir, 'remote', 'keep.txt'), 'read me\n');

  const rw = await realRun(
    dir,
    ['put up.bin remote.bin', 'get remote.bin back.bin', 'ls -l', 'mkdir d', 'rename remote.bin d/moved.bin', 'ln -s d/moved.bin link', 'chmod 600 d/moved.bin', 'rm link', 'rm d/moved.bin', 'rmdir d', 'get keep.txt'].join('\n') + '\n',
  );
  t.equal(rw.code, 0, `sftp succeeded${rw.stderr ? ': ' + rw.stderr : ''}`);
  t.ok(fs.readFileSync(path.join(dir, 'local', 'back.bin')).equals(payload), 'the file came back byte-identical');
  const reqs = rw.ops.filter((x) => x.from === 'client').map((x) => x.op);
  const closes = reqs.filter((o): o is Extract<SftpOp, { type: 'close' }> => o.type === 'close');
  const upload = closes.find((c) => c.path?.endsWith('/remote.bin') && c.bytes_written);
  t.equal(upload?.bytes_written, payload.length, 'CLOSE of the upload reports every byte written');
  // the download's reads are counted from DATA replies
  const dl = rw.ops.find((x) => x.op.type === 'status' && x.op.request?.type === 'close' && x.op.request.path?.endsWith('/remote.bin') && (x.op.request.bytes_read ?? 0) > 0);
  t.equal((dl?.op as Extract<SftpOp, { type: 'status' }> | undefined)?.request && (dl!.op as { request: { bytes_read: number } }).request.bytes_read, payload.length, 'CLOSE of the download reports every byte read');
  const writes = reqs.filter((o) => o.type === 'write');
  t.ok(writes.length > 1 && writes.every((w) => w.type === 'write' && w.path?.endsWith('/remote.bin')), `${writes.length} WRITEs, each knowing its path`);
  const kinds = new Set(reqs.map((o) => (o.type === 'extended' ? o.name : o.type)));
  for (const k of ['open', 'write', 'read', 'close', 'opendir', 'readdir', 'mkdir', 'symlink', 'setstat', 'remove', 'rmdir', 'realpath']) t.ok(kinds.has(k), `saw ${k}`);
  t.ok(kinds.has('rename') || kinds.has('posix-rename@openssh.com'), 'saw a rename');
  t.notOk(rw.ops.some((x) => x.op.type === 'unknown'), 'no unknown packet types');

  // The captured bytes, replayed through fresh parsers in random chunk sizes, give the same operations.
  for (const dirn of ['c', 's'] as const) {
    const stream = Buffer.concat(rw.raw[dirn]);
    const want = rw.ops.filter((x) => x.from === (dirn === 'c' ? 'client' : 'server')).length;
    for (let round = 0; round < 3; round++) {
      let n = 0;
      const p = new SftpStreamParser(dirn === 'c', { packet: () => void n++ });
      for (let i = 0; i < stream.length; ) {
        const k = 1 + crypto.randomInt(round === 0 ? 64 : 70000);
        p.push(stream.subarray(i, i + k));
        i += k;
      }
      t.equal(n, want, `captured ${dirn === 'c' ? 'client' : 'server'} stream (${stream.length} bytes) re-parsed in random chunks, round ${round + 1}`);
    }
  }

  // read_only: reads work, writes are refused by the relay (sftp's '-' prefix keeps going after a failure)
  fs.rmSync(path.join(dir, 'local', 'back.bin'));
  const ro = await realRun(dir, ['ls', '-put up.bin nope.bin', 'get keep.txt again.txt', '-mkdir z', '-rm keep.txt', '-rename keep.txt k2'].join('\n') + '\n', (op) => (isWriteRequest(op) ? 'read-only' : undefined));
  t.equal(ro.code, 0, `sftp finished${ro.stderr ? ': ' + ro.stderr.trim() : ''}`);
  t.match(ro.stderr, /Permission denied/, 'the client was told');
  t.notOk(fs.existsSync(path.join(dir, 'remote', 'nope.bin')), 'nothing was uploaded');
  t.notOk(fs.existsSync(path.join(dir, 'remote', 'z')), 'no directory was made');
  t.ok(fs.existsSync(path.join(dir, 'remote', 'keep.txt')), 'nothing was removed or renamed');
  t.equal(fs.readFileSync(path.join(dir, 'local', 'again.txt'), 'utf8'), 'read me\n', 'downloads still work');
  t.same(
    [...new Set(ro.ops.filter((x) => x.refused).map((x) => (x.op.type === 'extended' ? x.op.name : x.op.type)))].sort(),
    ['mkdir', 'open', 'posix-rename@openssh.com', 'remove'].filter((k) => ro.ops.some((x) => x.refused && (x.op.type === k || (x.op.type === 'extended' && x.op.name === k)))).sort(),
  );
  t.ok(ro.ops.some((x) => x.refused && x.op.type === 'open'), 'the upload was refused at OPEN');
});
