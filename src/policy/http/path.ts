// TEMPORARY STUB (replaced by the h-pol branch)
export function normalizePath(raw: string): { path: string; query: string } | { error: string } {
  const q = raw.indexOf('?');
  const p = q < 0 ? raw : raw.slice(0, q);
  if (/%2f|%5c|\\|;/i.test(p)) return { error: 'ambiguous path' };
  return { path: new URL(p, 'http://x').pathname, query: q < 0 ? '' : raw.slice(q + 1) };
}
