// Resolving `{ env } | { file } | { command }` secret references.
// Nothing is cached (credentials rotate; callers decide), and no error
// message ever contains the secret value, nor any output of a command: a
// failing `vault read` may well print the secret (or a token) on stderr.

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { SecretRef } from './types.js';

export interface ResolveSecretOptions {
  /** Where the reference came from, for messages, e.g. "targets.orders.password". */
  label?: string;
  /** Limit for `command` secrets; default 10 s. */
  timeoutMs?: number;
}

const trimNewline = (s: string) => s.replace(/\r?\n$/, '');

/** Resolve a secret reference. Relative `file` paths are taken from `baseDir` (the config's directory). */
export async function resolveSecret(ref: SecretRef, baseDir: string, opts: ResolveSecretOptions = {}): Promise<string> {
  const label = opts.label ?? 'secret';
  let value: string;
  if ('env' in ref) {
    const v = process.env[ref.env];
    if (v === undefined) throw new Error(`environment variable ${ref.env} is not set (${label})`);
    value = v;
  } else if ('file' in ref) {
    const file = resolve(baseDir, ref.file);
    try {
      value = trimNewline(await readFile(file, 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`cannot read secret file ${file} (${label}): ${code ?? 'read failed'}`);
    }
  } else if ('command' in ref) {
    value = await runCommand(ref.command, baseDir, label, opts.timeoutMs ?? 10_000);
  } else {
    throw new Error(`invalid secret reference (${label}): expected one of env, file or command`);
  }
  if (value === '') throw new Error(`secret is empty (${label})`);
  return value;
}

function runCommand(command: string, cwd: string, label: string, timeoutMs: number): Promise<string> {
  return new Promise((done, fail) => {
    // Own process group, so a timeout can kill the whole pipeline, not just sh.
    // stderr is read and dropped, never kept: it may carry the secret.
    const child = spawn('/bin/sh', ['-c', command], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let settled = false;
    const finish = (e: Error | null, v = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e) fail(e);
      else done(v);
    };
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      finish(new Error(`secret command timed out after ${timeoutMs} ms (${label})`));
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.resume();
    child.on('error', (e) => finish(new Error(`cannot run secret command (${label}): ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return finish(null, trimNewline(Buffer.concat(out).toString('utf8')));
      out.length = 0;
      const how = code === null ? `was killed by signal ${signal}` : `exited with code ${code}`;
      const hint = code === 127 ? ' (command not found?)' : code === 126 ? ' (not executable?)' : '';
      finish(new Error(`secret command ${how}${hint} (${label}); its output is not shown because it may contain the secret: run the command by hand, as the gateway's user, to see why`));
    });
  });
}
