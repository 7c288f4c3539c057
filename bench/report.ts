// Combines the results of one `npm run bench` into bench/results/summary.md,
// summary.json and chart.svg: ratios to direct for every path, the proxy's CPU
// per transaction against pgbouncer's, the recording cost as a TPS ratio, the
// large-result, memory and micro-benchmark figures, scp when bench/scp.ts ran,
// and issue #8's targets as pass/fail lines. Reads whatever results exist.
//
//   node --import tsx bench/report.ts
import fs from 'node:fs';
import path from 'node:path';
import { renderChart, type ChartPanel } from './chart.js';
import { machineLine, outDir, type Machine } from './lib/env.js';
import { VARIANT_LABELS } from './lib/paths.js';
import { checkTargets, GOVERNED, parseWorkload, type IdleRow, type LargeRow, type PgbenchRow, type SlowRow } from './targets.js';

const dir = outDir();
const sources: Record<string, string> = {};

/** A results file (JSON), or undefined; remembers its date for the sources list. */
function load<T = Record<string, unknown>>(name: string): T | undefined {
  const f = path.join(dir, `${name}.json`);
  if (!fs.existsSync(f)) return undefined;
  const j = JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;
  sources[name] = typeof j.date === 'string' ? j.date : fs.statSync(f).mtime.toISOString();
  return j as T;
}
function loadMd(name: string): string | undefined {
  const f = path.join(dir, `${name}.md`);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().replace(/^#+ /gm, '#### ') : undefined;
}

type Run<T> = { date?: string; machine?: Machine; seconds?: number; rounds?: number; results: T };
const pgbench = load<Run<PgbenchRow[]>>('pgbench');
const large = load<Run<LargeRow[]>>('large-result');
const idle = load<Run<IdleRow[]>>('idle');
const slow = load<Run<SlowRow[]>>('slow-reader');
const policy = load('policy');
const masking = load('masking');
const maskingRows = load('masking-rows');
const recording = load('recording'); // bench/recording.ts
const recordingAb = load('recording-ab'); // bench/recording-ab.ts
const scp = load('scp'); // bench/scp.ts, when it exists

const rows = pgbench?.results ?? [];
const paths = [...new Set(rows.map((r) => r.path))];
const workloads = [...new Set(rows.map((r) => r.workload))];
const get = (w: string, p: string) => rows.find((r) => r.workload === w && r.path === p);
const wlLabel = (w: string) => {
  const x = parseWorkload(rows.find((r) => r.workload === w)!);
  return `${x.script === 'tpcb' ? 'TPC-B' : '-S'} ${x.mode} -c ${x.clients}`;
};
const label = (p: string) => VARIANT_LABELS[p] ?? p;
const fmt = (n: number | null | undefined, d = 2) => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(d));

const md: string[] = [];
const json: Record<string, unknown> = {};
const when = pgbench?.date ?? new Date().toISOString();
md.push(`# Sluice benchmarks`, '', `${pgbench?.machine ? machineLine(pgbench.machine, when) : `${when.slice(0, 10)} (machine not recorded)`}.`, '');
md.push('![benchmark chart](chart.svg)', '');

// Targets.
const targets = checkTargets({ pgbench: rows, large: large?.results, idle: idle?.results, slow: slow?.results });
json.targets = targets;
md.push('## Targets (issue #8: fully governed Sluice, same run)', '');
for (const t of targets) md.push(`- **${t.pass === null ? 'NOT MEASURED' : t.pass ? 'PASS' : 'FAIL'}** ${t.target}: ${t.detail}`);
md.push('');

if (rows.length) {
  const head = (first: string) => [`| ${first} | ${workloads.map(wlLabel).join(' | ')} |`, `|---|${workloads.map(() => '---:').join('|')}|`];
  md.push(`## pgbench: TPS as a share of direct`, '', `Median of ${pgbench!.rounds} interleaved rounds, ${pgbench!.seconds} s per run (pgbench scale 10).`, '');
  md.push(...head('path'));
  const share: Record<string, Record<string, number>> = {};
  const tps: Record<string, Record<string, number>> = {};
  for (const p of paths) {
    share[p] = {};
    tps[p] = {};
    for (const w of workloads) {
      share[p][w] = get(w, p)?.share ?? NaN;
      tps[p][w] = get(w, p)?.tps ?? NaN;
    }
    md.push(`| ${label(p)} | ${workloads.map((w) => fmt(share[p]![w])).join(' | ')} |`);
  }
  md.push('', `Direct TPS: ${workloads.map((w) => `${wlLabel(w)} ${Math.round(get(w, 'direct')?.tps ?? NaN)}`).join(', ')}.`, '');

  md.push('## pgbench: proxy CPU µs per transaction (× pgbouncer\'s)', '', 'utime+stime of the proxy process (and its children) over the run, divided by transactions.', '');
  md.push(...head('path'));
  const cpu: Record<string, Record<string, number | null>> = {};
  const vsBouncer: Record<string, Record<string, number | null>> = {};
  for (const p of paths.filter((p) => p !== 'direct')) {
    cpu[p] = {};
    vsBouncer[p] = {};
    const cells = workloads.map((w) => {
      const c = get(w, p)?.cpu_us_per_tx ?? null;
      const b = get(w, 'pgbouncer')?.cpu_us_per_tx ?? null;
      cpu[p]![w] = c;
      vsBouncer[p]![w] = c !== null && b ? c / b : null;
      return p === 'pgbouncer' || !b || c === null ? fmt(c, 1) : `${fmt(c, 1)} (${fmt(c / b, 1)}×)`;
    });
    md.push(`| ${label(p)} | ${cells.join(' | ')} |`);
  }
  md.push('');

  // Recording cost: the same gateway with recording on against bare.
  const recRatio: Record<string, { tps_ratio: number; cpu_us_per_tx_added: number | null }> = {};
  if (paths.includes('sluice') && paths.includes('sluice+recording')) {
    md.push('## Recording cost', '', 'TPS of Sluice + recording as a share of Sluice bare, same run (1.00 = free), and the CPU it adds per transaction.', '');
    md.push('| workload | TPS ratio | CPU µs/tx added |', '|---|---:|---:|');
    for (const w of workloads) {
      const a = get(w, 'sluice')!;
      const r = get(w, 'sluice+recording')!;
      const added = a.cpu_us_per_tx !== null && r.cpu_us_per_tx !== null ? r.cpu_us_per_tx - a.cpu_us_per_tx : null;
      recRatio[w] = { tps_ratio: r.tps / a.tps, cpu_us_per_tx_added: added };
      md.push(`| ${wlLabel(w)} | ${fmt(r.tps / a.tps)} | ${fmt(added, 1)} |`);
    }
    md.push('');
  }
  json.pgbench = { seconds: pgbench!.seconds, rounds: pgbench!.rounds, paths, workloads, share, tps, cpu_us_per_tx: cpu, cpu_vs_pgbouncer: vsBouncer };
  json.recording_tps_ratio = recRatio;

  // The chart: -S simple and extended at -c 8.
  const panels: ChartPanel[] = [];
  for (const mode of ['simple', 'extended']) {
    const w = workloads.find((x) => {
      const p = parseWorkload(get(x, 'direct')!);
      return p.script === 'select-only' && p.mode === mode && p.clients === 8;
    });
    if (!w) continue;
    panels.push({
      title: `pgbench -S -M ${mode} -c 8`,
      bars: paths.filter((p) => p !== 'direct').map((p) => ({ label: label(p), share: share[p]![w]!, kind: p === 'pgbouncer' ? 'pgbouncer' : p === GOVERNED ? 'governed' : 'sluice' })),
      reference: paths.includes('pgbouncer') ? share.pgbouncer![w] : undefined,
    });
  }
  if (panels.length) {
    const sub = `${(pgbench!.machine ? machineLine(pgbench!.machine, when) : when.slice(0, 10)).replace(/; load average.*/, '')}; median of ${pgbench!.rounds} rounds, ${pgbench!.seconds} s each`;
    fs.writeFileSync(path.join(dir, 'chart.svg'), renderChart('Sluice vs direct and pgbouncer: TPS as a share of direct', sub, panels));
  }
}

const sections: [string, string, unknown][] = [
  ['Large result (MB/s, masking on and off)', 'large-result', large?.results],
  ['Memory: idle sessions', 'idle', idle?.results],
  ['Memory: streaming to a slow reader', 'slow-reader', slow?.results],
  ['Policy decision cost', 'policy', policy?.results],
  ['Masking, one core: scanner', 'masking', masking?.results],
  ['Masking, one core: DataRow traffic', 'masking-rows', maskingRows?.mb_per_s],
  ['Recording cost, paired runs (bench/recording-ab.ts)', 'recording-ab', recordingAb?.results],
  ['Recording store (bench/recording.ts)', 'recording', recording && { results: recording.results, paced: recording.paced }],
  ['SSH: scp direct and through Sluice', 'scp', scp?.results],
];
for (const [title, name, data] of sections) {
  const text = loadMd(name);
  if (!text || data === undefined) continue;
  md.push(`## ${title}`, '', text, '');
  json[name.replace(/-/g, '_')] = data;
}

md.push('## Sources', '', ...Object.entries(sources).map(([n, d]) => `- \`${n}.json\`: ${d}`), '');
json.sources = sources;
json.date = when;
json.machine = pgbench?.machine;
fs.writeFileSync(path.join(dir, 'summary.md'), md.join('\n'));
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(json, null, 2) + '\n');
process.stdout.write(md.join('\n') + '\n');
