// Investigation aid (issue: ssh bystander "Bad packet length: 92"): an ssh2 client whose event loop
// is blocked (3 s) at a chosen point of the key exchange or login, e.g.
//   node --import tsx bench/fuzz/repro-kex-stall.ts "Sending NEWKEYS" "Inbound: NEWKEYS"
// with startup_timeout 1 s and auth_timeout 2 s. test/ssh-kex-disconnect.test.ts is the deterministic form.
import ssh2 from 'ssh2';
import { startSluice } from '../../test/helpers/sluice.js';
import { sshTarget, startSshd } from '../../test/helpers/sshd.js';
const teardowns: (() => unknown)[] = [];
const t = { teardown: (f: () => unknown) => teardowns.push(f) };
const sshd = await startSshd(t as never);
const gw = await startSluice(t as never, { ssh: true, tls: false, config: { targets: { web01: sshTarget(sshd) }, limits: { auth_timeout: '2s', startup_timeout: '1s' } } });
const points = process.argv.slice(2);
for (const point of points) {
  const res = await new Promise<string>((resolve) => {
    const c = new ssh2.Client();
    let blocked = false;
    c.on('error', (e) => resolve(`error: ${e.message} (level ${(e as any).level})`));
    c.on('close', () => resolve('closed without error'));
    c.on('ready', () => resolve('ready?!'));
    c.connect({
      host: '127.0.0.1', port: gw.sshPort!, username: 'web01', password: 'x',
      hostVerifier: () => true, readyTimeout: 20000,
      debug: (m: string) => {
        if (process.env.SHOW) console.log('  ', m);
        if (!blocked && m.includes(point)) { blocked = true; const e = Date.now() + 3000; while (Date.now() < e); }
      },
    } as never);
  });
  console.log(`blocked 3 s at "${point}": ${res}`);
}
console.log('gateway log:', JSON.stringify(gw.logs().filter((l) => l.event === 'connection.timeout').map((l) => l.reason)));
for (const f of teardowns.reverse()) await f();
process.exit(0);
