/** `random`: a seeded uniform baseline. @module */
import { resolveBudget } from "./budget.ts";
import { allPositions, keepAllHeads } from "./press.ts";
import { combineSeeds, seededRandom } from "./prng.ts";
import type { Budget, PressSchema } from "./schema.ts";

/** Random eviction: each KV head keeps `k` entries drawn uniformly (seeded). A sanity baseline. */
export const randomPress: PressSchema = {
  kind: "press",
  name: "random",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "entries kept per KV head" },
    { name: "seed", type: { kind: "int", min: 0 }, default: 0, doc: "random seed" },
  ],
  doc: "Random: keep k uniformly drawn entries per KV head (seeded baseline).",
  select: (input, p) => selectRandom(input, p as unknown as RandomParams),
};

/** Parameters of {@link selectRandom}. */
export interface RandomParams {
  /** Entries kept per KV head. */
  k: Budget;
  /** Seed (a non-negative integer). */
  seed: number;
}

/**
 * Random selection: each KV head keeps k positions drawn uniformly without replacement (a
 * partial Fisher–Yates shuffle driven by {@link seededRandom} seeded with
 * {@link combineSeeds}(seed, layer, kvHead)), sorted; everything when N ≤ k. Needs no scores.
 */
export function selectRandom(
  input: { layer: number; promptLength: number; numKvHeads: number },
  params: RandomParams,
): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const kept: number[][] = [];
  for (let kv = 0; kv < input.numKvHeads; kv++) {
    const random = seededRandom(combineSeeds(params.seed, input.layer, kv));
    const order = allPositions(n);
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(random() * (n - i));
      [order[i], order[j]] = [order[j], order[i]];
    }
    kept.push(order.slice(0, k).sort((a, b) => a - b));
  }
  return kept;
}
