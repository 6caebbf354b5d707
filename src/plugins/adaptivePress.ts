/** `adaptive`: kvpress's AdaKVPress, head-adaptive budgets for any scorer. @module */
import { resolveBudget } from "./budget.ts";
import { topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * Ada-KV's head-adaptive budgets over any scorer (Feng et al., 2024, "Ada-KV: Optimizing KV Cache
 * Eviction by Adaptive Budget Allocation", arXiv 2407.11550; kvpress `adakv_press.py`,
 * `AdaKVPress`), after a scorer press, e.g. `expected(k=25%, eps=0.01) + adaptive` (kvpress's
 * registry entry "expected_attention"): with k the scorer's budget per KV head (kvpress's
 * `max(1, int(N·(1−r)))`), every head first pins its top `int(k·safeguard)` positions (at least
 * one, so that no head is left empty; kvpress pins none at safeguard 0); then the layer keeps
 * its H_kv·k best entries over all heads at once, pinned first, so the heads' budgets differ and
 * sum to H_kv·k. The cache really shrinks per head (kvpress masks the evicted keys instead). Ties
 * go to the lower position, then the lower KV head.
 */
export const adaptivePress: PressSchema = {
  kind: "press",
  name: "adaptive",
  role: "rescore",
  when: "prefill",
  params: [{
    name: "safeguard",
    type: { kind: "fraction" },
    default: 0.2,
    doc: "share of the budget every head keeps at least (kvpress's alpha_safeguard)",
  }],
  doc: "Ada-KV budgets for any scorer: the layer's best H_kv·k entries, each head pinning a share.",
  rescore: (_input, scores, budget, p) => selectAdaptive(scores, budget, p.safeguard as number),
};

/**
 * kvpress's AdaKVPress selection from per-KV-head `scores` (all of length N): per head, the kept
 * positions in increasing order (see {@link adaptivePress}).
 */
export function selectAdaptive(
  scores: Float64Array[],
  budget: Budget,
  safeguard: number,
): number[][] {
  const n = scores[0].length, heads = scores.length;
  const k = Math.min(n, resolveBudget(budget, n, "floor"));
  if (k >= n) return scores.map(() => Array.from({ length: n }, (_, i) => i));
  const pinnedCount = Math.max(1, Math.floor(k * safeguard));
  const flat = new Float64Array(heads * n);
  scores.forEach((s, h) => {
    flat.set(s, h * n);
    for (const i of topPositions(s, pinnedCount)) flat[h * n + i] = Infinity;
  });
  const kept: number[][] = scores.map(() => []);
  for (const i of topPositions(flat, heads * k)) kept[Math.floor(i / n)].push(i % n);
  return kept;
}
