// Which masking applies to a session: the union of every masking rule set whose
// `match` fits it, compiled once per combination and shared by sessions.

import type { MaskingConfig } from '../../config/types.js';
import { matchFits } from '../engine.js';
import type { Identity } from '../../identity/types.js';
import { foldIdentifierParts } from '../sql/names.js';
import { Scanner } from './scanner.js';
import { parseJsonPath, type PathStep } from './json-path.js';
import type { CustomDetector, DetectorName, Strategy } from './types.js';

/** A column as the catalog knows it; schema and table are absent for computed columns. */
export interface ColumnRef {
  schema?: string;
  table?: string;
  column: string;
}

type Part = (s: string) => boolean;

function glob(p: string): Part {
  if (p === '*') return () => true;
  if (!p.includes('*')) return (s) => s === p;
  const re = new RegExp('^' + p.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return (s) => re.test(s);
}

interface ColumnRule {
  schema?: Part;
  table?: Part;
  column: Part;
  strategy: Strategy;
  pattern: string;
}

/**
 * `email` matches a column named email in any table (and a computed column
 * named email); `customers.email` and `*.ssn` need the table; `public.customers.*`
 * needs schema and table. Names fold like Postgres identifiers.
 */
function compileColumn(pattern: string, strategy: Strategy): ColumnRule {
  const parts = foldIdentifierParts(pattern).map(glob);
  const column = parts[parts.length - 1]!;
  const table = parts.length >= 2 ? parts[parts.length - 2] : undefined;
  const schema = parts.length >= 3 ? parts[parts.length - 3] : undefined;
  return { schema, table, column, strategy, pattern };
}

/** A `fields:` rule compiled for the JSON masker; pattern is the path as written (for accounting). */
export interface JsonFieldRule {
  steps: readonly PathStep[];
  strategy: Strategy;
  pattern: string;
}

function compileField(path: string, strategy: Strategy): JsonFieldRule {
  const p = parseJsonPath(path);
  if (typeof p === 'string') throw new Error(`masking: ${p}`); // the config loader reports these with their line
  return { steps: p.steps, strategy, pattern: path };
}

export class MaskingSet {
  readonly names: string[];
  readonly scanner: Scanner | null;
  readonly allowBinaryCopy: boolean;
  private readonly columns: ColumnRule[];
  /** `fields:` rules in config order (the first that matches a value wins). */
  readonly jsonFields: readonly JsonFieldRule[];
  private readonly detectorStrategy = new Map<string, Strategy>();

  constructor(sets: MaskingConfig[]) {
    this.names = sets.map((s) => s.name);
    this.columns = sets.flatMap((s) => s.columns.map((c) => compileColumn(c.column, c.strategy)));
    this.jsonFields = sets.flatMap((s) => (s.fields ?? []).map((f) => compileField(f.path, f.strategy)));
    const detectors = new Set<DetectorName>();
    const custom: CustomDetector[] = [];
    for (const s of sets) {
      for (const d of s.detectors) {
        detectors.add(d.name as DetectorName);
        if (!this.detectorStrategy.has(d.name)) this.detectorStrategy.set(d.name, d.strategy);
      }
      for (const c of s.custom) {
        custom.push(c);
        if (!this.detectorStrategy.has(c.name)) this.detectorStrategy.set(c.name, c.strategy);
      }
    }
    this.scanner = detectors.size || custom.length ? new Scanner([...detectors], custom) : null;
    this.allowBinaryCopy = sets.length > 0 && sets.every((s) => s.allow_binary_copy);
  }

  get hasColumnRules(): boolean {
    return this.columns.length > 0;
  }

  /** Whether a `columns:` rule has no table part (`email`), so it also names JSON members and CSV columns. */
  get hasBareColumnRules(): boolean {
    return this.columns.some((c) => c.table === undefined);
  }

  /** The strategy for a detector's findings. */
  readonly strategyFor = (detector: string): Strategy => this.detectorStrategy.get(detector) ?? 'redact';

  /** The first column rule that matches, with the pattern that matched (for accounting). */
  columnRule(c: ColumnRef): { strategy: Strategy; pattern: string } | undefined {
    for (const r of this.columns) {
      if (!r.column(c.column)) continue;
      if (r.table && (c.table === undefined || !r.table(c.table))) continue;
      if (r.schema && (c.schema === undefined || !r.schema(c.schema))) continue;
      return r;
    }
    return undefined;
  }
}

export class MaskingResolver {
  private readonly sets = new Map<string, MaskingSet>();

  constructor(private readonly config: MaskingConfig[]) {}

  resolve(identity: Identity, target: string, protocol: string): MaskingSet | null {
    const idx: number[] = [];
    this.config.forEach((m, i) => matchFits(m.match, identity, target, protocol) && idx.push(i));
    if (idx.length === 0) return null;
    const key = idx.join(',');
    let set = this.sets.get(key);
    if (!set) {
      set = new MaskingSet(idx.map((i) => this.config[i]!));
      this.sets.set(key, set);
    }
    return set;
  }
}
