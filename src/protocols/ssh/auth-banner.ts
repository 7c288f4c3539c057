// Telling an SSH client WHY its login failed. SSH has no error text in a
// USERAUTH_FAILURE; the standard way to show text during authentication is a
// USERAUTH_BANNER (RFC 4252 §5.4), which OpenSSH prints to stderr. ssh2's
// Server only sends a banner configured up front, so this writes one through
// ssh2's packet writer (internal API of ssh2 1.x: if it is missing, nothing is
// sent and the reason is still logged).

import ssh2 from 'ssh2';
import { createRequire } from 'node:module';

const USERAUTH_BANNER = 53;

type Proto = {
  _packetRW?: { write: { allocStart: number; alloc(n: number): Buffer; finalize(b: Buffer): Buffer } };
};

let sendPacket: ((proto: unknown, packet: Buffer) => void) | null | undefined;

function loadSendPacket(): typeof sendPacket {
  if (sendPacket !== undefined) return sendPacket;
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve('ssh2');
    const utils = require(main.replace(/lib[\\/]index\.js$/, 'lib/protocol/utils.js')) as { sendPacket?: (p: unknown, b: Buffer) => void };
    sendPacket = typeof utils.sendPacket === 'function' ? utils.sendPacket : null;
  } catch {
    sendPacket = null;
  }
  return sendPacket;
}

/** Sends `text` as a userauth banner on a server connection that is still authenticating. */
export function sendAuthBanner(conn: ssh2.Connection, text: string): boolean {
  const proto = (conn as unknown as { _protocol?: Proto })._protocol;
  const send = loadSendPacket();
  const rw = proto?._packetRW?.write;
  if (!send || !rw) return false;
  const msg = text.endsWith('\r\n') ? text : `${text.replace(/\n/g, '\r\n')}\r\n`;
  const len = Buffer.byteLength(msg);
  try {
    let p = rw.allocStart;
    const packet = rw.alloc(1 + 4 + len + 4);
    packet[p] = USERAUTH_BANNER;
    packet.writeUInt32BE(len, ++p);
    packet.write(msg, (p += 4), len, 'utf8');
    packet.writeUInt32BE(0, p + len); // language tag: empty
    send(proto, rw.finalize(packet));
    return true;
  } catch {
    return false;
  }
}
