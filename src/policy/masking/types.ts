// Shared types of the masking core: detector names, strategies, findings.
// The core works on UTF-8 bytes in Buffers; every offset is a byte offset.

export type DetectorName =
  | 'credit_card'
  | 'email'
  | 'us_ssn'
  | 'phone'
  | 'iban'
  | 'aws_access_key'
  | 'jwt'
  | 'private_key';

export const DETECTOR_NAMES: readonly DetectorName[] = Object.freeze([
  'credit_card',
  'email',
  'us_ssn',
  'phone',
  'iban',
  'aws_access_key',
  'jwt',
  'private_key',
] as const);

export type Strategy = 'redact' | 'partial' | 'hash' | 'null';

export const STRATEGIES: readonly Strategy[] = Object.freeze(['redact', 'partial', 'hash', 'null'] as const);

/** A user-defined detector: an RE2 pattern (no backtracking, linear time). */
export interface CustomDetector {
  name: string;
  pattern: string;
  strategy: Strategy;
}

/**
 * One sensitive span. Offsets are byte offsets relative to the start of the
 * scanned range (0 = buf[start]); end is exclusive.
 */
export interface Finding {
  start: number;
  end: number;
  detector: string;
}

export function isDetectorName(s: string): s is DetectorName {
  return (DETECTOR_NAMES as readonly string[]).includes(s);
}

export function isStrategy(s: string): s is Strategy {
  return (STRATEGIES as readonly string[]).includes(s);
}
