// Step `regress` of run.sh: direct, through Sluice, direct again.
import { log } from '../lib/env.js';
import { saveStep, type RegressRun } from './common.js';
import { regressRun } from './regress.js';

const runs: RegressRun[] = [];
for (const [name, via] of [['direct', false], ['sluice', true], ['direct-again', false]] as const) {
  runs.push(await regressRun(name, via));
}
saveStep('regress', { source: process.env.DIFF_SOURCE_VERSION ?? 'unknown', schedule: process.env.DIFF_SCHEDULE ?? 'parallel_schedule', runs });
log('== regress: done');
