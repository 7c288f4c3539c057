/**
 * Small Map-based LRU cache. Map iteration order is insertion order, so the
 * first key is the least recently used one; a hit re-inserts its key.
 * Bounded by entry count and, optionally, by a total weight (e.g. bytes).
 */
export interface LruOptions<K, V> {
  maxEntries: number;
  /** Upper bound on the sum of weigh(key, value) over all entries. */
  maxWeight?: number;
  weigh?: (key: K, value: V) => number;
}

export class LruCache<K, V> {
  readonly #map = new Map<K, { value: V; weight: number }>();
  readonly #maxEntries: number;
  readonly #maxWeight: number;
  readonly #weigh: ((key: K, value: V) => number) | undefined;
  #weight = 0;

  constructor(opts: LruOptions<K, V>) {
    if (!(opts.maxEntries >= 1)) throw new RangeError('maxEntries must be >= 1');
    this.#maxEntries = opts.maxEntries;
    this.#maxWeight = opts.maxWeight ?? Infinity;
    this.#weigh = opts.weigh;
  }

  get size(): number {
    return this.#map.size;
  }

  get weight(): number {
    return this.#weight;
  }

  get(key: K): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  /** Stores value; an entry heavier than maxWeight on its own is not stored. */
  set(key: K, value: V): void {
    const weight = this.#weigh ? this.#weigh(key, value) : 0;
    this.delete(key);
    if (weight > this.#maxWeight) return;
    this.#map.set(key, { value, weight });
    this.#weight += weight;
    while (this.#map.size > this.#maxEntries || this.#weight > this.#maxWeight) {
      const oldest = this.#map.keys().next().value as K;
      this.delete(oldest);
    }
  }

  delete(key: K): boolean {
    const e = this.#map.get(key);
    if (e === undefined) return false;
    this.#map.delete(key);
    this.#weight -= e.weight;
    return true;
  }

  clear(): void {
    this.#map.clear();
    this.#weight = 0;
  }
}
