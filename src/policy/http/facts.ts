// TEMPORARY STUB (replaced by the h-pol branch)
import type { QueryFacts } from '../sql/facts.js';
export function httpFacts(i: { method: string; path: string; query: string; headers: Record<string, string | string[] | undefined>; body?: unknown; bodyError?: string }): QueryFacts {
  return { statements: [{ kind: 'http', tables_read: [], tables_written: [], functions: [], changes_state: !['GET', 'HEAD', 'OPTIONS'].includes(i.method), via: 'top' as never, text: `${i.method} ${i.path}` }], normalized: `${i.method} ${i.path}` };
}
