/** `adakv`: Ada-KV head-adaptive budgets. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, positionRange } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";
import {
  keepTopAndWindow,
  SNAP_POOL_PARAM,
  SNAP_WINDOW_PARAM,
  snapPrefixScores,
} from "./snapPress.ts";

/**
 * Ada-KV (Feng et al., 2024, arXiv 2407.11550), as KVCache-Factory runs it
 * (`pyramidkv_utils.py` `AdaKVCluster`, adapted from FFY0/AdaKV): per layer, the SnapKV scores
 * of all KV heads compete for H_kv·B slots (B = k − window); with `normalize` (the default there)
 * each head's scores are first scaled by the share of its score mass in its own top B; each
 * head's count becomes its budget with a floor: budget_h = round(count_h·(1 − floor) +
 * ⌊B·floor⌋), rounded half to even in float32 as `torch.round` does — so the layer total can
 * differ from H_kv·B by the rounding.
 */
export const adakvPress: PressSchema = {
  kind: "press",
  name: "adakv",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "average entries per KV head" },
    {
      name: "floor",
      type: { kind: "fraction" },
      default: 0.2,
      doc: "share of k every head keeps regardless of the competition",
    },
    SNAP_WINDOW_PARAM,
    SNAP_POOL_PARAM,
    {
      name: "normalize",
      type: { kind: "bool" },
      default: true,
      doc: "scale each head's scores by its top-B share of score mass (KVCache-Factory's default)",
    },
  ],
  doc: "Ada-KV: head-adaptive budgets inside a layer on SnapKV scores.",
  needs: { observationWindow: (p) => p.window as number, windowVotesOnly: true },
  select: (input, p) => selectAdakv(input, p as unknown as AdakvParams),
};

/** Parameters of {@link selectAdakv}, named as in the schema. */
export interface AdakvParams {
  /** Average entries per KV head, window included. */
  k: Budget;
  /** Share of the per-head prefix budget every head keeps regardless of the competition. */
  floor: number;
  /** Observation window. */
  window: number;
  /** Pooling kernel size. */
  pool: number;
  /** Scale each head's scores by its top-B share before the competition (default true). */
  normalize?: boolean;
}

/** What Ada-KV needs from the runtime (SnapKV's window attention). */
export type AdakvInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "groupSize" | "windowAttention" | "windowVotes"
>;

/** `torch.round` of a float32 value: to the nearest integer, halves to even. */
function roundHalfEven(x: number): number {
  const down = Math.floor(x), diff = x - down;
  if (diff !== 0.5) return Math.round(x);
  return down % 2 === 0 ? down : down + 1;
}

/**
 * Ada-KV's per-head prefix budgets (window excluded), KVCache-Factory's `AdaKVCluster.update_kv`:
 * with `normalize`, head h's scores are multiplied by (sum of its top `budget`) / (sum of all);
 * all heads' (equal-length) scores are flattened and the global top `numKvHeads · budget` taken
 * (higher first; ties → lower head, then lower position, where torch.topk leaves the order
 * unspecified); `count_h` is how many fell in head h; budget_h = round(count_h·(1 − floor) +
 * ⌊budget·floor⌋) in float32, halves to even, at most the scores' length.
 */
export function adakvHeadBudgets(
  scores: readonly ArrayLike<number>[],
  budget: number,
  floor: number,
  normalize = true,
): number[] {
  const heads = scores.length;
  const length = heads === 0 ? 0 : scores[0].length;
  const total = Math.min(heads * budget, heads * length);
  const weights = scores.map((headScores) => {
    if (!normalize) return 1;
    const sorted = Array.from(headScores).sort((a, b) => b - a);
    const all = sorted.reduce((a, b) => a + b, 0);
    const top = sorted.slice(0, budget).reduce((a, b) => a + b, 0);
    return all > 0 ? top / all : 0;
  });
  const entries: { head: number; position: number; score: number }[] = [];
  scores.forEach((headScores, head) => {
    for (let j = 0; j < length; j++) {
      entries.push({ head, position: j, score: headScores[j] * weights[head] });
    }
  });
  entries.sort((a, b) => b.score - a.score || a.head - b.head || a.position - b.position);
  const counts = new Array<number>(heads).fill(0);
  for (let i = 0; i < total; i++) counts[entries[i].head]++;
  // int(base_capacity * floor_ratio): the float64 product, truncated
  const floorCapacity = Math.trunc(budget * floor);
  const share = Math.fround(1 - floor);
  return counts.map((count) => {
    const ideal = Math.fround(Math.fround(count * share) + floorCapacity);
    return Math.min(roundHalfEven(ideal), length);
  });
}

/**
 * Ada-KV selection for one layer on SnapKV scores (max pooling). With k = resolveBudget(k, N)
 * and w = min(window, N): N ≤ k keeps everything; k ≤ w keeps the last k positions; otherwise
 * every head keeps the window (as KVCache-Factory and kvpress do) and the heads compete for the
 * remaining H_kv·(k − w) prefix slots: head h keeps its top `adakvHeadBudgets(…)[h]` prefix
 * positions (by its own scores). A single head can keep more or less than k.
 */
export function selectAdakv(input: AdakvInput, params: AdakvParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const window = Math.min(params.window, n);
  if (k <= window) {
    return Array.from({ length: input.numKvHeads }, () => positionRange(n - k, n));
  }
  const scores = snapPrefixScores(input, window, params.pool, "max");
  const budgets = adakvHeadBudgets(scores, k - window, params.floor, params.normalize ?? true);
  return scores.map((headScores, kv) => keepTopAndWindow(headScores, budgets[kv], n, window));
}
