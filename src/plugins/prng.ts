/** A small seeded pseudo-random generator for reproducible presses. @module */

/** Mixes a 32-bit integer into a well-spread 32-bit hash (the murmur3 finaliser). */
export function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** A 32-bit seed derived from several integers (e.g. seed, layer, KV head), order-sensitive. */
export function combineSeeds(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) h = mix32((h ^ mix32(part >>> 0)) + 0x9e3779b9);
  return h;
}

/**
 * A mulberry32 generator: returns a function yielding floats uniform in [0, 1). The same seed
 * always gives the same sequence on every platform (integer arithmetic only).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
