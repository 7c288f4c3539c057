// Masking core throughput on DataRow-like values, single core.
//   node --import tsx bench/masking.ts            (MASK_BENCH_MB=64 by default)
// Builds ~64 MB of row values (ids, amounts, timestamps, UUIDs, names, free
// text, JSON; ~2% of values carry an email, card, SSN, phone or IBAN), then
// reports MB/s for scan only and scan + mask, with all built-in detectors on,
// scan of long free-text values, and scan with one custom RE2 detector added.
// MB/s are per CPU second of this process (single core), so a busy host
// distorts them less than wall time; compare medians within one run.
// Writes bench/results/masking.md and masking.json.
import { Scanner } from '../src/policy/masking/scanner.js';
import { machineLine, writeResult } from './lib/env.js';
import { maskFindings } from '../src/policy/masking/strategies.js';
import { StreamMasker } from '../src/policy/masking/stream.js';
import { DETECTOR_NAMES, type Strategy } from '../src/policy/masking/types.js';

const TARGET = Number(process.env.MASK_BENCH_MB ?? 64) * 1024 * 1024;
const ROUNDS = Number(process.env.MASK_BENCH_ROUNDS ?? 5);

let seed = 42;
const rnd = (): number => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x80000000;
};
const int = (n: number): number => Math.floor(rnd() * n);
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
const pad = (n: number, w: number): string => String(n).padStart(w, '0');

const FIRST = ['Zoë', 'Anna', 'José', 'Mei', 'Olivier', 'Björn', 'Sarah', 'Ahmed', 'Łukasz', 'Priya', 'John', 'Ines'];
const LAST = ['Müller', 'Smith', 'García', 'Nakamura', "O'Brien", 'Nowak', 'Dubois', 'Rossi', 'Kowalski', 'Øster'];
const WORDS = (
  'the order was shipped on time and the customer asked for a refund because the package arrived late ' +
  'please call back tomorrow invoice total includes tax discount applied for loyal members ticket closed ' +
  'résumé naïve café über straße 東京 данные'
).split(' ');
const STATUS = ['active', 'pending', 'closed', 'refunded', 'shipped', 't', 'f'];

function luhnComplete(prefix: string, len: number): string {
  let s = prefix;
  while (s.length < len - 1) s += String(int(10));
  for (let d = 0; d < 10; d++) {
    const c = s + d;
    let sum = 0;
    for (let i = c.length - 1, dbl = false; i >= 0; i--, dbl = !dbl) {
      let v = c.charCodeAt(i) - 48;
      if (dbl) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
      sum += v;
    }
    if (sum % 10 === 0) return c;
  }
  throw new Error('unreachable');
}

const hex = (n: number): string => Array.from({ length: n }, () => '0123456789abcdef'[int(16)]).join('');
const uuid = (): string => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
const ts = (): string =>
  `2024-${pad(1 + int(12), 2)}-${pad(1 + int(28), 2)} ${pad(int(24), 2)}:${pad(int(60), 2)}:${pad(int(60), 2)}.${pad(int(1e6), 6)}+00`;
const sentence = (): string => Array.from({ length: 5 + int(25) }, () => (rnd() < 0.1 ? String(int(10000)) : pick(WORDS))).join(' ');

function sensitive(): string {
  switch (int(5)) {
    case 0:
      return `${pick(FIRST).toLowerCase()}.${pick(LAST).toLowerCase().replace(/[^a-z]/g, '')}${int(100)}@example.com`;
    case 1:
      return luhnComplete(pick(['4', '51', '37', '6011']), 16);
    case 2:
      return `${100 + int(500)}-${pad(1 + int(98), 2)}-${pad(1 + int(9998), 4)}`;
    case 3:
      return `(${200 + int(700)}) ${100 + int(900)}-${pad(int(10000), 4)}`;
    default:
      return 'DE89 3704 0044 0532 0130 00';
  }
}

function value(): string {
  if (rnd() < 0.02) return rnd() < 0.5 ? sensitive() : `note: ${sentence()} ${sensitive()} ${sentence()}`;
  switch (int(10)) {
    case 0:
      return String(int(10_000_000));
    case 1:
      return `${int(100000)}.${pad(int(100), 2)}`;
    case 2:
      return ts();
    case 3:
      return uuid();
    case 4:
      return `${pick(FIRST)} ${pick(LAST)}`;
    case 5:
      return sentence();
    case 6:
      return pick(STATUS);
    case 7:
      return `{"id":${int(1e6)},"tags":["${pick(WORDS)}","${pick(WORDS)}"],"at":"${ts()}"}`;
    case 8:
      return `${pad(1900 + int(125), 4)}-${pad(1 + int(12), 2)}-${pad(1 + int(28), 2)}`;
    default:
      return `${pick(WORDS)} ${pick(WORDS)} #${int(100000)}`;
  }
}

// Build the corpus: one Buffer, value boundaries in an Int32Array.
const parts: Buffer[] = [];
const bounds: number[] = [0];
let size = 0;
while (size < TARGET) {
  const b = Buffer.from(value());
  parts.push(b);
  size += b.length;
  bounds.push(size);
}
const big = Buffer.concat(parts);
const off = Int32Array.from(bounds);
const nValues = off.length - 1;

const ctx = { hmacKey: Buffer.alloc(32, 7) };
const strategyFor = (d: string): Strategy => (d === 'email' ? 'partial' : d === 'credit_card' ? 'hash' : 'redact');

const results: { case: string; mb_per_cpu_s: number; wall_mb_per_s?: number; ns_per_value?: number; findings?: number }[] = [];

/** MB/s by CPU time of this process (user + system), so a busy host skews it less than wall time. */
function run(label: string, fn: () => number): void {
  const mbs: number[] = [];
  const wall: number[] = [];
  let found = 0;
  const mb = big.length / 1024 / 1024;
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    found = fn();
    const c = process.cpuUsage(c0);
    wall.push(mb / (Number(process.hrtime.bigint() - t0) / 1e9));
    mbs.push(mb / ((c.user + c.system) / 1e6));
  }
  const med = (a: number[]): number => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const m = med(mbs);
  results.push({ case: label, mb_per_cpu_s: m, wall_mb_per_s: med(wall), ns_per_value: (mb / m / nValues) * 1e9, findings: found });
  console.log(
    `${label.padEnd(32)} ${m.toFixed(0).padStart(5)} MB/s (cpu, median of ${ROUNDS}; best ${Math.max(...mbs).toFixed(0)}, ` +
      `wall ${med(wall).toFixed(0)})  ${((mb / m / nValues) * 1e9).toFixed(0)} ns/value  findings ${found}`,
  );
}

const all = new Scanner(DETECTOR_NAMES, []);
const custom = new Scanner(DETECTOR_NAMES, [{ name: 'order_ref', pattern: 'ORD-[0-9]{8}', strategy: 'redact' }]);

console.log(
  `corpus: ${(big.length / 1024 / 1024).toFixed(1)} MB, ${nValues} values, avg ${(big.length / nValues).toFixed(1)} B/value, node ${process.version}`,
);
run('scan (all built-in detectors)', () => {
  let n = 0;
  for (let v = 0; v < nValues; v++) n += all.scan(big, off[v]!, off[v + 1]!).length;
  return n;
});
run('scan + mask', () => {
  let n = 0;
  let bytes = 0;
  for (let v = 0; v < nValues; v++) {
    const s = off[v]!;
    const e = off[v + 1]!;
    const f = all.scan(big, s, e);
    if (f.length === 0) continue;
    n += f.length;
    bytes += maskFindings(big, s, e, f, strategyFor, ctx).length;
  }
  return bytes > 0 ? n : 0;
});
// Long text values (COPY lines, terminal output): ~4 KB of free text each.
const longParts: Buffer[] = [];
for (let n = 0; n < 4096; n++) {
  let txt = '';
  while (txt.length < 4000) txt += `${sentence()}. `;
  longParts.push(Buffer.from(txt));
}
const longBuf = Buffer.concat(longParts);
const longOff: number[] = [0];
for (const p of longParts) longOff.push(longOff[longOff.length - 1]! + p.length);
{
  const mb = longBuf.length / 1024 / 1024;
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    for (let v = 0; v < longParts.length; v++) all.scan(longBuf, longOff[v]!, longOff[v + 1]!);
    const c = process.cpuUsage(c0);
    rates.push(mb / ((c.user + c.system) / 1e6));
  }
  rates.sort((x, y) => x - y);
  results.push({ case: 'scan (4 KB free-text values)', mb_per_cpu_s: rates[Math.floor(ROUNDS / 2)]! });
  console.log(`${'scan (4 KB free-text values)'.padEnd(32)} ${rates[Math.floor(ROUNDS / 2)]!.toFixed(0).padStart(5)} MB/s (cpu, median of ${ROUNDS}; best ${rates[ROUNDS - 1]!.toFixed(0)})`);
}
run('scan (built-in + 1 custom RE2)', () => {
  let n = 0;
  for (let v = 0; v < nValues; v++) n += custom.scan(big, off[v]!, off[v + 1]!).length;
  return n;
});

// Terminal output (SSH exec/shell stdout) through the stream masker: ~80-byte
// lines of the row values above, pushed in 16 KiB chunks as sshd sends them.
{
  const lines: Buffer[] = [];
  let line = '';
  let total = 0;
  for (let v = 0; v < nValues && total < big.length; v++) {
    line += (line ? ' ' : '') + big.toString('utf8', off[v]!, off[v + 1]!);
    if (line.length >= 80) {
      const b = Buffer.from(`${line}\n`);
      lines.push(b);
      total += b.length;
      line = '';
    }
  }
  const term = Buffer.concat(lines);
  const CH = 16 * 1024;
  const mb = term.length / 1024 / 1024;
  for (const [label, sc] of [['stream (terminal output, 16 KiB)', all], ['stream (+ 1 custom RE2)', custom]] as const) {
    const rates: number[] = [];
    let out = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const c0 = process.cpuUsage();
      out = 0;
      const m = new StreamMasker(sc, strategyFor, ctx, (b) => (out += b.length));
      for (let o = 0; o < term.length; o += CH) m.push(term.subarray(o, Math.min(o + CH, term.length)));
      m.end();
      const c = process.cpuUsage(c0);
      rates.push(mb / ((c.user + c.system) / 1e6));
    }
    rates.sort((x, y) => x - y);
    results.push({ case: label, mb_per_cpu_s: rates[Math.floor(ROUNDS / 2)]! });
    console.log(`${label.padEnd(32)} ${rates[Math.floor(ROUNDS / 2)]!.toFixed(0).padStart(5)} MB/s (cpu, median of ${ROUNDS}; best ${rates[ROUNDS - 1]!.toFixed(0)}; ${mb.toFixed(1)} MB, ${out} B out)`);
  }
}

const corpusMb = big.length / 1024 / 1024;
writeResult(
  'masking',
  `Masking core (scanner and strategies, no protocol), one core, MB/s per CPU second, median of ${ROUNDS}; ` +
    `${corpusMb.toFixed(0)} MB of row values (~2% with PII), all ${DETECTOR_NAMES.length} built-in detectors; ${machineLine()}\n\n` +
    `| case | MB/s per core |\n|---|---:|\n${results.map((r) => `| ${r.case} | ${r.mb_per_cpu_s.toFixed(0)} |`).join('\n')}\n`,
  { corpus_mb: corpusMb, values: nValues, rounds: ROUNDS, results },
);
