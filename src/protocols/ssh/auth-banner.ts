// Telling an SSH client WHY its login failed. SSH has no error text in a
// USERAUTH_FAILURE; the standard way to show text during authentication is a
// USERAUTH_BANNER (RFC 4252 §5.4), which OpenSSH prints to stderr. ssh2's
// Server only sends a banner configured up front, so this writes one through
// ssh2's packet writer (internal API of ssh2 1.x: if it is missing, nothing is
// sent and the reason is still logged).

import ssh2 from 'ssh2';
import { createRequire } from 'node:module';

const USERAUTH_BANNER = 53;
const DISCONNECT = 1;
/** SSH_DISCONNECT_TOO_MANY_CONNECTIONS (RFC 4253 §11.1). */
export const DISCONNECT_TOO_MANY_CONNECTIONS = 12;
/** SSH_DISCONNECT_BY_APPLICATION. */
export const DISCONNECT_BY_APPLICATION = 11;

type Proto = {
  _packetRW?: {
    write: { allocStart: number; allocStartKEX: number; alloc(n: number, force?: boolean): Buffer; finalize(b: Buffer, force?: boolean): Buffer };
  };
};

let sendPacket: ((proto: unknown, packet: Buffer, bypass?: boolean) => void) | null | undefined;

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

/**
 * Sends SSH_MSG_DISCONNECT with `text` as its description (ssh2's own
 * disconnect sends none), at any point of the connection, also during key
 * exchange (as ssh2's disconnect does). OpenSSH prints the description:
 * "Received disconnect from …: 12: <text>". False when it could not be sent.
 */
export function sendDisconnect(conn: ssh2.Connection, reason: number, text: string): boolean {
  const proto = (conn as unknown as { _protocol?: Proto })._protocol;
  const send = loadSendPacket();
  const rw = proto?._packetRW?.write;
  if (!send || !rw) return false;
  const len = Buffer.byteLength(text);
  try {
    let p = rw.allocStartKEX;
    const packet = rw.alloc(1 + 4 + 4 + len + 4, true);
    packet[p] = DISCONNECT;
    packet.writeUInt32BE(reason, ++p);
    packet.writeUInt32BE(len, (p += 4));
    packet.write(text, (p += 4), len, 'utf8');
    packet.writeUInt32BE(0, p + len); // language tag: empty
    send(proto, rw.finalize(packet, true), true);
    return true;
  } catch {
    return false;
  }
}

/**
 * True while a key exchange is between our NEWKEYS and the client's. ssh2 1.x sends its NEWKEYS
 * but switches its outbound cipher only when the client's arrives (kex.js, completeHandshake), so a
 * packet written in between goes out under the old keys (in clear text in the first exchange),
 * after NEWKEYS: the client, which already decrypts with the new keys, reads garbage ("Bad packet
 * length"). Nothing can be sent then; internal API of ssh2 1.x (false when it is missing).
 */
export function awaitingPeerNewKeys(conn: ssh2.Connection, handshakes: number): boolean {
  const kex = (conn as unknown as { _protocol?: { _kex?: { _sentNEWKEYS?: boolean } } })._protocol?._kex;
  // _sentNEWKEYS stays true after the exchange completes: only a handshake that has not completed counts.
  return handshakes === 0 && kex?._sentNEWKEYS === true;
}

/**
 * What a server sends to refuse a connection before any SSH state exists: its
 * identification line, then an unencrypted SSH_MSG_DISCONNECT (valid before the
 * first key exchange), so the client shows `text` rather than a bare reset.
 */
export function refusalBytes(ident: string, reason: number, text: string): Buffer {
  return Buffer.concat([Buffer.from(`SSH-2.0-${ident}\r\n`), plainDisconnect(reason, text)]);
}

/** An unencrypted SSH_MSG_DISCONNECT packet (before the first key exchange completes). */
export function plainDisconnect(reason: number, text: string): Buffer {
  const desc = Buffer.from(text, 'utf8');
  const payload = Buffer.alloc(1 + 4 + 4 + desc.length + 4);
  payload[0] = DISCONNECT;
  payload.writeUInt32BE(reason, 1);
  payload.writeUInt32BE(desc.length, 5);
  desc.copy(payload, 9);
  // Language tag: empty (already zero).
  // packet_length | padding_length | payload | padding, a multiple of 8 with at least 4 bytes of padding.
  let pad = 8 - ((4 + 1 + payload.length) % 8);
  if (pad < 4) pad += 8;
  const pkt = Buffer.alloc(4 + 1 + payload.length + pad);
  pkt.writeUInt32BE(1 + payload.length + pad, 0);
  pkt[4] = pad;
  payload.copy(pkt, 5);
  return pkt;
}
