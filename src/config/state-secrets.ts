// Random secrets kept in state_dir/keys (e.g. the masking HMAC key): created once,
// mode 0600 in a 0700 directory, never logged. Two processes racing on creation end up with one file.
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';

export async function loadOrCreateSecret(stateDir: string, name: string, bytes = 32): Promise<Buffer> {
  const dir = join(stateDir, 'keys');
  const file = join(dir, name);
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, randomBytes(bytes), { mode: 0o600 });
  try {
    await link(tmp, file); // fails if another process created it first
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
  return readFile(file);
}

/**
 * Refuses key material that others could read or replace: `state_dir/keys` must be a directory
 * and every file in it (signing key, masking key, recording key, SSH host key; `*.pub` files are
 * public and skipped) must be owned by the gateway's user and closed to group and others
 * (anyone who can read the signing key can mint admin tokens). `extra` adds key files kept
 * elsewhere (listeners.ssh.host_key); missing ones are left to their loaders. Throws one error
 * listing every problem and the exact commands that fix them.
 */
export async function checkKeyPermissions(stateDir: string, extra: string[] = []): Promise<void> {
  if (typeof process.getuid !== 'function') return; // no POSIX ownership (Windows)
  const uid = process.getuid();
  const dir = join(stateDir, 'keys');
  const problems: string[] = [];
  const chmods: string[] = [];
  const chowns: string[] = [];
  const check = (path: string, st: Stats, want: number) => {
    if (st.uid !== uid) {
      problems.push(`${path} is owned by uid ${st.uid}, not by the user the gateway runs as (uid ${uid})`);
      chowns.push(shellQuote(path));
    }
    if ((st.mode & 0o077) !== 0) {
      problems.push(`${path} is open to its group or others (mode ${octal(st.mode)}; it must be ${octal(want)})`);
      chmods.push(`chmod ${octal(want)} ${shellQuote(path)}`);
    }
  };
  const dirStat = await statIfExists(dir);
  if (dirStat) {
    if (!dirStat.isDirectory()) problems.push(`${dir} is not a directory`);
    else {
      check(dir, dirStat, 0o700);
      for (const name of (await readdir(dir)).sort()) {
        if (name.endsWith('.pub')) continue;
        const file = join(dir, name);
        const st = await statIfExists(file);
        if (st?.isFile()) check(file, st, 0o600);
      }
    }
  }
  for (const file of extra) {
    const st = await statIfExists(file);
    if (st?.isFile()) check(file, st, 0o600);
  }
  if (problems.length === 0) return;
  let user = String(uid);
  try {
    user = userInfo().username;
  } catch {
    // numeric uid it is
  }
  const fixes = [...(chowns.length ? [`chown ${user} ${chowns.join(' ')}`] : []), ...chmods];
  throw new Error(
    `refusing to start: key files are not private (whoever can read the signing key can mint admin tokens; whoever can write it can replace it):\n` +
      problems.map((p) => `  ${p}\n`).join('') +
      `Fix with: ${fixes.join(' && ')}`,
  );
}

async function statIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
const shellQuote = (s: string) => (/^[A-Za-z0-9_./@%+=:,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
