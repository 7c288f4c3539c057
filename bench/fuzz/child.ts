// Child processes of the fuzz harness (run.ts), so that no CPU-bound work shares an event loop
// with a client whose latency or timeouts are measured:
// - the in-process tier of one protocol (CPU-bound codec calls; progress, counts and findings come back over IPC);
// - each protocol's bystander (it measures its own latencies, in a process that does nothing else).
// The same file is the parent-side API (inProcessInChild, bystanderInChild) and, when run as a
// forked process, the child's entry (see the bottom).
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROTOCOLS } from './protocols.js';
import type { Bystander, Counts, Ctx, Finding, FuzzProtocol } from './types.js';
import type { Sluice } from '../../test/helpers/sluice.js';

const SELF = fileURLToPath(import.meta.url);

type ToChild =
  | { kind: 'inproc'; protocol: string; seed: number; cases: number; from: number; fuzzToken: string; corpus: unknown }
  | { kind: 'bystander'; protocol: string; seed: number; gw: Pick<Sluice, 'host' | 'port' | 'sshPort' | 'ca'>; bystanderToken: string }
  | { kind: 'stop' };
type FromChild =
  | { kind: 'progress'; done: number }
  | { kind: 'finding'; finding: Finding }
  | { kind: 'done'; counts: Counts }
  | { kind: 'stats'; ok: number; failed: number; latencies: number[]; errors: string[]; final: boolean }
  | { kind: 'log'; line: string }
  | { kind: 'fatal'; error: string };

function spawnChild(): ChildProcess {
  // process.execArgv carries `--import tsx`; 'advanced' serialization keeps Buffers and typed arrays.
  return fork(SELF, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** Runs `p.inProcess` in a child process; findings land in ctx.findings as they come. */
export function inProcessInChild(p: FuzzProtocol, ctx: Ctx, cases: number, onProgress: (done: number) => void): Promise<Counts> {
  return new Promise((resolve, reject) => {
    const child = spawnChild();
    let counts: Counts | null = null;
    child.on('message', (m: FromChild) => {
      if (m.kind === 'progress') onProgress(m.done);
      else if (m.kind === 'finding') ctx.findings.push(m.finding);
      else if (m.kind === 'log') ctx.log(m.line);
      else if (m.kind === 'fatal') reject(new Error(`${p.name} in-process child: ${m.error}`));
      else if (m.kind === 'done') (counts = m.counts), child.disconnect();
    });
    child.on('exit', (code, signal) => {
      if (counts) resolve(counts);
      else reject(new Error(`${p.name} in-process child exited (code ${code}, signal ${signal}) before it finished`));
    });
    const msg: ToChild = { kind: 'inproc', protocol: p.name, seed: ctx.seed, cases, from: 0, fuzzToken: ctx.fuzzToken, corpus: p.exportCorpus?.() };
    child.send(msg);
  });
}

/** Starts `p.bystander` in a child process; the returned object's figures follow the child's (updated every second). */
export function bystanderInChild(p: FuzzProtocol, ctx: Ctx): Bystander {
  const child = spawnChild();
  let finalSeen: () => void = () => {};
  const final = new Promise<void>((r) => (finalSeen = r));
  const st: Bystander = {
    name: p.name,
    ok: 0,
    failed: 0,
    latencies: [],
    errors: [],
    async stop() {
      if (child.connected) child.send({ kind: 'stop' } satisfies ToChild);
      await Promise.race([final, new Promise((r) => child.once('exit', r))]);
      if (child.connected) child.disconnect();
    },
  };
  child.on('message', (m: FromChild & { name?: string }) => {
    if (m.kind === 'stats') {
      if (m.name) st.name = m.name;
      st.ok = m.ok;
      st.failed = m.failed;
      st.latencies.push(...m.latencies);
      st.errors.push(...m.errors);
      if (m.final) finalSeen();
    } else if (m.kind === 'log') ctx.log(m.line);
    else if (m.kind === 'fatal') {
      st.failed++;
      st.errors.push(`${new Date().toISOString()} bystander process: ${m.error}`);
    }
  });
  child.on('exit', (code, signal) => {
    if (code !== 0) {
      st.failed++;
      st.errors.push(`${new Date().toISOString()} bystander process exited (code ${code}, signal ${signal})`);
    }
    finalSeen();
  });
  child.send({ kind: 'bystander', protocol: p.name, seed: ctx.seed, gw: { host: ctx.gw.host, port: ctx.gw.port, sshPort: ctx.gw.sshPort, ca: ctx.gw.ca }, bystanderToken: ctx.bystanderToken } satisfies ToChild);
  return st;
}

// ---------------------------------------------------------------- the child's side

function send(m: FromChild & { name?: string }): Promise<void> {
  return new Promise((resolve) => (process.connected ? process.send!(m, undefined, {}, () => resolve()) : resolve()));
}

async function childMain(m: ToChild): Promise<void> {
  if (m.kind === 'stop') return;
  const p = PROTOCOLS.find((x) => x.name === m.protocol);
  if (!p) throw new Error(`unknown protocol ${m.protocol}`);
  const log = (line: string) => send({ kind: 'log', line });
  if (m.kind === 'inproc') {
    if (m.corpus !== undefined) p.importCorpus?.(m.corpus);
    const findings: Finding[] = [];
    // A finding is reported as soon as it is pushed.
    findings.push = (...fs: Finding[]) => {
      for (const f of fs) send({ kind: 'finding', finding: f });
      return 0;
    };
    process.on('unhandledRejection', (e) => send({ kind: 'finding', finding: { protocol: p.name, stream: 'unhandledRejection', case: -1, error: String((e as Error)?.stack ?? e) } }));
    process.on('uncaughtException', (e) => send({ kind: 'finding', finding: { protocol: p.name, stream: 'uncaughtException', case: -1, error: String(e?.stack ?? e) } }));
    const ctx = { seed: m.seed, fuzzToken: m.fuzzToken, findings, log } as unknown as Ctx;
    let last = 0;
    const counts = await p.inProcess(ctx, m.cases, (done) => {
      if (Date.now() - last > 1000) (last = Date.now()), send({ kind: 'progress', done });
    }, m.from);
    await send({ kind: 'done', counts });
    return;
  }
  const ctx = { seed: m.seed, gw: m.gw as Sluice, bystanderToken: m.bystanderToken, log } as unknown as Ctx;
  const st = p.bystander(ctx);
  let sentLat = 0;
  let sentErr = 0;
  const report = (final: boolean) => {
    const sent = send({ kind: 'stats', name: st.name, ok: st.ok, failed: st.failed, latencies: st.latencies.slice(sentLat), errors: st.errors.slice(sentErr), final });
    sentLat = st.latencies.length;
    sentErr = st.errors.length;
    return sent;
  };
  const timer = setInterval(() => report(false), 1000);
  await new Promise<void>((r) => process.on('message', (x: ToChild) => x.kind === 'stop' && r()));
  await st.stop();
  clearInterval(timer);
  await report(true);
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF && process.send) {
  process.once('message', (m: ToChild) => {
    childMain(m).then(
      () => process.exit(0),
      async (e) => {
        await send({ kind: 'fatal', error: String((e as Error)?.stack ?? e) });
        process.exit(1);
      },
    );
  });
}
