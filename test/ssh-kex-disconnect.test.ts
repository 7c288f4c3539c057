// A client whose key exchange stalls after the gateway sent its NEWKEYS (a starved client: its
// NEWKEYS comes late) while limits.startup_timeout runs out. ssh2 switches the gateway's outbound
// cipher only once the client's NEWKEYS arrives, so a DISCONNECT written in that window goes out
// in clear text after NEWKEYS; the client, already decrypting with the new keys, read its
// length (92) as garbage: "Bad packet length: 92" (seen by the fuzz harness's ssh bystander).
// The gateway must close such a connection without writing anything the client cannot read.
import t from 'tap';
import net from 'node:net';
import ssh2 from 'ssh2';
import { startSluice } from './helpers/sluice.js';
import { sshTarget, startSshd } from './helpers/sshd.js';

const sshd = await startSshd(t);
const gw = await startSluice(t, { ssh: true, tls: false, config: { targets: { web01: sshTarget(sshd) }, limits: { auth_timeout: '10s', startup_timeout: '1s' } } });

/**
 * A loopback proxy to the gateway's SSH port that passes everything, except that it holds back
 * the client's NEWKEYS (and whatever follows it) for `holdMs`.
 */
async function stallingProxy(holdMs: number): Promise<{ port: number; held: Promise<void>; close(): void }> {
  let heldResolve: () => void = () => {};
  const held = new Promise<void>((r) => (heldResolve = r));
  const socks: net.Socket[] = [];
  const srv = net.createServer((c) => {
    const up = net.connect({ host: '127.0.0.1', port: gw.sshPort! });
    socks.push(c, up);
    c.on('error', () => {});
    up.on('error', () => {});
    up.on('data', (d) => c.write(d));
    up.on('close', () => c.destroy());
    c.on('close', () => up.destroy());
    let buf = Buffer.alloc(0);
    let identDone = false;
    let holding = false;
    c.on('data', (d: Buffer) => {
      if (holding) return void (buf = Buffer.concat([buf, d]));
      buf = Buffer.concat([buf, d]);
      if (!identDone) {
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        up.write(buf.subarray(0, nl + 1));
        buf = buf.subarray(nl + 1);
        identDone = true;
      }
      // Clear-text packets until the client's NEWKEYS (message 21).
      while (buf.length >= 6) {
        const len = buf.readUInt32BE(0);
        if (buf.length < 4 + len) return;
        if (buf[5] === 21) {
          holding = true;
          heldResolve();
          setTimeout(() => !up.destroyed && up.write(buf), holdMs);
          return;
        }
        up.write(buf.subarray(0, 4 + len));
        buf = buf.subarray(4 + len);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, held, close: () => (srv.close(), socks.forEach((s) => s.destroy())) };
}

t.test('startup_timeout between the NEWKEYS of both sides: the client reads no garbage', async (t) => {
  const proxy = await stallingProxy(3000);
  t.teardown(() => proxy.close());
  const c = new ssh2.Client();
  const errors: string[] = [];
  const ended = new Promise<void>((resolve) => {
    c.on('error', (e) => errors.push(e.message));
    c.on('close', () => resolve());
  });
  c.connect({ host: '127.0.0.1', port: proxy.port, username: 'web01', password: 'x', hostVerifier: () => true, readyTimeout: 20_000 });
  await proxy.held;
  const t0 = Date.now();
  await ended;
  t.ok(Date.now() - t0 < 10_000, 'the connection was closed');
  t.notOk(errors.some((e) => /Bad packet length/.test(e)), `no clear-text packet after NEWKEYS (client errors: ${JSON.stringify(errors)})`);
  const line = await gw.waitForLog((l) => l.event === 'connection.timeout' && l.reason === 'startup_timeout', 5000);
  t.ok(line, 'the timeout is logged');
});
