// Step `regress` of run.sh: direct, through Sluice, direct again; then a short run through
// Sluice without the database-level intervalstyle, to show what dropping PGOPTIONS does.
import fs from 'node:fs';
import path from 'node:path';
import { log } from '../lib/env.js';
import { cacheDir, saveStep, type RegressRun } from './common.js';
import { regressRun } from './regress.js';

const runs: RegressRun[] = [];
for (const [name, via] of [['direct', false], ['sluice', true], ['direct-again', false]] as const) {
  runs.push(await regressRun(name, via));
}
let pgoptions: RegressRun | undefined;
if (process.env.DIFF_PGOPTIONS_DEMO !== '0') {
  const schedule = path.join(cacheDir(), 'pgoptions_schedule');
  fs.writeFileSync(schedule, 'test: test_setup\ntest: timestamp\n', { mode: 0o644 });
  pgoptions = await regressRun('sluice-pgoptions-only', true, { schedule, noDbIntervalStyle: true });
}
saveStep('regress', { source: process.env.DIFF_SOURCE_VERSION ?? 'unknown', schedule: process.env.DIFF_SCHEDULE ?? 'parallel_schedule', runs, pgoptions });
log('== regress: done');
