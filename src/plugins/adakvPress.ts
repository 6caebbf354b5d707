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
 * Ada-KV (Feng et al., 2024, arXiv 2407.11550): per layer, the SnapKV scores of all KV heads
 * compete for H_kv·k slots; each head's count becomes its budget with a safeguard floor:
 * budget_h = round(count_h·(1 − floor) + floor·k).
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
}

/** What Ada-KV needs from the runtime (SnapKV's window attention). */
export type AdakvInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "groupSize" | "windowAttention" | "windowVotes"
>;

/**
 * Ada-KV's per-head prefix budgets (window excluded). All heads' `scores` (equal lengths) are
 * flattened and the global top `numKvHeads · budget` entries taken (higher score first, ties →
 * lower head, then lower position); `count_h` is how many fell in head h. The ideal budget is
 * `count_h·(1 − floor) + floor·budget`; it is rounded by largest remainders (each head gets the
 * floor of its ideal, the leftover units go to the largest fractional parts, ties → lower head),
 * so the budgets add up to exactly `numKvHeads · budget` and each is within 1 of its ideal.
 */
export function adakvHeadBudgets(
  scores: readonly ArrayLike<number>[],
  budget: number,
  floor: number,
): number[] {
  const heads = scores.length;
  const length = heads === 0 ? 0 : scores[0].length;
  const total = Math.min(heads * budget, heads * length);
  const entries: { head: number; position: number; score: number }[] = [];
  scores.forEach((headScores, head) => {
    for (let j = 0; j < length; j++) entries.push({ head, position: j, score: headScores[j] });
  });
  entries.sort((a, b) => b.score - a.score || a.head - b.head || a.position - b.position);
  const counts = new Array<number>(heads).fill(0);
  for (let i = 0; i < total; i++) counts[entries[i].head]++;
  const ideal = counts.map((count) => count * (1 - floor) + floor * budget);
  const budgets = ideal.map((x) => Math.floor(x + 1e-9));
  let leftover = total - budgets.reduce((a, b) => a + b, 0);
  const byRemainder = ideal
    .map((x, head) => ({ head, remainder: x - budgets[head] }))
    .sort((a, b) => b.remainder - a.remainder || a.head - b.head);
  for (const { head } of byRemainder) {
    if (leftover <= 0) break;
    budgets[head]++;
    leftover--;
  }
  return budgets.map((b) => Math.min(b, length));
}

/**
 * Ada-KV selection for one layer on SnapKV scores (max pooling). With k = resolveBudget(k, N)
 * and w = min(window, N): N ≤ k keeps everything; k ≤ w keeps the last k positions; otherwise
 * every head keeps the window (as kvpress's AdaKV does) and the heads compete for the
 * remaining H_kv·(k − w) prefix slots: head h keeps its top `adakvHeadBudgets(…)[h]` prefix
 * positions. The layer total is exactly H_kv·k; a single head can keep more or less than k.
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
  const budgets = adakvHeadBudgets(scores, k - window, params.floor);
  return scores.map((headScores, kv) => keepTopAndWindow(headScores, budgets[kv], n, window));
}
