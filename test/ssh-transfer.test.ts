// File transfer through Sluice with OpenSSH's own clients: scp of 200 MB
// byte-identical both ways (the sftp protocol, as scp uses in OpenSSH 9, and
// legacy scp with -O), sftp ls/get/put, and every file operation in the audit.
import t from 'tap';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startSluice } from './helpers/sluice.js';
import { run, sshTarget, startSshd } from './helpers/sshd.js';

const sshd = await startSshd(t);
const gw = await startSluice(t, { ssh: true, tls: false, config: { targets: { web01: sshTarget(sshd) } } });
const port = String(gw.sshPort);
const token = await gw.mint('alice', ['ci']);
const dir = fs.mkdtempSync(path.join(sshd.dir, 'files-'));

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

t.test('scp: 200 MB byte-identical both ways', async (t) => {
  const src = path.join(dir, 'big.bin');
  execFileSync('sh', ['-c', `head -c 200M /dev/urandom > ${src}`]);
  const want = sha(src);
  const up = await run('scp', token, ['-P', port, src, `web01@127.0.0.1:${dir}/up.bin`], { timeoutMs: 120_000 });
  t.equal(up.code, 0, up.stderr);
  t.equal(sha(`${dir}/up.bin`), want, `upload identical (${up.ms} ms)`);
  const down = await run('scp', token, ['-P', port, `web01@127.0.0.1:${dir}/up.bin`, `${dir}/down.bin`], { timeoutMs: 120_000 });
  t.equal(down.code, 0, down.stderr);
  t.equal(sha(`${dir}/down.bin`), want, `download identical (${down.ms} ms)`);
  const closed = await gw.waitForLog((l) => l.event === 'sftp.op' && l.op === 'close' && l.path === `${dir}/up.bin` && l.bytes_written === 200 * 1024 * 1024);
  t.equal(closed.sub, 'alice', 'the upload is in the audit with its size');
  await gw.waitForLog((l) => l.event === 'sftp.op' && l.op === 'close' && l.path === `${dir}/up.bin` && l.bytes_read === 200 * 1024 * 1024);
  for (const f of ['big.bin', 'up.bin', 'down.bin']) fs.rmSync(path.join(dir, f));
});

t.test('legacy scp (-O: scp -t / scp -f over exec)', async (t) => {
  const src = path.join(dir, 'legacy.txt');
  fs.writeFileSync(src, 'legacy scp\n'.repeat(1000));
  const up = await run('scp', token, ['-O', '-P', port, src, `web01@127.0.0.1:${dir}/legacy-up.txt`]);
  t.equal(up.code, 0, up.stderr);
  t.equal(sha(`${dir}/legacy-up.txt`), sha(src));
  const down = await run('scp', token, ['-O', '-P', port, `web01@127.0.0.1:${dir}/legacy-up.txt`, `${dir}/legacy-down.txt`]);
  t.equal(down.code, 0, down.stderr);
  t.equal(sha(`${dir}/legacy-down.txt`), sha(src));
});

t.test('sftp: ls, get, put, and the file operations in the log', async (t) => {
  fs.writeFileSync(path.join(dir, 'remote.txt'), 'remote file\n');
  const local = path.join(dir, 'local.txt');
  fs.writeFileSync(local, 'local file\n');
  const batch = [`cd ${dir}`, 'ls -1', `get remote.txt ${dir}/got.txt`, `put ${local} put.txt`, 'rename put.txt moved.txt', 'mkdir sub', 'rmdir sub', 'rm moved.txt'].join('\n');
  const r = await run('sftp', token, ['-o', 'BatchMode=no', '-P', port, '-b', '-', 'web01@127.0.0.1'], { input: batch + '\n' });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout.toString(), /remote\.txt/);
  t.equal(fs.readFileSync(path.join(dir, 'got.txt'), 'utf8'), 'remote file\n');
  t.notOk(fs.existsSync(path.join(dir, 'moved.txt')), 'rename and rm ran');
  const audited = (op: string, file: string) => gw.waitForLog((l) => l.event === 'sftp.op' && l.op === op && String(l.path).endsWith(file) && l.allowed === true);
  await audited('opendir', dir);
  await audited('open', 'remote.txt');
  await audited('open', 'put.txt');
  const rename = await audited('extended', 'put.txt');
  t.equal(rename.name, 'posix-rename@openssh.com');
  t.match(rename.new_path, /moved\.txt$/);
  await audited('mkdir', 'sub');
  await audited('rmdir', 'sub');
  await audited('remove', 'moved.txt');
  const up = await audited('close', 'put.txt');
  t.equal(up.bytes_written, 11);
  t.pass('every operation was audited');
});
