/** `pyramid`: PyramidKV layer-wise budgets. @module */
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
 * PyramidKV (Cai et al., 2024, arXiv 2406.02069; Zefan-Cai/KVCache-Factory `pyramidkv_utils.py`):
 * SnapKV scoring with per-layer budgets (window excluded) decreasing linearly from
 * max = 2(k − w) − min at layer 0 to min = (k − w)/β at the last layer.
 */
export const pyramidPress: PressSchema = {
  kind: "press",
  name: "pyramid",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "average entries per KV head, window included" },
    {
      name: "beta",
      type: { kind: "number", min: 1 },
      default: 20,
      doc: "ratio between the largest and smallest layer budget",
    },
    SNAP_WINDOW_PARAM,
    SNAP_POOL_PARAM,
  ],
  doc: "PyramidKV: SnapKV scores with linearly decreasing per-layer budgets.",
  needs: { observationWindow: (p) => p.window as number, windowVotesOnly: true },
  select: (input, p) => selectPyramid(input, p as unknown as PyramidParams),
};

/** Parameters of {@link selectPyramid}, named as in the schema. */
export interface PyramidParams {
  /** Average entries per KV head, window included. */
  k: Budget;
  /** Ratio between the largest and smallest layer budget. */
  beta: number;
  /** Observation window. */
  window: number;
  /** Pooling kernel size. */
  pool: number;
}

/** What PyramidKV needs from the runtime (SnapKV's window attention plus the layer index). */
export type PyramidInput = Pick<
  LayerScoresInput,
  | "layer"
  | "numLayers"
  | "promptLength"
  | "numKvHeads"
  | "groupSize"
  | "windowAttention"
  | "windowVotes"
>;

/**
 * PyramidKV's prefix budget (window EXCLUDED) of `layer`, METHODS.md's real-valued formula with
 * B = k − window: min = B/β, max = 2B − min; if max ≥ N − window then max = N − window,
 * min = 2B − max; layer l gets round(max − l·(max − min)/(L − 1)) (halves up). If N < 2B every
 * layer gets B (the official "uniform" branch), as does a one-layer model. Budgets are
 * symmetric about B, so the layer average is B (± rounding). The official code floors min and
 * the step, which lifts the average above B (e.g. +15 % for k = 128, window 32, 32 layers);
 * we keep the promised average instead. Requires k > window.
 */
export function pyramidPrefixBudget(
  k: number,
  window: number,
  beta: number,
  layer: number,
  numLayers: number,
  promptLength: number,
): number {
  const base = k - window;
  if (promptLength < 2 * base || numLayers < 2) return base;
  let minBudget = base / beta;
  let maxBudget = 2 * base - minBudget;
  if (maxBudget >= promptLength - window) {
    maxBudget = promptLength - window;
    minBudget = 2 * base - maxBudget;
  }
  const step = (maxBudget - minBudget) / (numLayers - 1);
  return Math.round(maxBudget - layer * step);
}

/**
 * PyramidKV selection for one layer: with k = resolveBudget(params.k, N), w = min(window, N):
 * N ≤ k keeps everything; k ≤ w keeps the last k positions (as {@link selectSnap} does);
 * otherwise each KV head keeps its top {@link pyramidPrefixBudget} prefix positions by SnapKV
 * scores (max pooling, as in the official LongBench runs: `pooling="maxpool"`) plus the window.
 */
export function selectPyramid(input: PyramidInput, params: PyramidParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const window = Math.min(params.window, n);
  if (k <= window) {
    return Array.from({ length: input.numKvHeads }, () => positionRange(n - k, n));
  }
  const budget = pyramidPrefixBudget(k, window, params.beta, input.layer, input.numLayers, n);
  const prefixBudget = Math.max(0, Math.min(budget, n - window));
  const scores = snapPrefixScores(input, window, params.pool, "max");
  return scores.map((headScores) => keepTopAndWindow(headScores, prefixBudget, n, window));
}
