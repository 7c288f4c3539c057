// The README's benchmark chart, as hand-written SVG (no dependency): for each
// panel (pgbench -S simple and extended at -c 8), one horizontal bar per path
// with its TPS as a share of direct, a solid line at direct (1.0) and a dashed
// line at pgbouncer's share: the bar Sluice has to reach.

export interface ChartPanel {
  title: string;
  bars: { label: string; share: number; kind: 'pgbouncer' | 'sluice' | 'governed' }[];
  /** pgbouncer's share in this panel, when measured. */
  reference?: number;
}

const COLORS = { pgbouncer: '#9e9e9e', sluice: '#5b8def', governed: '#e8710a' };
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function renderChart(title: string, subtitle: string, panels: ChartPanel[]): string {
  const W = 760;
  const left = 190; // labels
  const right = 60; // values
  const barH = 18;
  const gap = 6;
  const plotW = W - left - right;
  const max = Math.max(1, ...panels.flatMap((p) => p.bars.map((b) => b.share)));
  const top = Math.ceil((max * 1.02) / 0.2) * 0.2;
  const x = (v: number) => left + (Math.max(0, v) / top) * plotW;
  const out: string[] = [];
  let y = 0;
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  y = 56;
  for (const p of panels) {
    out.push(`<text x="${left}" y="${y + 14}" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
    y += 24;
    const y0 = y;
    const h = p.bars.length * (barH + gap);
    // Grid and axis labels every 0.2.
    for (let t = 0; t <= top + 1e-9; t += 0.2) {
      const gx = x(t).toFixed(1);
      out.push(`<line x1="${gx}" y1="${y0 - 4}" x2="${gx}" y2="${y0 + h}" stroke="#e6e6e6"/>`);
      out.push(`<text x="${gx}" y="${y0 + h + 12}" text-anchor="middle" font-size="10" fill="#777">${t.toFixed(1)}</text>`);
    }
    for (const b of p.bars) {
      out.push(`<text x="${left - 8}" y="${y + barH - 5}" text-anchor="end" font-size="12">${esc(b.label)}</text>`);
      out.push(`<rect x="${left}" y="${y}" width="${(x(b.share) - left).toFixed(1)}" height="${barH}" fill="${COLORS[b.kind]}"/>`);
      out.push(`<text x="${(x(b.share) + 4).toFixed(1)}" y="${y + barH - 5}" font-size="11">${Number.isFinite(b.share) ? b.share.toFixed(2) : 'n/a'}</text>`);
      y += barH + gap;
    }
    const dx = x(1).toFixed(1);
    out.push(`<line x1="${dx}" y1="${y0 - 6}" x2="${dx}" y2="${y0 + h}" stroke="#222" stroke-width="1.5"/>`);
    out.push(`<text x="${dx}" y="${y0 - 9}" text-anchor="middle" font-size="10">direct</text>`);
    if (p.reference !== undefined && Number.isFinite(p.reference)) {
      const rx = x(p.reference).toFixed(1);
      out.push(`<line x1="${rx}" y1="${y0 - 6}" x2="${rx}" y2="${y0 + h}" stroke="#444" stroke-width="1.5" stroke-dasharray="5,3"/>`);
      out.push(`<text x="${rx}" y="${y0 + h + 24}" text-anchor="middle" font-size="10" fill="#444">pgbouncer ${p.reference.toFixed(2)}</text>`);
    }
    y += 40;
  }
  out.push(`<text x="${left}" y="${y}" font-size="10" fill="#555">TPS as a share of direct (higher is better). Dashed: pgbouncer's share, the target for fully governed Sluice.</text>`);
  const H = y + 12;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">\n` +
    `<rect width="${W}" height="${H}" fill="#fff"/>\n${out.join('\n')}\n</svg>\n`
  );
}
