// Step `report` of run.sh: compares the regress runs file by file and writes
// bench/results/differential.{md,json} with the driver checks.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { machineLine, writeResult } from '../lib/env.js';
import { loadStep, type DriverRun, type RegressRun } from './common.js';

interface RegressStep {
  source: string;
  schedule: string;
  runs: RegressRun[];
  /** Through Sluice with intervalstyle only in PGOPTIONS (test_setup, timestamp). */
  pgoptions?: RegressRun;
}

/** Explanations of known differences, by test file (see the README's Postgres data path). */
const EXPLAINED: Record<string, string> = {};

const EXCERPT_LINES = 40;

function outFiles(run: RegressRun): string[] {
  return fs.readdirSync(path.join(run.dir, 'results')).filter((f) => f.endsWith('.out')).sort();
}

function unifiedDiff(a: string, b: string, la: string, lb: string): string {
  try {
    execFileSync('diff', ['-u', '--label', la, '--label', lb, a, b], { encoding: 'utf8' });
    return '';
  } catch (err) {
    const out = (err as { stdout?: string }).stdout ?? '';
    const lines = out.split('\n');
    return lines.slice(0, EXCERPT_LINES).join('\n') + (lines.length > EXCERPT_LINES ? `\n… (${lines.length - EXCERPT_LINES} more lines)` : '');
  }
}

interface Comparison {
  a: string;
  b: string;
  files: number;
  identical: number;
  different: { file: string; explained?: string; excerpt: string }[];
  /** Files one run wrote and the other did not. */
  missing: string[];
}

function compare(a: RegressRun, b: RegressRun): Comparison {
  const fa = outFiles(a);
  const fb = new Set(outFiles(b));
  const all = [...new Set([...fa, ...fb])].sort();
  const c: Comparison = { a: a.name, b: b.name, files: all.length, identical: 0, different: [], missing: [] };
  for (const f of all) {
    const pa = path.join(a.dir, 'results', f);
    const pb = path.join(b.dir, 'results', f);
    if (!fs.existsSync(pa) || !fs.existsSync(pb)) {
      c.missing.push(f);
      continue;
    }
    if (fs.readFileSync(pa).equals(fs.readFileSync(pb))) c.identical++;
    else {
      const test = f.replace(/\.out$/, '');
      c.different.push({ file: f, ...(EXPLAINED[test] ? { explained: EXPLAINED[test] } : {}), excerpt: unifiedDiff(pa, pb, `${a.name}/${f}`, `${b.name}/${f}`) });
    }
  }
  return c;
}

const md: string[] = ['# Differential: Postgres regression suite and drivers, direct and through Sluice', ''];
md.push(`${machineLine()}. Command: \`npm run differential\` (bench/differential/run.sh).`, '');
const json: Record<string, unknown> = {};

const reg = loadStep<RegressStep>('regress');
if (reg) {
  const by = Object.fromEntries(reg.runs.map((r) => [r.name, r]));
  const direct = by.direct!;
  const sluice = by.sluice!;
  const again = by['direct-again'];
  const vsSluice = compare(direct, sluice);
  const noise = again ? compare(direct, again) : undefined;
  // A file where Sluice's output matches either direct run is within direct-to-direct noise.
  const sluiceOnly = vsSluice.different.filter((d) => {
    if (!again) return true;
    const pa = path.join(again.dir, 'results', d.file);
    const ps = path.join(sluice.dir, 'results', d.file);
    return !(fs.existsSync(pa) && fs.existsSync(ps) && fs.readFileSync(pa).equals(fs.readFileSync(ps)));
  });
  const unexplained = sluiceOnly.filter((d) => !d.explained);
  json.regress = {
    source: reg.source,
    schedule: reg.schedule,
    runs: reg.runs.map(({ dir: _dir, ...r }) => r),
    direct_vs_sluice: vsSluice,
    direct_vs_direct: noise,
    sluice_differences_beyond_noise: sluiceOnly.map((d) => d.file),
    unexplained: unexplained.map((d) => d.file),
  };
  md.push('## Regression suite (pg_regress)', '');
  md.push(`Suite: \`src/test/regress\` of Debian's ${reg.source} source package, schedule \`${path.basename(reg.schedule)}\`, run with`);
  md.push('`pg_regress --use-existing` against a fresh throwaway cluster each time; outputs (`results/*.out`) compared byte for byte.', '');
  md.push('| comparison | files | identical | different | only in one run |', '|---|---:|---:|---:|---:|');
  for (const c of [vsSluice, noise].filter((x): x is Comparison => !!x)) {
    md.push(`| ${c.a} vs ${c.b} | ${c.files} | ${c.identical} | ${c.different.length} | ${c.missing.length} |`);
  }
  md.push('');
  md.push('| run | pg_regress seconds | files that differ from `expected/` |', '|---|---:|---|');
  for (const r of reg.runs) md.push(`| ${r.name} | ${r.seconds} | ${r.failed_vs_expected.length}${r.failed_vs_expected.length ? `: ${r.failed_vs_expected.join(', ')}` : ''} |`);
  md.push('');
  md.push(
    `Differences through Sluice beyond the direct-to-direct noise: **${sluiceOnly.length}**` +
      (sluiceOnly.length ? ` (${sluiceOnly.map((d) => d.file).join(', ')}); unexplained: ${unexplained.length}` : '') + '.',
    '',
  );
  const section = (title: string, c: Comparison) => {
    if (!c.different.length && !c.missing.length) return;
    md.push(`### ${title}`, '');
    if (c.missing.length) md.push(`Written by one run only: ${c.missing.join(', ')}`, '');
    for (const d of c.different) {
      md.push(`- \`${d.file}\`${d.explained ? `: ${d.explained}` : ''}`, '', '```diff', d.excerpt, '```', '');
    }
  };
  section('direct vs sluice', vsSluice);
  if (noise) section('direct vs direct-again (noise)', noise);

  if (reg.pgoptions) {
    // Only the files that run wrote, against the full direct run's.
    const p = reg.pgoptions;
    const diffs = outFiles(p).filter((f) => !fs.readFileSync(path.join(p.dir, 'results', f)).equals(fs.readFileSync(path.join(direct.dir, 'results', f))));
    const first = diffs[0];
    const excerpt = first ? unifiedDiff(path.join(direct.dir, 'results', first), path.join(p.dir, 'results', first), `direct/${first}`, `sluice-pgoptions-only/${first}`) : '';
    json.regress = { ...(json.regress as object), pgoptions_demo: { files: outFiles(p), different: diffs } };
    md.push('### Known difference by design: the `options` startup parameter', '');
    md.push('pg_regress sets `PGOPTIONS=-c intervalstyle=postgres_verbose`. Sluice drops the `options` startup parameter, so the runs above');
    md.push('carry the setting on the database (`ALTER DATABASE regression SET intervalstyle TO postgres_verbose`, in every run).');
    md.push(`Run through Sluice without it (${outFiles(p).join(', ')}): ${diffs.length ? `**${diffs.join(', ')}** differ${diffs.length === 1 ? 's' : ''} from direct` : 'no difference'}.`, '');
    if (excerpt) md.push('```diff', excerpt, '```', '');
  }
}

const drivers = loadStep<DriverRun[]>('drivers');
if (drivers) {
  json.drivers = drivers;
  md.push('## Drivers', '');
  md.push('| driver | path | passed | failed |', '|---|---|---:|---:|');
  for (const d of drivers) {
    const pass = d.checks.filter((c) => c.ok).length;
    md.push(`| ${d.driver} ${d.version} | ${d.path} | ${pass}/${d.checks.length} | ${d.checks.length - pass}${d.error ? ` (error: ${d.error.split('\n')[0]})` : ''} |`);
  }
  md.push('');
  const names = [...new Set(drivers.map((d) => d.driver))];
  for (const n of names) {
    const runs = drivers.filter((d) => d.driver === n);
    md.push(`### ${n}`, '', `| check | ${runs.map((r) => r.path).join(' | ')} |`, `|---|${runs.map(() => '---').join('|')}|`);
    const checks = [...new Set(runs.flatMap((r) => r.checks.map((c) => c.name)))];
    for (const c of checks) {
      md.push(`| ${c} | ${runs.map((r) => {
        const x = r.checks.find((y) => y.name === c);
        return !x ? '—' : x.ok ? 'pass' : `**FAIL**: ${(x.detail ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ').slice(0, 200)}`;
      }).join(' | ')} |`);
    }
    md.push('');
  }
}

writeResult('differential', md.join('\n'), json);
