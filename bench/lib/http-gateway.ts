// Sluice in front of an HTTP upstream for bench/http.ts: a generated
// sluice.yaml with only `listeners.http` and one `protocol: http` target, the
// real `sluice serve` (bin/sluice.js, its shebang's V8 flags) logging to a
// file, the bound port read from its `listener.start` line, and a token from
// `sluice token mint`. test/helpers/sluice.ts always adds a Postgres listener
// and waits for it, hence this separate starter.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { BIN } from '../../test/helpers/sluice.js';
import type { Bench } from './paths.js';

const run = promisify(execFile);

/** The governed variant's HTTP policy: what a CI identity may do (read anything). */
export const HTTP_POLICIES = [{ name: 'bench-http', match: { groups: ['ci'] }, rules: [{ allow: { methods: ['GET'], paths: ['/**'] } }] }];

/** The governed variant's masking: detectors on every JSON string, plus one field rule (JSON path). */
export const HTTP_MASKING = [
  {
    name: 'pii-http',
    match: { groups: ['ci'] },
    detectors: [
      { name: 'email', strategy: 'partial' },
      { name: 'credit_card', strategy: 'partial' },
    ],
    fields: [{ path: '$.customers[*].ssn', strategy: 'redact' }],
  },
];

/** Sluice variants for HTTP, config keys merged over the generated config. */
export const HTTP_VARIANTS: Record<string, Record<string, unknown>> = {
  sluice: { recording: { enabled: false } },
  'sluice+all': { policies: HTTP_POLICIES, masking: HTTP_MASKING }, // recording on: the default
};

export interface HttpGateway {
  name: string;
  port: number;
  pid: number;
  token: string;
  configPath: string;
  stop(): Promise<void>;
}

/** Starts the variant in front of http://127.0.0.1:<upstreamPort>; `{ skip }` with the loader's words when the config is refused. */
export async function startHttpGateway(b: Bench, upstreamPort: number, variant: string): Promise<HttpGateway | { skip: string }> {
  const extra = HTTP_VARIANTS[variant];
  if (!extra) throw new Error(`unknown HTTP variant ${variant}; known: ${Object.keys(HTTP_VARIANTS).join(', ')}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-http-gw-'));
  const logFile = path.join(dir, 'sluice.log');
  const configPath = path.join(dir, 'sluice.yaml');
  const config = {
    state_dir: path.join(dir, 'state'),
    listeners: { http: { host: '127.0.0.1', port: 0 } }, // plain HTTP from loopback is allowed
    targets: { web: { protocol: 'http', url: `http://127.0.0.1:${upstreamPort}`, allow: ['*'] } },
    log: { level: 'info', file: logFile },
    // wrk opens all its connections at once, before any has authenticated.
    limits: { max_unauthenticated_per_source: 512 },
    ...extra,
  };
  fs.writeFileSync(configPath, stringify(config));
  const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });

  // The HTTP module may not be in this build: ask the config loader first, and skip with its answer.
  try {
    await run(process.execPath, [BIN, 'config', 'check', '--config', configPath]);
  } catch (e) {
    removeDir();
    const err = e as { stderr?: string; stdout?: string; message: string };
    const why = (err.stderr || err.stdout || err.message).replaceAll(`${configPath}: `, '').trim().split('\n').slice(0, 6).join(' | ');
    const http = /listeners\.http|"http"|protocol/.test(why) ? 'this build does not accept listeners.http / protocol: http yet' : 'the config loader refused the config';
    return { skip: `${variant}: skipped: ${http} (${why})` };
  }

  // As test/helpers/sluice.ts: SLUICE_CPU_PROF=<dir> runs it under --cpu-prof, SLUICE_NODE_FLAGS adds Node flags,
  // both with the shebang's V8 flags; otherwise the bin itself runs.
  const prof = process.env.SLUICE_CPU_PROF;
  const nodeFlags = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), ...(process.env.SLUICE_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [])];
  const shebang = fs.readFileSync(BIN, 'utf8').split('\n', 1)[0]!.split(/\s+/).filter((w) => w.startsWith('--'));
  const [cmd, argv] = nodeFlags.length ? [process.execPath, [...shebang, ...nodeFlags, BIN, 'serve', '--config', configPath]] : [BIN, ['serve', '--config', configPath]];
  const proc = spawn(cmd, argv, { env: process.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c) => (stderr += c));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    removeDir();
  };
  b.teardown(stop);

  let port = 0;
  for (let i = 0; i < 200 && !port; i++) {
    if (proc.exitCode !== null) break;
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (!line.includes('"listener.start"')) continue;
      const j = JSON.parse(line) as { protocol?: string; port?: number };
      if (j.protocol === 'http' && j.port) port = j.port;
    }
    if (!port) await new Promise((r) => setTimeout(r, 100));
  }
  if (!port) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : '';
    await stop();
    throw new Error(`${variant}: sluice did not start an http listener (exit ${proc.exitCode}):\n${stderr.slice(-2000)}${log}`);
  }
  const { stdout } = await run(process.execPath, [BIN, 'token', 'mint', '--config', configPath, '--sub', 'bench', '--groups', 'ci', '--ttl', '2h']);
  return { name: variant, port, pid: proc.pid!, token: stdout.trim(), configPath, stop };
}
