// TEMPORARY STUB (replaced by the h-har branch)
import type { Frame } from '../../recording/types.js';
import type { ReplayOptions } from '../kit/module.js';
export function renderHttp(_f: Iterable<Frame>, _o: ReplayOptions): string[] {
  return [];
}
