/** `snap`: SnapKV. @module */
import { resolveBudget } from "./budget.ts";
import {
  averageOverGroups,
  keepAllHeads,
  type LayerScoresInput,
  positionRange,
  topPositions,
} from "./press.ts";
import type { Budget, ParamSpec, PressSchema } from "./schema.ts";

/** SnapKV's observation window (official 32), shared by the presses built on its scores. */
export const SNAP_WINDOW_PARAM: ParamSpec = {
  name: "window",
  type: { kind: "int", min: 1 },
  default: 32,
  doc: "observation window (last prompt queries)",
};

/** SnapKV's pooling kernel (official 7), shared by the presses built on its scores. */
export const SNAP_POOL_PARAM: ParamSpec = {
  name: "pool",
  type: { kind: "int", min: 1 },
  default: 7,
  doc: "pooling kernel size",
};

/**
 * SnapKV (Li et al., 2024, arXiv 2404.14469; FasterDecoding/SnapKV `SnapKVCluster.update_kv`):
 * the last `window` queries vote (softmax attention summed over the window, averaged over the
 * query heads of a GQA group), votes are pooled along positions with kernel `pool`, and each KV
 * head keeps its top `k − window` prefix positions plus the window. Runs once after prefill.
 */
export const snapPress: PressSchema = {
  kind: "press",
  name: "snap",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "entries kept per KV head, window included" },
    SNAP_WINDOW_PARAM,
    SNAP_POOL_PARAM,
    {
      name: "reduce",
      type: { kind: "enum", values: ["max", "avg"] },
      default: "max",
      doc: "pooling: max_pool1d or avg_pool1d",
    },
  ],
  doc: "SnapKV: observation-window votes, pooled, per-head top-k after prefill.",
  needs: { observationWindow: (p) => p.window as number, windowVotesOnly: true },
  select: (input, p) => selectSnap(input, p as unknown as SnapParams),
  score: (input, p) => snapScores(input, p as unknown as SnapParams),
};

/** Parameters of {@link selectSnap}, named as in the schema. */
export interface SnapParams {
  /** Entries kept per KV head, window included. */
  k: Budget;
  /** Observation window: the last `window` prompt queries vote. */
  window: number;
  /** Pooling kernel size (1 = no smoothing). */
  pool: number;
  /** `max`: max_pool1d; `avg`: avg_pool1d counting padding as zeros. */
  reduce: "max" | "avg";
}

/** What SnapKV scoring needs from the runtime. */
export type SnapInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "groupSize" | "windowAttention" | "windowVotes"
>;

/**
 * 1-D pooling along positions with kernel `pool`, stride 1, padding `floor(pool / 2)`, output
 * length = input length: output `j` reduces inputs `j − floor(pool/2) … j − floor(pool/2) +
 * pool − 1` (for odd `pool` the window is centred; for even `pool` these are the first outputs
 * PyTorch would produce). `max` ignores padding (max_pool1d); `avg` divides by `pool` always,
 * padding counting as zeros (avg_pool1d, count_include_pad=True).
 */
export function poolScores(
  scores: ArrayLike<number>,
  pool: number,
  reduce: "max" | "avg",
): Float64Array {
  const n = scores.length;
  const half = Math.floor(pool / 2);
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    const from = Math.max(0, j - half);
    const to = Math.min(n, j - half + pool);
    let acc = reduce === "max" ? -Infinity : 0;
    for (let i = from; i < to; i++) {
      acc = reduce === "max" ? Math.max(acc, scores[i]) : acc + scores[i];
    }
    out[j] = reduce === "max" ? acc : acc / pool;
  }
  return out;
}

/**
 * SnapKV scores of the prefix positions `0 … N − window − 1` per KV head: the sum over the
 * window queries of their attention to each position, averaged over the group's query heads,
 * then pooled with {@link poolScores}. `window` must be in `[1, N]`.
 */
export function snapPrefixScores(
  input: SnapInput,
  window: number,
  pool: number,
  reduce: "max" | "avg",
): Float64Array[] {
  const n = input.promptLength;
  const prefix = n - window;
  const perQueryHead = input.windowVotes
    ? input.windowVotes(window).map((votes) => {
      if (votes.length !== n) {
        throw new RangeError(`window votes must be ${n}, got ${votes.length}`);
      }
      return votes.subarray(0, prefix);
    })
    : input.windowAttention(window).map((probs) => {
      if (probs.length !== window * n) {
        throw new RangeError(`window attention must be ${window}×${n}, got ${probs.length} values`);
      }
      const votes = new Float64Array(prefix);
      for (let r = 0; r < window; r++) {
        const row = r * n;
        for (let j = 0; j < prefix; j++) votes[j] += probs[row + j];
      }
      return votes;
    });
  const grouped = averageOverGroups(perQueryHead, input.numKvHeads, input.groupSize);
  return grouped.map((votes) => poolScores(votes, pool, reduce));
}

/**
 * The kept positions of one KV head: the top `prefixBudget` of `prefixScores` (ranked as in
 * {@link topPositions}) plus the whole window `N − window … N − 1`.
 */
export function keepTopAndWindow(
  prefixScores: ArrayLike<number>,
  prefixBudget: number,
  promptLength: number,
  window: number,
): number[] {
  const top = topPositions(prefixScores, prefixBudget);
  return top.concat(positionRange(promptLength - window, promptLength));
}

/**
 * SnapKV selection for one layer. With k = {@link resolveBudget}(params.k, N) and
 * w = min(window, N): N ≤ k keeps everything; k ≤ w keeps the last k positions (the budget
 * counts the window, so only its most recent part fits); otherwise each KV head keeps its top
 * k − w prefix positions by {@link snapPrefixScores} plus the window.
 */
export function selectSnap(input: SnapInput, params: SnapParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n);
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const window = Math.min(params.window, n);
  if (k <= window) {
    return Array.from({ length: input.numKvHeads }, () => positionRange(n - k, n));
  }
  const scores = snapPrefixScores(input, window, params.pool, params.reduce);
  return scores.map((headScores) => keepTopAndWindow(headScores, k - window, n, window));
}

/**
 * SnapKV's score of every prompt position per KV head, exactly as kvpress's `SnapKVPress.score`
 * gives it to the presses that wrap it (ChunkKV, CriticalKV, DMS): {@link snapPrefixScores} for
 * the prefix, divided by the window (kvpress averages the window queries' attention, and CriticalKV
 * adds its ε to these values), and the observation window padded with the layer's highest prefix
 * score + 1 (`F.pad(..., value=scores.max() + 1)`), so the window ranks first. A prompt no longer
 * than the window scores 0 everywhere.
 */
export function snapScores(input: SnapInput, params: Omit<SnapParams, "k">): Float64Array[] {
  const n = input.promptLength;
  const window = Math.min(params.window, n);
  if (window === n) return Array.from({ length: input.numKvHeads }, () => new Float64Array(n));
  const prefix = snapPrefixScores(input, window, params.pool, params.reduce);
  let max = -Infinity;
  for (const head of prefix) {
    for (let j = 0; j < head.length; j++) max = Math.max(max, head[j] / window);
  }
  return prefix.map((head) => {
    const out = new Float64Array(n).fill(max + 1);
    for (let j = 0; j < head.length; j++) out[j] = head[j] / window;
    return out;
  });
}
