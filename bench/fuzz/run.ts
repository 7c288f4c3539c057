// `npm run fuzz`: feeds every listener's codec malformed, truncated and split input (issue #19),
// in two tiers per protocol: live (a real gateway process, real Postgres and sshd behind it,
// mutated bytes over many loopback sockets, before and after login) and in-process (the same
// codecs called directly, for volume). Bystander sessions must keep working throughout; the
// gateway must not exit, log nothing uncaught or unhandled, stay under a memory limit, and accept
// a fresh login at the end. Results: bench/results/fuzz.{md,json}. `--help` lists the knobs.
//
// A new protocol joins by adding its entry to PROTOCOLS in protocols.ts (see types.ts: FuzzProtocol).
// The in-process tier and each bystander run in child processes of their own (child.ts), so a
// CPU-bound tier never starves the bystanders' or the live clients' event loop.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { startSluice, TARGET_PASSWORD } from '../../test/helpers/sluice.js';
import { log, machine, machineLine, median, quantile, writeResult } from '../lib/env.js';
import { runBench } from '../lib/paths.js';
import { memory, type Mem } from '../lib/proc.js';
import { PROTOCOLS } from './protocols.js';
import { inProcessInChild, bystanderInChild } from './child.js';
import type { Bystander, Counts, Ctx, Finding, FuzzProtocol } from './types.js';

export { PROTOCOLS };

const HELP = `npm run fuzz [-- options]     (node --import tsx bench/fuzz/run.ts [options])

Feeds each listener's codecs mutated input (bit flips, truncation, length-field lies, split
chunks, duplicated, garbage and retyped messages, oversized fields) in two tiers: live, into a
real gateway process over loopback sockets, before and after login, while bystander sessions
run; and in-process, the codecs called directly. Every case counts toward --cases per protocol.

options (environment variable in brackets):
  --cases N          cases per protocol, both tiers together (FUZZ_CASES, default 1000000)
  --seed N           run seed; the same seed gives the same cases (FUZZ_SEED, default random)
  --protocols a,b    protocols to fuzz (FUZZ_PROTOCOLS, default ${PROTOCOLS.map((p) => p.name).join(',')})
  --live-seconds N   live tier duration per protocol (FUZZ_LIVE_SECONDS, default 120; 0: no live tier)
  --live-max N       at most N live cases per protocol (FUZZ_LIVE_MAX, default unlimited)
  --concurrency N    concurrent live connections per protocol (FUZZ_CONCURRENCY, default 32)
  --max-rss-mb N     fail when the gateway's VmRSS goes above this (FUZZ_MAX_RSS_MB, default 512)
  --replay P:N       run only in-process case N of protocol P with --seed (reproduces a finding)
  --help             this text

Results go to bench/results/fuzz.md and fuzz.json (BENCH_OUT moves them). Exit status 1 when any
check fails: the gateway exited, logged an uncaught/unhandled error, went above the memory limit,
a bystander failed, a fresh login failed, an in-process case threw an undocumented error, or fewer
cases ran than asked.`;

interface Opts {
  cases: number;
  seed: number;
  protocols: FuzzProtocol[];
  liveSeconds: number;
  liveMax: number;
  concurrency: number;
  maxRssMb: number;
  replay?: { protocol: FuzzProtocol; n: number };
}

function parseArgs(argv: string[]): Opts | null {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return null;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a} (see --help)`);
    const eq = a.indexOf('=');
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else flags.set(a.slice(2), argv[++i] ?? '');
  }
  const known = new Set(['cases', 'seed', 'protocols', 'live-seconds', 'live-max', 'concurrency', 'max-rss-mb', 'replay']);
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option --${k} (see --help)`);
  const val = (flag: string, env: string): string | undefined => flags.get(flag) ?? (process.env[env] || undefined);
  const num = (flag: string, env: string, dflt: number): number => {
    const v = val(flag, env);
    if (v === undefined) return dflt;
    const n = Number(v.replace(/_/g, ''));
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} ${v}: expected a non-negative number`);
    return n;
  };
  const names = (val('protocols', 'FUZZ_PROTOCOLS') ?? PROTOCOLS.map((p) => p.name).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  const protocols = names.map((n) => {
    const p = PROTOCOLS.find((x) => x.name === n);
    if (!p) throw new Error(`unknown protocol ${n}; known: ${PROTOCOLS.map((x) => x.name).join(', ')}`);
    return p;
  });
  const seed = num('seed', 'FUZZ_SEED', crypto.randomBytes(4).readUInt32BE(0) >>> 1) >>> 0;
  let replay: Opts['replay'];
  const r = val('replay', 'FUZZ_REPLAY');
  if (r) {
    const [p, n] = r.split(':');
    const proto = PROTOCOLS.find((x) => x.name === p);
    if (!proto || !Number.isInteger(Number(n))) throw new Error(`--replay ${r}: expected <protocol>:<case number>`);
    replay = { protocol: proto, n: Number(n) };
  }
  return {
    cases: num('cases', 'FUZZ_CASES', 1_000_000),
    seed,
    protocols,
    liveSeconds: num('live-seconds', 'FUZZ_LIVE_SECONDS', 120),
    liveMax: num('live-max', 'FUZZ_LIVE_MAX', Infinity),
    concurrency: Math.max(1, num('concurrency', 'FUZZ_CONCURRENCY', 32)),
    maxRssMb: num('max-rss-mb', 'FUZZ_MAX_RSS_MB', 512),
    replay,
  };
}

/** The harness's own memory (its live clients' buffers show here). */
const harnessMem = () => {
  const m = process.memoryUsage();
  return `rss ${Math.round(m.rss / 2 ** 20)} MB, heap ${Math.round(m.heapUsed / 2 ** 20)} MB, buffers ${Math.round(m.arrayBuffers / 2 ** 20)} MB`;
};

const total = (c: Counts) => Object.values(c.cases).reduce((a, b) => a + b, 0);
const mb = (x: number) => Math.round(x * 10) / 10;

interface ProtocolResult {
  protocol: string;
  describe: string;
  live: Counts & { total: number; seconds: number };
  in_process: Counts & { total: number; seconds: number };
  total: number;
  rss_peak_mb: number;
  fresh_login: { ok: boolean; detail: string };
  findings: number;
}

/** Lines of the gateway's log (pino JSON) and console output that say something went unhandled. */
/** Tokens, the target password and anything that looks like a JWT, replaced before a log line is kept. */
function redactor(secrets: string[]): (s: string) => string {
  const lits = secrets.filter((x) => x && x.length >= 8);
  return (s) => {
    for (const x of lits) s = s.split(x).join('<secret>');
    return s.replace(/eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*/g, '<jwt>');
  };
}

/** Warn and above: at most this many sample lines kept per event. */
const SAMPLES_PER_EVENT = 3;

async function scanLog(file: string, output: string, redact: (s: string) => string): Promise<{ lines: number; uncaught: string[]; byLevel: Record<string, number>; warnEvents: Record<string, number>; warnSamples: Record<string, string[]>; errorSamples: string[]; nonJson: string[] }> {
  const res = { lines: 0, uncaught: [] as string[], byLevel: {} as Record<string, number>, warnEvents: {} as Record<string, number>, warnSamples: {} as Record<string, string[]>, errorSamples: [] as string[], nonJson: [] as string[] };
  const bad = /uncaught|unhandled/i;
  if (fs.existsSync(file)) {
    const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line) continue;
      res.lines++;
      if (bad.test(line) && res.uncaught.length < 50) res.uncaught.push(redact(line).slice(0, 500));
      let j: Record<string, unknown>;
      try {
        j = JSON.parse(line);
      } catch {
        if (res.nonJson.length < 20) res.nonJson.push(redact(line).slice(0, 300));
        continue;
      }
      const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
      const lvl = typeof j.level === 'number' ? j.level : (LEVELS[String(j.level)] ?? 0);
      const name = lvl >= 60 ? 'fatal' : lvl >= 50 ? 'error' : lvl >= 40 ? 'warn' : lvl >= 30 ? 'info' : 'debug';
      res.byLevel[name] = (res.byLevel[name] ?? 0) + 1;
      if (lvl >= 40) {
        const k = `${name} ${String(j.event ?? '?')}`;
        res.warnEvents[k] = (res.warnEvents[k] ?? 0) + 1;
        const samples = (res.warnSamples[k] ??= []);
        if (samples.length < SAMPLES_PER_EVENT) samples.push(redact(line).slice(0, 600));
        if (lvl >= 50 && res.errorSamples.length < 10) res.errorSamples.push(redact(line).slice(0, 400));
      }
    }
  }
  // The console: a crash prints its stack there, not as JSON.
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    if (bad.test(line) && res.uncaught.length < 50) res.uncaught.push(redact(line).slice(0, 500));
    if (!line.startsWith('{') && res.nonJson.length < 20) res.nonJson.push(redact(line).slice(0, 300));
  }
  return res;
}

function latencyLine(b: Bystander): Record<string, number> {
  const l = b.latencies;
  return { ok: b.ok, failed: b.failed, median_ms: mb(median(l)), p99_ms: mb(quantile(l, 0.99)), max_ms: mb(l.length ? Math.max(...l) : NaN) };
}

async function main(): Promise<number> {
  let opts: Opts | null;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    log((e as Error).message);
    return 2;
  }
  if (!opts) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const o = opts;
  const findings: Finding[] = [];
  let current = '';
  // Anything that escapes an in-process case (a rejected promise nobody awaited, a throw from a timer) is a finding too.
  process.on('unhandledRejection', (e) => findings.push({ protocol: current, stream: 'unhandledRejection', case: -1, error: String((e as Error)?.stack ?? e) }));
  process.on('uncaughtException', (e) => findings.push({ protocol: current, stream: 'uncaughtException', case: -1, error: String(e?.stack ?? e) }));

  if (o.replay) {
    const { protocol, n } = o.replay;
    current = protocol.name;
    const ctx = { seed: o.seed, findings, log } as unknown as Ctx;
    const c = await protocol.inProcess(ctx, 1, () => {}, n);
    log(`replayed ${protocol.name} case ${n} with seed ${o.seed}: ${JSON.stringify(c.cases)}`);
    for (const f of findings) log(JSON.stringify(f));
    return findings.length ? 1 : 0;
  }

  let exitCode = 0;
  await runBench(async (b) => {
    const started = Date.now();
    log(`fuzz: seed ${o.seed}, ${o.cases.toLocaleString('en')} cases per protocol, protocols ${o.protocols.map((p) => p.name).join(',')}, live ${o.liveSeconds} s each`);
    const targets: Record<string, unknown> = {};
    const policies: Record<string, unknown>[] = [];
    let withSsh = false;
    const captures: ((t: string) => Promise<string[]>)[] = [];
    for (const p of o.protocols) {
      const prep = await p.prepare(b);
      Object.assign(targets, prep.targets);
      policies.push(...(prep.policies ?? []));
      withSsh ||= !!prep.ssh;
      if (prep.capture) captures.push(prep.capture);
    }
    const gw = await startSluice(b, { quiet: true, ssh: withSsh, config: { log: { level: 'info' }, targets, policies } });
    const pid = gw.proc.pid!;
    const logFile = path.join(gw.dir, 'sluice.log');
    let exited: string | null = null;
    let finished = false;
    gw.proc.once('exit', (code, signal) => {
      if (finished) return; // stopped by the harness at the end
      exited = `gateway exited (code ${code}, signal ${signal}) at ${new Date().toISOString()}`;
      log(`!! ${exited}\n${gw.output().slice(-3000)}`);
    });
    const fuzzToken = await gw.mint('fuzzer', ['fuzz'], '4h');
    const bystanderToken = await gw.mint('bystander', ['ci'], '4h');
    const corpusNotes: string[] = [];
    for (const c of captures) corpusNotes.push(...(await c(fuzzToken)));
    for (const n of corpusNotes) log(`corpus: ${n}`);

    const ctx: Ctx = {
      seed: o.seed,
      gw,
      fuzzToken,
      bystanderToken,
      sources: Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`),
      concurrency: o.concurrency,
      findings,
      deadline: 0,
      maxLiveCases: o.liveMax,
      log,
    };

    // Memory: sampled every 250 ms for the whole run; the baseline is taken with the bystanders connected.
    const bystanders = o.protocols.map((p) => bystanderInChild(p, ctx));
    await new Promise((r) => setTimeout(r, 3000));
    const rssStart = memory(pid);
    const peak: Mem = { ...rssStart };
    let phasePeak = 0;
    const timeline: { t: number; rss: number; anon: number }[] = [];
    const sampler = setInterval(() => {
      const m = memory(pid);
      if (!m.rss) return;
      peak.rss = Math.max(peak.rss, m.rss);
      peak.anon = Math.max(peak.anon, m.anon);
      phasePeak = Math.max(phasePeak, m.rss);
    }, 250);
    const timelineTimer = setInterval(() => {
      const m = memory(pid);
      if (m.rss) timeline.push({ t: Math.round((Date.now() - started) / 1000), rss: mb(m.rss), anon: mb(m.anon) });
    }, 5000);

    const results: ProtocolResult[] = [];
    for (const p of o.protocols) {
      current = p.name;
      phasePeak = 0;
      const before = findings.length;
      let live: Counts = { cases: {}, notes: {} };
      const t0 = Date.now();
      if (o.liveSeconds > 0 && !exited) {
        ctx.deadline = Date.now() + o.liveSeconds * 1000;
        const progress = setInterval(() => log(`${p.name} live: ${Math.round((ctx.deadline - Date.now()) / 1000)} s left; gateway VmRSS ${mb(memory(pid).rss)} MB; harness ${harnessMem()}`), Number(process.env.FUZZ_PROGRESS_MS) || 15_000);
        live = await p.live(ctx);
        clearInterval(progress);
      }
      const liveSeconds = (Date.now() - t0) / 1000;
      const liveTotal = total(live);
      log(`${p.name} live: ${liveTotal.toLocaleString('en')} cases in ${liveSeconds.toFixed(0)} s ${JSON.stringify(live.cases)}`);
      const t1 = Date.now();
      const want = Math.max(0, o.cases - liveTotal);
      let last = 0;
      const inproc = await inProcessInChild(p, ctx, want, (done) => {
        if (Date.now() - last > 15_000) {
          last = Date.now();
          log(`${p.name} in-process: ${done.toLocaleString('en')} / ${want.toLocaleString('en')}`);
        }
      });
      const inSeconds = (Date.now() - t1) / 1000;
      log(`${p.name} in-process: ${total(inproc).toLocaleString('en')} cases in ${inSeconds.toFixed(0)} s`);
      results.push({
        protocol: p.name,
        describe: p.describe,
        live: { ...live, total: liveTotal, seconds: Math.round(liveSeconds) },
        in_process: { ...inproc, total: total(inproc), seconds: Math.round(inSeconds) },
        total: liveTotal + total(inproc),
        rss_peak_mb: mb(phasePeak),
        fresh_login: { ok: false, detail: '' },
        findings: findings.length - before,
      });
    }
    current = 'after';
    // Let the last live connections drain, then the bystanders stop and fresh logins are tried.
    await new Promise((r) => setTimeout(r, 3000));
    for (const bs of bystanders) await bs.stop();
    for (const r of results) r.fresh_login = exited ? { ok: false, detail: exited } : await o.protocols.find((p) => p.name === r.protocol)!.freshLogin(ctx);
    clearInterval(sampler);
    clearInterval(timelineTimer);
    const rssEnd = memory(pid);
    const scan = await scanLog(logFile, gw.output(), redactor([fuzzToken, bystanderToken, TARGET_PASSWORD]));
    const seconds = Math.round((Date.now() - started) / 1000);
    finished = true;

    // ---- verdict
    const checks: [string, boolean, string][] = [
      ['gateway never exited', !exited, exited ?? `pid ${pid} alive`],
      ['no uncaught/unhandled in the gateway log or console', scan.uncaught.length === 0, `${scan.uncaught.length} line(s)`],
      ['no undocumented throw in process', findings.length === 0, `${findings.length} finding(s)`],
      [`gateway VmRSS peak <= ${o.maxRssMb} MB`, peak.rss <= o.maxRssMb, `${mb(peak.rss)} MB`],
      ['bystanders never failed', bystanders.every((x) => x.failed === 0 && x.ok > 0), bystanders.map((x) => `${x.ok} ok / ${x.failed} failed`).join('; ')],
      ['fresh login after the run', results.every((r) => r.fresh_login.ok), results.map((r) => `${r.protocol}: ${r.fresh_login.detail}`).join('; ')],
      [`>= ${o.cases.toLocaleString('en')} cases per protocol`, results.every((r) => r.total >= o.cases), results.map((r) => `${r.protocol} ${r.total.toLocaleString('en')}`).join(', ')],
    ];
    const pass = checks.every((c) => c[1]);
    if (!pass) exitCode = 1;

    // ---- report
    const fmt = (n: number) => n.toLocaleString('en');
    const md: string[] = [];
    md.push('# Fuzzing the listeners', '');
    md.push(`${machineLine()}. Seed ${o.seed} (\`npm run fuzz -- --seed ${o.seed}\` repeats the cases), ${fmt(o.cases)} cases per protocol asked, live tier ${o.liveSeconds} s per protocol at ${o.concurrency} connections, ${seconds} s in all.`, '');
    md.push(`**${pass ? 'PASS' : 'FAIL'}**`, '');
    md.push('| check | result | |', '|---|---|---|');
    for (const [name, ok, detail] of checks) md.push(`| ${name} | ${ok ? 'ok' : '**FAIL**'} | ${detail} |`);
    md.push('', '## Cases', '');
    md.push('| protocol | live cases | live s | in-process cases | in-process s | total | gateway VmRSS peak in phase (MB) | findings |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of results) md.push(`| ${r.protocol} | ${fmt(r.live.total)} | ${r.live.seconds} | ${fmt(r.in_process.total)} | ${r.in_process.seconds} | ${fmt(r.total)} | ${r.rss_peak_mb} | ${r.findings} |`);
    for (const r of results) {
      md.push('', `### ${r.protocol}`, '', r.describe, '');
      md.push('| tier | kind | cases |', '|---|---|---:|');
      for (const [k, v] of Object.entries(r.live.cases)) md.push(`| live | ${k} | ${fmt(v)} |`);
      for (const [k, v] of Object.entries(r.in_process.cases)) md.push(`| in-process | ${k} | ${fmt(v)} |`);
      const notes = { ...r.live.notes, ...Object.fromEntries(Object.entries(r.in_process.notes).map(([k, v]) => [`in-process: ${k}`, v])) };
      if (Object.keys(notes).length) md.push('', 'Observed: ' + Object.entries(notes).map(([k, v]) => `${k} ${fmt(v)}`).join('; ') + '.');
    }
    md.push('', '## Gateway', '');
    md.push(`VmRSS start ${mb(rssStart.rss)} MB (RssAnon ${mb(rssStart.anon)}), peak ${mb(peak.rss)} MB (RssAnon ${mb(peak.anon)}), end ${mb(rssEnd.rss)} MB (RssAnon ${mb(rssEnd.anon)}); sampled every 250 ms from /proc, start taken with the bystanders connected.`);
    md.push('', `Log: ${fmt(scan.lines)} lines; by level ${Object.entries(scan.byLevel).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}.` + (Object.keys(scan.warnEvents).length ? ` Warn and above by event: ${Object.entries(scan.warnEvents).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}.` : ''));
    if (scan.uncaught.length) md.push('', 'Uncaught/unhandled lines:', '', '```', ...scan.uncaught.slice(0, 10), '```');
    if (scan.errorSamples.length) md.push('', 'Error lines (first 10):', '', '```', ...scan.errorSamples, '```');
    if (Object.keys(scan.warnSamples).length) {
      md.push('', `Warn and above, the first ${SAMPLES_PER_EVENT} lines of each event (tokens and passwords replaced):`, '');
      for (const [k, lines] of Object.entries(scan.warnSamples)) md.push(`- ${k} (${fmt(scan.warnEvents[k] ?? 0)})`, '', '  ```', ...lines.map((l) => `  ${l}`), '  ```');
    }
    md.push('', '## Bystanders', '', '| session | ok | failed | median ms | p99 ms | max ms |', '|---|---:|---:|---:|---:|---:|');
    for (const bs of bystanders) {
      const l = latencyLine(bs);
      md.push(`| ${bs.name} | ${fmt(l.ok!)} | ${l.failed} | ${l.median_ms} | ${l.p99_ms} | ${l.max_ms} |`);
    }
    const errs = bystanders.flatMap((x) => x.errors.map((e) => `${x.name.split(':')[0]}: ${e}`));
    if (errs.length) md.push('', 'Bystander failures:', '', '```', ...errs.slice(0, 20), '```');
    md.push('', 'Each bystander runs in a process of its own and measures its own latencies; the in-process tier runs in another child process, so neither shares an event loop with CPU-bound fuzzing (the machine\'s load still shows).');
    if (findings.length) {
      md.push('', '## Findings', '', 'Each reproduces with `npm run fuzz -- --seed <seed> --replay <protocol>:<case>`.', '');
      for (const f of findings.slice(0, 30)) md.push(`- ${f.protocol} ${f.stream} case ${f.case}: ${f.error}${f.ops ? ` (ops ${f.ops.join(',')})` : ''}`);
    }
    if (corpusNotes.length) md.push('', '## Corpus captured from real clients', '', ...corpusNotes.map((n) => `- ${n}`));
    md.push('');
    writeResult('fuzz', md.join('\n'), {
      pass,
      seed: o.seed,
      cases_asked: o.cases,
      live_seconds: o.liveSeconds,
      concurrency: o.concurrency,
      duration_s: seconds,
      checks: checks.map(([name, ok, detail]) => ({ name, ok, detail })),
      protocols: results,
      gateway: { exited, rss_mb: { start: mb(rssStart.rss), peak: mb(peak.rss), end: mb(rssEnd.rss), limit: o.maxRssMb }, rss_anon_mb: { start: mb(rssStart.anon), peak: mb(peak.anon), end: mb(rssEnd.anon) }, rss_timeline: timeline, log: { lines: scan.lines, by_level: scan.byLevel, warn_events: scan.warnEvents, warn_samples: scan.warnSamples, uncaught: scan.uncaught, error_samples: scan.errorSamples, non_json: scan.nonJson } },
      bystanders: bystanders.map((x) => ({ name: x.name, ...latencyLine(x), errors: x.errors })),
      findings,
      corpus: corpusNotes,
      machine: machine(),
    });
  });
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log(`fuzz: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
