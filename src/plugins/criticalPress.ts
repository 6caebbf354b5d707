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
 * pins `int(f·N·first)`, as kvpress's `int((1−r)·L·first_stage_ratio)`).
 *
 * `adaptive=true` is kvpress's `CriticalAdaKVPress` (Ada-KV's head-adaptive budgets): each head
 * first pins its top `int(k·safeguard)` by score; the layer's H_kv·k best (pinned first) are
 * counted per head to give its budget b_h; then each head pins its top `int(b_h·first)` and keeps
 * b_h in all by the rescaled score — the heads' budgets differ and sum to H_kv·k, and the cache
 * really shrinks per head (kvpress masks instead).
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
    {
      name: "adaptive",
      type: { kind: "bool" },
      default: false,
      doc: "head-adaptive budgets within the layer (kvpress CriticalAdaKVPress)",
    },
    {
      name: "safeguard",
      type: { kind: "fraction" },
      default: 0.2,
      doc: "with adaptive: share of the budget every head keeps at least (Ada-KV's alpha)",
    },
  ],
  doc: "CriticalKV: pin the scorer's best half, fill the rest by score × ‖v·W_o‖₁.",
  needs: { projectedValueNorms: true },
  rescore: (input, scores, budget, p) =>
    p.adaptive
      ? selectCriticalAdaptive(
        input,
        scores,
        budget,
        p.eps as number,
        p.first as number,
        p.safeguard as number,
      )
      : selectCritical(input, scores, budget, p.eps as number, p.first as number),
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

/**
 * kvpress's CriticalAdaKV selection (see {@link criticalPress}, `adaptive=true`): per KV head, the
 * positions it keeps, b_h of them, the b_h summing to H_kv·k over the layer.
 */
export function selectCriticalAdaptive(
  input: Pick<LayerScoresInput, "promptLength" | "projectedValueNorms">,
  scores: Float64Array[],
  budget: Budget,
  eps: number,
  first: number,
  safeguard: number,
): number[][] {
  const n = input.promptLength, heads = scores.length;
  const k = Math.max(1, Math.min(n, resolveBudget(budget, n, "floor")));
  if (k >= n) return scores.map(() => Array.from({ length: n }, (_, i) => i));
  if (!input.projectedValueNorms) throw new Error("critical needs the values' output norms");
  // Safeguard: each head's top int(k·safeguard) are pinned.
  const pinned = scores.map((s) => {
    const out = Float64Array.from(s);
    for (const i of topPositions(s, Math.floor(k * safeguard))) out[i] = Infinity;
    return out;
  });
  // Budgets: how many of the layer's H_kv·k best each head holds.
  const flat = new Float64Array(heads * n);
  pinned.forEach((s, h) => flat.set(s, h * n));
  const budgets = new Array(heads).fill(0);
  for (const i of topPositions(flat, heads * k)) budgets[Math.floor(i / n)]++;
  return pinned.map((s, h) => {
    // Stage 1: the head's top int(b_h·first) by score (its safeguard first); stage 2: rescaled.
    const stage1 = topPositions(s, Math.floor(budgets[h] * first));
    const weights = input.projectedValueNorms!(h);
    // A pinned score stays above every other unless its value adds nothing (w = 0), as in kvpress.
    const rescaled = Float64Array.from(
      s,
      (x, i) => x === Infinity ? (weights[i] > 0 ? Infinity : 0) : (x + eps) * weights[i],
    );
    for (const i of stage1) rescaled[i] = Infinity;
    return topPositions(rescaled, budgets[h]);
  });
}
