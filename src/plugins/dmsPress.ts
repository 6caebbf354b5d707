/** `dms`: a score threshold instead of a fixed budget. @module */
import { resolveBudget } from "./budget.ts";
import { topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * DMS-style threshold eviction (Łańcucki et al., 2025, arXiv 2506.05345; kvpress `dms_press.py`,
 * its dense-prefill variant without the paper's trained evictors), after a scorer press, e.g.
 * `keydiff(k=100%) + dms(threshold=-0.2)`: the last `window` positions are protected; every older
 * position is evicted iff its score is strictly below `threshold`. So each KV head keeps as much
 * as its content deserves — budgets adapt per head and per prompt. kvpress only masks the evicted
 * entries; here they are freed. The scorer's `k` caps what a head keeps (the window first — its
 * last k if k is smaller — then the best scores at or above the threshold); `k=100%` is kvpress's
 * uncapped press. Runs once after prefill (kvpress's `decoding=False`, its default).
 */
export const dmsPress: PressSchema = {
  kind: "press",
  name: "dms",
  role: "rescore",
  when: "prefill",
  params: [
    {
      name: "threshold",
      type: { kind: "number" },
      doc: "evict entries scoring below this (on the scorer's scale)",
    },
    {
      name: "window",
      type: { kind: "int", min: 0, max: 1 << 24 },
      default: 128,
      doc: "the most recent positions, never evicted",
    },
  ],
  doc: "DMS-style threshold: evict what scores below a threshold, outside a recent window.",
  rescore: (_input, scores, budget, p) =>
    selectAboveThreshold(scores, budget, p.threshold as number, p.window as number),
};

/**
 * DMS selection per KV head from `scores` (length N each): positions `N − window … N − 1`, and
 * every earlier position whose score is ≥ `threshold`, at most `budget` (resolved with kvpress's
 * floor) in all: the window's last ones first, then the best scores (ties → lower position).
 * Never empty: with nothing above the threshold and no window, the last position stays.
 */
export function selectAboveThreshold(
  scores: Float64Array[],
  budget: Budget,
  threshold: number,
  window: number,
): number[][] {
  const n = scores[0].length;
  const cap = Math.min(n, resolveBudget(budget, n, "floor"));
  const recent = Math.min(window, n);
  return scores.map((head) => {
    const fromWindow = Math.min(recent, cap);
    const windowPositions = Array.from({ length: fromWindow }, (_, i) => n - fromWindow + i);
    const older = n - recent;
    const above: number[] = [];
    for (let j = 0; j < older; j++) if (head[j] >= threshold) above.push(j);
    const room = cap - fromWindow;
    const chosen = above.length <= room
      ? above
      : topPositions(above.map((j) => head[j]), room).map((i) => above[i]);
    const kept = chosen.concat(windowPositions);
    return kept.length > 0 ? kept : [n - 1];
  });
}
