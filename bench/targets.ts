// Issue #8's targets for fully governed Sluice (`sluice+all`), checked against
// one set of results. A target whose figures are missing is "not measured";
// one measured under a smaller setting than the target names says so.

export interface PgbenchRow {
  workload: string;
  script?: string;
  mode?: string;
  clients?: number;
  path: string;
  tps: number;
  share: number;
  cpu_us_per_tx: number | null;
  failed: number;
}
export interface LargeRow {
  path: string;
  masking: boolean;
  mb_per_s: number;
  share: number;
}
export interface MemFig {
  rss: number;
  anon: number;
  hwm: number;
}
export interface IdleRow {
  path: string;
  sessions: number;
  with_sessions: MemFig;
}
export interface SlowRow {
  path: string;
  bytes: number;
  peak: MemFig;
}

export interface Results {
  pgbench?: PgbenchRow[];
  large?: LargeRow[];
  idle?: IdleRow[];
  slow?: SlowRow[];
}

export interface Target {
  target: string;
  /** null: not measured. */
  pass: boolean | null;
  detail: string;
}

export const GOVERNED = 'sluice+all';

/** "select-only simple c8" → its parts (older results carry only the key). */
export function parseWorkload(r: PgbenchRow): { script: string; mode: string; clients: number } {
  const m = /^(\S+) (\S+) c(\d+)$/.exec(r.workload);
  return { script: r.script ?? m?.[1] ?? r.workload, mode: r.mode ?? m?.[2] ?? '', clients: r.clients ?? Number(m?.[3] ?? NaN) };
}

const f2 = (n: number) => n.toFixed(2);

export function checkTargets(r: Results): Target[] {
  const out: Target[] = [];
  const row = (mode: string, path: string) =>
    r.pgbench?.find((x) => {
      const w = parseWorkload(x);
      return w.script === 'select-only' && w.mode === mode && w.clients === 8 && x.path === path;
    });
  for (const mode of ['simple', 'extended']) {
    const g = row(mode, GOVERNED);
    const b = row(mode, 'pgbouncer');
    out.push(
      g && b
        ? { target: `Share of direct TPS ≥ pgbouncer's (-S -M ${mode} -c 8)`, pass: g.share >= b.share, detail: `fully governed ${f2(g.share)}, pgbouncer ${f2(b.share)}` }
        : { target: `Share of direct TPS ≥ pgbouncer's (-S -M ${mode} -c 8)`, pass: null, detail: 'not measured (needs pgbouncer and sluice+all at -c 8)' },
    );
  }
  for (const mode of ['simple', 'extended']) {
    const g = row(mode, GOVERNED);
    const b = row(mode, 'pgbouncer');
    const name = `Proxy CPU per transaction ≤ 1.5× pgbouncer's (-S -M ${mode} -c 8)`;
    out.push(
      g?.cpu_us_per_tx && b?.cpu_us_per_tx
        ? { target: name, pass: g.cpu_us_per_tx <= 1.5 * b.cpu_us_per_tx, detail: `fully governed ${g.cpu_us_per_tx.toFixed(1)} µs, pgbouncer ${b.cpu_us_per_tx.toFixed(1)} µs (${f2(g.cpu_us_per_tx / b.cpu_us_per_tx)}×)` }
        : { target: name, pass: null, detail: 'not measured' },
    );
  }
  {
    const g = r.large?.find((x) => x.path === GOVERNED);
    const name = 'Large result ≥ 80% of direct MB/s with masking on';
    out.push(g ? { target: name, pass: g.share >= 0.8, detail: `fully governed (masking on): ${f2(g.share)} of direct, ${g.mb_per_s.toFixed(0)} MB/s` } : { target: name, pass: null, detail: 'not measured' });
  }
  {
    const g = r.slow?.find((x) => x.path === GOVERNED);
    const name = '5 GB streamed to a slow reader at < 100 MB RSS';
    if (!g) out.push({ target: name, pass: null, detail: 'not measured' });
    else {
      const gb = g.bytes / 1e9;
      const small = gb < 4.9 ? ` (measured with ${gb.toFixed(1)} GB, not 5)` : '';
      out.push({ target: name, pass: g.peak.rss < 100, detail: `fully governed: peak VmRSS ${g.peak.rss.toFixed(0)} MB (RssAnon ${g.peak.anon.toFixed(0)} MB)${small}` });
    }
  }
  {
    const g = r.idle?.find((x) => x.path === GOVERNED);
    const name = '1,000 idle sessions at < 200 MB RSS';
    if (!g) out.push({ target: name, pass: null, detail: 'not measured' });
    else {
      const small = g.sessions < 1000 ? ` (measured with ${g.sessions} sessions, not 1,000)` : '';
      out.push({ target: name, pass: g.with_sessions.rss < 200, detail: `fully governed: VmRSS ${g.with_sessions.rss.toFixed(0)} MB (RssAnon ${g.with_sessions.anon.toFixed(0)} MB)${small}` });
    }
  }
  return out;
}
