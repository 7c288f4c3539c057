// Plain aligned tables for the CLI.

export function printTable(rows: string[][]): void {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd() + '\n');
}
