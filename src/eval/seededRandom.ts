/**
 * A small seeded pseudo-random generator (mulberry32) for reproducible prompts: the same seed
 * always gives the same haystacks, needles and keys.
 *
 * @module
 */

/** A deterministic random source. */
export class SeededRandom {
  #state: number;

  /** Starts a stream from a 32-bit seed. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/**
 * A 32-bit seed derived from a base seed and labels (FNV-1a over their text), so that every
 * sample gets its own stream: the same labels always give the same seed, and adding or removing
 * other cells of a grid does not change it.
 */
export function deriveSeed(seed: number, ...labels: (string | number | null)[]): number {
  let hash = 0x811c9dc5;
  for (const char of [String(seed >>> 0), ...labels.map(String)].join("\u0000")) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}
