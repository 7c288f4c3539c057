// What every listener shares: starting to listen, and telling a loopback client from a remote one.
import type net from 'node:net';

/** Listens on host:port (0: any free port); resolves with the bound address, rejects with the listen error. */
export function listenOn(server: net.Server, port: number, host: string): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

/** A client address on this machine (127.0.0.0/8, ::1, IPv4-mapped 127.x): tokens may cross plain TCP from it. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
