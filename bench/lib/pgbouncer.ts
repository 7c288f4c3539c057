// pgbouncer in session mode in front of the throwaway cluster, plain auth for
// user `app`: the reference every Sluice figure is compared with. Debian's
// package (run.sh installs it when missing); null when it is not installed.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../test/helpers/ports.js';
import { TARGET_PASSWORD } from '../../test/helpers/sluice.js';

const run = promisify(execFile);

export interface Pgbouncer {
  port: number;
  pid: number;
  stop(): void;
}

export async function startPgbouncer(target: { host: string; port: number }): Promise<Pgbouncer | null> {
  const bin = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((b) => fs.existsSync(b));
  if (!bin) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pgb-'));
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `"app" "${TARGET_PASSWORD}"\n`);
  fs.writeFileSync(
    ini,
    `[databases]\norders = host=${target.host} port=${target.port} dbname=orders\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${port}\n` +
      `auth_type = plain\nauth_file = ${dir}/userlist.txt\npool_mode = session\nmax_client_conn = 2000\ndefault_pool_size = 100\n` +
      `unix_socket_dir =\nlogfile = ${dir}/pgbouncer.log\nserver_tls_sslmode = disable\n`,
  );
  // pgbouncer refuses to run as root: then it runs as `postgres`, like the cluster.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) fs.chmodSync(path.join(dir, f), f ? 0o644 : 0o777);
  const [cmd, args] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ini]] : [bin, [ini]];
  const proc = spawn(cmd, args, { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      const { stdout } = await run('pgrep', ['-n', '-f', `pgbouncer ${ini}`]);
      const pid = Number(stdout.trim());
      if (pid) {
        await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]).catch(() => {});
        return {
          port,
          pid,
          stop: () => {
            try {
              process.kill(pid, 'SIGTERM');
            } catch {
              /* gone */
            }
            proc.kill();
            fs.rmSync(dir, { recursive: true, force: true });
          },
        };
      }
    } catch {
      /* not up yet */
    }
  }
  proc.kill();
  return null;
}
