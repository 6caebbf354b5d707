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
 * PyramidKV (Cai et al., 2024, arXiv 2406.02069): SnapKV scoring with per-layer budgets that
 * shrink linearly with depth. The default `schedule=official` computes the budgets exactly as
 * Zefan-Cai/KVCache-Factory `pyramidkv/pyramidkv_utils.py` (`PyramidKVCluster.update_kv`) does,
 * in integer arithmetic and with its three regimes by prompt length (see
 * {@link pyramidPrefixBudget}); `schedule=linear` is our earlier real-valued schedule, whose layer
 * budgets average exactly k − window. What we still do differently from the official code:
 * - scores and selections are per KV head (votes averaged over the GQA group's query heads); the
 *   official default `kv_cache_granularity=query_head` repeats K/V so each query head selects
 *   and stores its own copy;
 * - defaults: max pooling, kernel 7, window 32 (its `run_longbench.py`: max pooling, kernel 7,
 *   window 8; its `init_pyramidkv`: avg pooling, kernel 5, window 32);
 * - a one-layer model gets the uniform k − window (the official step divides by L − 1 = 0), and
 *   k ≤ window keeps the last k positions (the official code asserts k > window);
 * - a fractional k (`k=25%`) is resolved to tokens first ({@link resolveBudget}).
 */
export const pyramidPress: PressSchema = {
  kind: "press",
  name: "pyramid",
  role: "select",
  when: "prefill",
  params: [
    {
      name: "k",
      type: { kind: "budget" },
      doc: "entries per KV head, window included; KVCache-Factory's max_capacity_prompt",
    },
    {
      name: "beta",
      type: { kind: "number", min: 1 },
      default: 20,
      doc: "steepness: budgets run from 2B − B/beta down to B/beta, B = k − window " +
        "(official floors B/beta and the step, so its deepest layer keeps more)",
    },
    SNAP_WINDOW_PARAM,
    SNAP_POOL_PARAM,
    {
      name: "schedule",
      type: { kind: "enum", values: ["official", "linear"] },
      default: "official",
      doc: "layer budgets: official = KVCache-Factory's integer schedule (floored min and " +
        "step, uniform k while N < 2(k − window)); linear = real-valued, averaging exactly k",
    },
  ],
  doc: "PyramidKV: SnapKV scores with per-layer budgets decreasing with depth " +
    "(KVCache-Factory's integer schedule by default).",
  needs: { observationWindow: (p) => p.window as number, windowVotesOnly: true },
  select: (input, p) => selectPyramid(input, p as unknown as PyramidParams),
};

/** How {@link pyramidPrefixBudget} spreads the budget over layers. */
export type PyramidSchedule = "official" | "linear";

/** Parameters of {@link selectPyramid}, named as in the schema. */
export interface PyramidParams {
  /** Entries per KV head, window included (KVCache-Factory's `max_capacity_prompt`). */
  k: Budget;
  /** Steepness: prefix budgets run from 2B − B/beta down to B/beta, B = k − window. */
  beta: number;
  /** Observation window. */
  window: number;
  /** Pooling kernel size. */
  pool: number;
  /** Layer schedule; absent = `official`. */
  schedule?: PyramidSchedule;
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
 * PyramidKV's prefix budget (window EXCLUDED) of `layer` for a prompt of N = `promptLength`
 * tokens, with B = k − window. Requires k > window.
 *
 * `official` (default) — KVCache-Factory `PyramidKVCluster.update_kv`, integer arithmetic,
 * `//` = floor division:
 * - N < k: the layer keeps everything (returns N − window);
 * - k ≤ N < 2B: uniform, every layer keeps B;
 * - otherwise: min = B // β, max = 2B − min; if max ≥ N − window then max = N − window,
 *   min = 2B − max; step = (max − min) // (L − 1); layer l keeps max − l·step.
 * Because min and step are floored, the layers average MORE than B (k = 128, window 32, β 20,
 * 32 layers: 188 … 33, mean 110.5 rather than 96). A one-layer model gets B.
 *
 * `linear` — our earlier real-valued schedule: the same formulas without floors, each layer's
 * budget rounded (halves up), uniform B when N < 2B or L = 1; budgets are symmetric about B so
 * the layers average B (± rounding).
 */
export function pyramidPrefixBudget(
  k: number,
  window: number,
  beta: number,
  layer: number,
  numLayers: number,
  promptLength: number,
  schedule: PyramidSchedule = "official",
): number {
  const base = k - window;
  if (schedule === "official") {
    if (promptLength < k) return Math.max(0, promptLength - window);
    if (promptLength < 2 * base || numLayers < 2) return base;
    let minBudget = Math.floor(base / beta);
    let maxBudget = 2 * base - minBudget;
    if (maxBudget >= promptLength - window) {
      maxBudget = promptLength - window;
      minBudget = 2 * base - maxBudget;
    }
    const step = Math.floor((maxBudget - minBudget) / (numLayers - 1));
    return maxBudget - layer * step;
  }
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
 * otherwise each KV head keeps its top {@link pyramidPrefixBudget} prefix positions (for
 * `params.schedule`, default `official`) by SnapKV scores (max pooling, as in the official
 * LongBench runs: `pooling="maxpool"`) plus the window. Under `official` each head keeps as many
 * entries as KVCache-Factory's: N ≤ k keeps all (at N = k its top k − w of the k − w past tokens
 * are all of them too), and its prefix budgets never exceed N − w (the clamp is for `linear`).
 */
export function selectPyramid(input: PyramidInput, params: PyramidParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const window = Math.min(params.window, n);
  if (k <= window) {
    return Array.from({ length: input.numKvHeads }, () => positionRange(n - k, n));
  }
  const budget = pyramidPrefixBudget(
    k,
    window,
    params.beta,
    input.layer,
    input.numLayers,
    n,
    params.schedule ?? "official",
  );
  const prefixBudget = Math.max(0, Math.min(budget, n - window));
  const scores = snapPrefixScores(input, window, params.pool, "max");
  return scores.map((headScores) => keepTopAndWindow(headScores, prefixBudget, n, window));
}
