// Random secrets kept in state_dir/keys (e.g. the masking HMAC key): created once,
// mode 0600, never logged. Two processes racing on creation end up with one file.
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
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
