// What the kernel says about a proxy process: CPU time and memory, from /proc.
// A gateway may fork helpers (workers): CPU and RSS are summed over the process
// and its descendants, so a multi-process gateway is not flattered.
import fs from 'node:fs';

const CLK_TCK = 100;

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
      } catch {
        /* thread ended */
      }
    }
  } catch {
    /* process ended */
  }
  return out;
}

/** The process and all its descendants. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...children(all[i]!));
  return all;
}

/** utime + stime of the process tree, in seconds. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* ended */
    }
  }
  return ticks / CLK_TCK;
}

/** utime + stime of each thread of the process, in seconds, by thread id (name in `comm`). */
export function threadCpuSeconds(pid: number): Map<string, { comm: string; cpu: number }> {
  const out = new Map<string, { comm: string; cpu: number }>();
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK });
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/** Per-thread CPU between two threadCpuSeconds() samples, per `unit`, busiest first, as "tid(comm) 1.23". */
export function threadCpuDelta(before: Map<string, { comm: string; cpu: number }>, after: Map<string, { comm: string; cpu: number }>, unit: number): string {
  return [...after]
    .map(([tid, a]) => ({ tid, comm: a.comm, v: (a.cpu - (before.get(tid)?.cpu ?? 0)) / unit }))
    .filter((x) => x.v > 0)
    .sort((x, y) => y.v - x.v)
    .map((x) => `${x.tid}(${x.comm}) ${x.v.toFixed(2)}`)
    .join(', ');
}

export interface Mem {
  /** Resident set (VmRSS), MB. */
  rss: number;
  /** Anonymous resident memory (heap, buffers, thread stacks), MB: file-backed pages such as a memory-mapped store are not in it. */
  anon: number;
  /** Peak resident set over the process's life (VmHWM), MB. */
  hwm: number;
}

/** Memory of the process tree, in MB (1 MB = 2^20 bytes), from /proc/<pid>/status. */
export function memory(pid: number): Mem {
  const m: Mem = { rss: 0, anon: 0, hwm: 0 };
  for (const p of processTree(pid)) {
    let s: string;
    try {
      s = fs.readFileSync(`/proc/${p}/status`, 'utf8');
    } catch {
      continue;
    }
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) / 1024;
    m.rss += kb('VmRSS');
    m.anon += kb('RssAnon');
    m.hwm += kb('VmHWM');
  }
  return m;
}

/** Samples memory every `ms` and keeps the peaks; stop() returns them. */
export function sampleMemory(pid: number, ms = 100): { stop(): Mem; peak: Mem } {
  const peak: Mem = { rss: 0, anon: 0, hwm: 0 };
  const take = () => {
    const m = memory(pid);
    peak.rss = Math.max(peak.rss, m.rss);
    peak.anon = Math.max(peak.anon, m.anon);
    peak.hwm = Math.max(peak.hwm, m.hwm);
  };
  take();
  const timer = setInterval(take, ms);
  return {
    peak,
    stop() {
      clearInterval(timer);
      take();
      return peak;
    },
  };
}

/** Voluntary context switches of the process tree (each is a sleep: a wait for a socket, a lock, a timer). */
export function voluntarySwitches(pid: number): number {
  let n = 0;
  for (const p of processTree(pid)) {
    try {
      for (const tid of fs.readdirSync(`/proc/${p}/task`)) {
        try {
          n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
        } catch {
          /* thread ended */
        }
      }
    } catch {
      /* ended */
    }
  }
  return n;
}
