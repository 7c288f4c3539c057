// A large result through each path: the whole PII table (BENCH_LARGE_ROWS rows,
// 2M by default: name, email, card number, SSN-like and free text per row)
// fetched with one simple-protocol query, interleaved across paths, rounds times.
// The client only counts bytes (lib/pgwire.ts), so the figure is the path's.
// Masking off: direct, pgbouncer, Sluice bare / + policy / + recording; on:
// Sluice + masking and fully governed (every row is rewritten: column rules on
// the PII columns, detectors on the rest).
//
//   node --import tsx bench/large-result.ts
import { knobs, log, machineLine, median, writeResult } from './lib/env.js';
import { runBench, startCluster, startPaths, VARIANTS } from './lib/paths.js';
import { loadPiiTable } from './lib/pii.js';
import { WireClient } from './lib/pgwire.js';
import { cpuSeconds } from './lib/proc.js';

const ROWS = knobs.largeRows;
const SQL = 'select * from customers';
const masked = (name: string) => Boolean((VARIANTS[name] as { masking?: unknown } | undefined)?.masking);

await runBench(async (b) => {
  const pg = await startCluster(b);
  log(`loading ${ROWS} PII rows…`);
  await loadPiiTable(pg, ROWS);
  const paths = await startPaths(b, pg, { variants: knobs.variants });

  const res = new Map<string, { secs: number[]; bytes: number; rows: number; cpu: number[] }>();
  // Untimed: the whole table once direct (every path then reads a warm table), and a few rows
  // through each proxy (one-time costs such as loading the SQL parser stay out of round 1).
  for (const p of paths) {
    const c = await WireClient.connect(p);
    await c.query(p.name === 'direct' ? SQL : `${SQL} limit 1000`);
    c.close();
  }
  for (let round = 1; round <= knobs.rounds; round++) {
    for (const p of paths) {
      const c = await WireClient.connect(p);
      const before = p.pid ? cpuSeconds(p.pid) : 0;
      const r = await c.query(SQL);
      const cpu = p.pid ? cpuSeconds(p.pid) - before : NaN;
      c.close();
      if (r.rows !== ROWS) throw new Error(`${p.name}: ${r.rows} rows, expected ${ROWS}`);
      const e = res.get(p.name) ?? { secs: [], bytes: r.bytes, rows: r.rows, cpu: [] };
      res.set(p.name, e);
      e.secs.push(r.seconds);
      if (p.pid) e.cpu.push(cpu);
      log(`round ${round} ${p.name.padEnd(17)} ${(r.bytes / 1e6 / r.seconds).toFixed(1).padStart(7)} MB/s  ${r.seconds.toFixed(2)} s${p.pid ? `  proxy CPU ${cpu.toFixed(2)} s` : ''}`);
    }
  }

  const d = res.get('direct')!;
  const dSecs = median(d.secs);
  const rows = ['| path | masking | MB/s (median) | share of direct | rows/s | proxy CPU s per GB | result MB |', '|---|---|---:|---:|---:|---:|---:|'];
  const json: Record<string, unknown>[] = [];
  for (const p of paths) {
    const e = res.get(p.name)!;
    const secs = median(e.secs);
    const mbps = e.bytes / 1e6 / secs;
    // The share compares the time to deliver the same rows: masked rows may be shorter or longer on the wire.
    const share = dSecs / secs;
    const cpu = e.cpu.length ? median(e.cpu) / (d.bytes / 1e9) : null;
    rows.push(`| ${p.name} | ${masked(p.name) ? 'on' : 'off'} | ${mbps.toFixed(1)} | ${share.toFixed(2)} | ${Math.round(e.rows / secs).toLocaleString('en')} | ${cpu === null ? '—' : cpu.toFixed(2)} | ${(e.bytes / 1e6).toFixed(0)} |`);
    json.push({ path: p.name, masking: masked(p.name), mb_per_s: mbps, share, rows_per_s: e.rows / secs, seconds: secs, bytes: e.bytes, proxy_cpu_s_per_gb: cpu, rounds: e.secs });
  }
  const md =
    `Large result: \`${SQL}\`, ${ROWS.toLocaleString('en')} rows with PII columns (${(d.bytes / 1e6).toFixed(0)} MB on the wire direct), ` +
    `simple protocol, median of ${knobs.rounds} interleaved rounds; ${machineLine()}\n\n${rows.join('\n')}\n\n` +
    'MB/s counts the bytes the client received (1 MB = 10^6 bytes); share of direct compares the time to deliver the same rows.\n';
  writeResult('large-result', md, { rows: ROWS, sql: SQL, rounds: knobs.rounds, results: json });
});
