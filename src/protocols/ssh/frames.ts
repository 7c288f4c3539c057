// How an SSH session is recorded in the frame store.
//
// One Sluice session is one client SSH connection; it carries many channels.
// Data frames (Dir.ClientToGateway / Dir.GatewayToClient) start with a 3-byte
// tag, then the bytes exactly as they crossed the channel (after masking, for
// output the client received):
//
//   [0]    stream: 0 stdin (client → target), 1 stdout, 2 stderr (target → client)
//   [1..2] channel number (u16 BE), Sluice's own per-session count from 0
//
// Everything else is a JSON event (Dir.Event) with `event` and `channel`:
//   ssh.channel   {type: session | direct-tcpip | forwarded-tcpip | x11 | auth-agent, …}
//   ssh.pty       {term, cols, rows}            ssh.resize {cols, rows}
//   ssh.env       {name}                        (values are not recorded)
//   ssh.exec      {command}   ssh.shell {}      ssh.subsystem {name}
//   ssh.line      {line, decision?}             a command line typed in a shell
//   ssh.signal    {name}
//   ssh.exit      {code} or {signal, core_dumped?, message?}
//   ssh.eof       {side: client | target}       ssh.close {}
//   sftp.op       {op, path?, …, write, allowed}
//   ssh.forward   {kind, …, allowed}
//   ssh.denied    {what, message}

import { Dir } from '../../recording/types.js';
import type { SessionRecorder } from '../../recording/store.js';

export const enum Stream {
  Stdin = 0,
  Stdout = 1,
  Stderr = 2,
}

export const TAG_BYTES = 3;

// record() copies its payload before returning, so one scratch buffer serves every
// frame of the process: the tag and the data are assembled there, nothing is allocated.
let scratch = Buffer.allocUnsafe(64 * 1024);

/** Records one chunk of channel data with its tag. */
export function recordData(rec: SessionRecorder, stream: Stream, channel: number, data: Buffer): void {
  const n = TAG_BYTES + data.length;
  if (n > scratch.length) scratch = Buffer.allocUnsafe(Math.max(n, scratch.length * 2));
  scratch[0] = stream;
  scratch.writeUInt16BE(channel & 0xffff, 1);
  data.copy(scratch, TAG_BYTES);
  rec.record(stream === Stream.Stdin ? Dir.ClientToGateway : Dir.GatewayToClient, scratch, 0, n);
}

export interface DataFrame {
  stream: Stream;
  channel: number;
  data: Buffer;
}

export function decodeData(payload: Buffer): DataFrame | null {
  if (payload.length < TAG_BYTES || payload[0]! > 2) return null;
  return { stream: payload[0] as Stream, channel: payload.readUInt16BE(1), data: payload.subarray(TAG_BYTES) };
}
