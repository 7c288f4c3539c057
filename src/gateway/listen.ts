// Starts a server listening and waits until it does (or fails: EADDRINUSE, EACCES).
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
