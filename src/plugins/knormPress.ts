/** `knorm`: keep the keys with the lowest L2 norm. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * Knorm (Devoto et al., 2024, arXiv 2406.11430; kvpress `knorm_press.py`): keys with a low L2
 * norm attract attention, so each KV head keeps its `k` lowest-norm keys. Query-agnostic.
 */
export const knormPress: PressSchema = {
  kind: "press",
  name: "knorm",
  role: "select",
  when: "prefill",
  params: [{ name: "k", type: { kind: "budget" }, doc: "entries kept per KV head" }],
  doc: "Knorm: keep the k keys with the lowest L2 norm.",
  needs: { keys: true },
  select: (input, p) => selectKnorm(input, p as unknown as KnormParams),
  score: (input) => knormScores(input),
};

/** Parameters of {@link selectKnorm}. */
export interface KnormParams {
  /** Entries kept per KV head. */
  k: Budget;
}

/** What Knorm needs from the runtime: the post-RoPE keys of each KV head. */
export type KnormInput = Pick<LayerScoresInput, "promptLength" | "numKvHeads" | "headDim" | "keys">;

/** L2 norm (float64) of each of the `keys.length / headDim` rows of `keys`. */
export function keyNorms(keys: ArrayLike<number>, headDim: number): Float64Array {
  const rows = keys.length / headDim;
  const norms = new Float64Array(rows);
  for (let t = 0; t < rows; t++) {
    let sum = 0;
    for (let d = 0; d < headDim; d++) sum += keys[t * headDim + d] ** 2;
    norms[t] = Math.sqrt(sum);
  }
  return norms;
}

/**
 * Knorm selection: each KV head keeps the k positions whose keys have the LOWEST L2 norm (ties →
 * lower position); everything when N ≤ k.
 */
export function selectKnorm(input: KnormInput, params: KnormParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const kept: number[][] = [];
  for (let kv = 0; kv < input.numKvHeads; kv++) {
    const keys = input.keys(kv);
    if (keys.length !== n * input.headDim) {
      throw new RangeError(`keys of KV head ${kv} must be ${n}×${input.headDim}`);
    }
    const negatedNorms = keyNorms(keys, input.headDim).map((norm) => -norm);
    kept.push(topPositions(negatedNorms, k));
  }
  return kept;
}

/** Knorm's score of every prompt position per KV head: minus the key's L2 norm (kvpress). */
export function knormScores(input: KnormInput): Float64Array[] {
  return Array.from(
    { length: input.numKvHeads },
    (_, kv) => keyNorms(input.keys(kv), input.headDim).map((norm) => -norm),
  );
}
