/**
 * Helpers of the GPU runtime tests: golden-data comparison and an Engine that is always closed.
 *
 * @module
 */

import { Engine, type EngineOptions } from "../../src/runtime/engine.ts";

/** Largest |actual[i] - expected[i]|; the lengths must agree. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`length ${actual.length} != expected length ${expected.length}`);
  }
  let max = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

/** max - min of a row (the scale relative tolerances are taken against). */
export function range(values: ArrayLike<number>): number {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]);
    hi = Math.max(hi, values[i]);
  }
  return hi - lo;
}

/** Opens `dir` on the GPU, runs `fn`, and always closes the engine. */
export async function withEngine<T>(
  dir: string,
  fn: (engine: Engine) => Promise<T>,
  opts: EngineOptions = {},
): Promise<T> {
  const engine = await Engine.open(dir, opts);
  try {
    return await fn(engine);
  } finally {
    engine.close();
  }
}

/** Greedy decoding with no stop ids. */
export const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random integer in [lo, hi] from `rand`. */
export function randomInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** Natural-log probability of `id` under the logits `row` (a float64 log-softmax). */
export function logSoftmaxAt(row: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return row[id] - max - Math.log(sum);
}
