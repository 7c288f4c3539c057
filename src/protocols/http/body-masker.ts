// TEMPORARY STUB (replaced by the h-mask branch)
import type { Transform } from 'node:stream';
import type { MaskingSet } from '../../policy/masking/ruleset.js';
import type { MaskContext } from '../../policy/masking/strategies.js';
import type { MaskingCounts } from '../../session/session.js';
export type BodyMasker = { kind: 'none' } | { kind: 'refuse'; reason: string } | { kind: 'mask'; stream: Transform; counts: MaskingCounts; maskAll(b: Buffer): Buffer };
export function createBodyMasker(_o: { contentType: string | undefined; contentEncoding: string | undefined; set: MaskingSet; ctx: MaskContext }): BodyMasker {
  return { kind: 'none' };
}
