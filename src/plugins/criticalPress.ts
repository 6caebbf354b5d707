/** `critical`: CriticalKV, a scorer's scores reweighted by what each value adds to the output. @module */
import { resolveBudget } from "./budget.ts";
import { type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * CriticalKV (Feng et al., 2025, "Identify Critical KV Cache in LLM Inference from an Output
 * Perturbation Perspective", arXiv 2502.03805; kvpress `criticalkv_press.py`, `CriticalKVPress`),
 * after a scorer press, e.g. `snap(k=25%) + critical`: per KV head, stage 1 pins the top
 * `int(k·first)` positions by the scorer's score; stage 2 rescales every score as
 * `(score + eps)·w_i`, where w_i is the L1 norm over the hidden dimension of v_i·W_o^(h)
 * averaged over the group's query heads (computed on the GPU), and the head keeps the pinned
 * positions plus the best rescaled ones, k in all. Its budget is the scorer's (a fraction f of N
 * pins `int(f·N·first)`, as kvpress's `int((1−r)·L·first_stage_ratio)`). kvpress's
 * `CriticalAdaKVPress` (head-adaptive budgets) is not here yet.
 */
export const criticalPress: PressSchema = {
  kind: "press",
  name: "critical",
  role: "rescore",
  when: "prefill",
  params: [
    {
      name: "eps",
      type: { kind: "number", min: 0 },
      default: 0.0001,
      doc: "added to each score before weighting by the value's output norm",
    },
    {
      name: "first",
      type: { kind: "fraction" },
      default: 0.5,
      doc: "share of the budget pinned by the scorer's own ranking (stage 1)",
    },
  ],
  doc: "CriticalKV: pin the scorer's best half, fill the rest by score × ‖v·W_o‖₁.",
  needs: { projectedValueNorms: true },
  rescore: (input, scores, budget, p) =>
    selectCritical(input, scores, budget, p.eps as number, p.first as number),
};

/**
 * CriticalKV's selection per KV head (see {@link criticalPress}): k = the budget (kvpress's
 * floor), `pinned = int(k_exact · first)` where k_exact is `f·N` for a fraction f, else k; the
 * pinned top positions by `scores`, then the best `(score + eps)·w` among the rest (ties → lower
 * position), in increasing order.
 */
export function selectCritical(
  input: Pick<LayerScoresInput, "promptLength" | "projectedValueNorms">,
  scores: Float64Array[],
  budget: Budget,
  eps: number,
  first: number,
): number[][] {
  const n = input.promptLength;
  const k = Math.min(n, resolveBudget(budget, n, "floor"));
  const exact = "fraction" in budget ? budget.fraction * n : k;
  const pinnedCount = Math.min(k, Math.floor(exact * first));
  if (!input.projectedValueNorms) throw new Error("critical needs the values' output norms");
  return scores.map((head, kv) => {
    if (k >= n) return Array.from({ length: n }, (_, i) => i);
    const pinned = topPositions(head, pinnedCount);
    const weights = input.projectedValueNorms!(kv);
    const rescaled = Float64Array.from(head, (s, i) => (s + eps) * weights[i]);
    for (const i of pinned) rescaled[i] = Infinity;
    return topPositions(rescaled, k);
  });
}
