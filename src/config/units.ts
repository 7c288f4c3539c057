// Human-friendly durations and sizes, as written in sluice.yaml.

const MS_PER: Record<string, number> = {};
const addUnits = (ms: number, ...names: string[]) => names.forEach((n) => (MS_PER[n] = ms));
addUnits(1, 'ms', 'msec', 'msecs', 'millisecond', 'milliseconds');
addUnits(1000, 's', 'sec', 'secs', 'second', 'seconds');
addUnits(60_000, 'm', 'min', 'mins', 'minute', 'minutes');
addUnits(3_600_000, 'h', 'hr', 'hrs', 'hour', 'hours');
addUnits(86_400_000, 'd', 'day', 'days');
addUnits(604_800_000, 'w', 'week', 'weeks');

const DURATION_FORMS =
  'expected a number of seconds or a number with a unit (ms, s, m/min, h, d, w), e.g. "500ms", "30s", "15m", "10min", "1h", "2d" or "1h30m"';

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : String(v);
}

/**
 * A duration in milliseconds. Plain numbers (and numeric strings) are seconds;
 * strings may carry units and be combined ("1h30m"). Throws on anything else.
 */
export function parseDuration(v: string | number): number {
  const bad = () => new Error(`invalid duration ${show(v)}: ${DURATION_FORMS}`);
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw bad();
    return Math.round(v * 1000);
  }
  if (typeof v !== 'string') throw bad();
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const part = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*/iy;
  let total = 0;
  let pos = 0;
  if (s === '') throw bad();
  while (pos < s.length) {
    part.lastIndex = pos;
    const m = part.exec(s);
    const unit = m && MS_PER[m[2]!.toLowerCase()];
    if (!m || !unit) throw bad();
    total += Number(m[1]) * unit;
    pos = part.lastIndex;
  }
  if (!Number.isSafeInteger(Math.round(total))) throw bad();
  return Math.round(total);
}

const BYTES_PER: Record<string, number> = { '': 1, b: 1, byte: 1, bytes: 1 };
['k', 'm', 'g', 't'].forEach((p, i) => {
  const n = 1024 ** (i + 1);
  BYTES_PER[p] = BYTES_PER[p + 'b'] = BYTES_PER[p + 'ib'] = n;
});

const SIZE_FORMS =
  'expected a number of bytes or a number with a unit (k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB; all 1024-based), e.g. "512k", "64MB" or "1GiB"';

/**
 * A size in bytes. Plain numbers are bytes; units are case-insensitive and,
 * as in PostgreSQL, KB/MB/GB/TB mean 1024-based units just like KiB/MiB/GiB/TiB.
 */
export function parseSize(v: string | number): number {
  const bad = () => new Error(`invalid size ${show(v)}: ${SIZE_FORMS}`);
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
    const unit = m && BYTES_PER[m[2]!.toLowerCase()];
    if (!m || !unit) throw bad();
    n = Math.round(Number(m[1]) * unit);
  } else throw bad();
  if (!Number.isSafeInteger(n) || n < 0) throw bad();
  return n;
}

/** A moment in the future: a duration from now ("2h", "7d") or a date; null when neither. */
export function parseUntil(v: string): Date | null {
  try {
    if (/^\d+(\.\d+)?\s*[a-z]+/i.test(v)) return new Date(Date.now() + parseDuration(v));
  } catch {
    return null;
  }
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}
