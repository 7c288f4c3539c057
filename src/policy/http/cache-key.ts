// TEMPORARY STUB (replaced by the h-pol branch)
import type { PolicySet } from '../engine.js';
export function httpCacheKey(_set: PolicySet, text: string, _h: Record<string, string | string[] | undefined>, _body: unknown): string {
  return text;
}
