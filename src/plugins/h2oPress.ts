/** `h2o`: Heavy-Hitter Oracle. @module */
import { resolveBudget } from "./budget.ts";
import { allPositions, averageOverGroups, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * H2O (Zhang et al., 2023, arXiv 2306.14048; FMInference/H2O `h2o_hf/utils_hh/modify_llama.py`,
 * `LlamaAttention_heavy_hitter`): scores are attention column sums accumulated over all queries
 * and steps; keep the top `heavy` non-recent entries plus the last `recent`; evicts at every
 * decoding step. Paper runs: 10 % + 10 %. Fractional budgets are resolved once, at prefill, as
 * the official code does: `heavy_budget = int(heavy_ratio · N)` (floored, not rounded), likewise
 * `recent`. What we still do differently:
 * - each budget is at least 1 entry (the official code allows 0, e.g. 10 % of a 9-token prompt,
 *   and then keeps no prompt entry);
 * - scores are per KV head, the group mean of its query heads' column sums, and entries are
 *   really evicted (the official `utils_hh` code is per query head and masks instead);
 * - ties in the ranking go to the lower position (torch's topk leaves them unspecified).
 */
export const h2oPress: PressSchema = {
  kind: "press",
  name: "h2o",
  role: "select",
  when: "bounded",
  params: [
    {
      name: "heavy",
      type: { kind: "budget" },
      default: { fraction: 0.1 },
      doc: "heavy-hitter entries kept (a share of the prompt is floored, as int(ratio·N))",
    },
    {
      name: "recent",
      type: { kind: "budget" },
      default: { fraction: 0.1 },
      doc: "most recent entries kept (a share is floored likewise)",
    },
  ],
  doc: "H2O: accumulated attention heavy hitters + recent window; evicts every step.",
};

/** Parameters of {@link selectH2o}, named as in the schema. */
export interface H2oParams {
  /** Heavy-hitter entries kept (a fraction f resolves to ⌊f·N⌋ of the prompt, at least 1). */
  heavy: Budget;
  /** Most recent entries kept. */
  recent: Budget;
}

/** What H2O needs from the runtime: attention column sums over all prompt queries. */
export type H2oInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "groupSize" | "attentionColumnSums"
>;

/** The decode-time state of one KV head of an H2O layer (arrays in cache order). */
export interface H2oHeadState {
  /** Original positions of the cached entries. */
  positions: number[];
  /** Accumulated attention (group mean) of each cached entry. */
  scores: number[];
  /** Heavy hitters kept: {@link h2oBudget}(heavy, N), fixed at prefill. */
  heavy: number;
  /** Recent entries kept: {@link h2oBudget}(recent, N), fixed at prefill. */
  recent: number;
}

/**
 * An H2O budget in entries for a prompt of N tokens: `{tokens: n}` is n; `{fraction: f}` is
 * ⌊f·N⌋ in f64 arithmetic, exactly the official `int(ratio * seq_len)` (so 29 % of 100 is 28,
 * since 0.29·100 = 28.999…); at least 1.
 */
export function h2oBudget(budget: Budget, promptLength: number): number {
  return resolveBudget(budget, promptLength, "floor");
}

/**
 * H2O prefill for one layer, returning each KV head's decode state. Scores are the group mean
 * of {@link LayerScoresInput.attentionColumnSums}. With heavy and recent resolved against N by
 * {@link h2oBudget}:
 * heavy + recent ≥ N keeps everything; otherwise the last `recent` positions plus the top
 * `heavy` of the positions before them (ties → lower position).
 */
export function h2oPrefill(input: H2oInput, params: H2oParams): H2oHeadState[] {
  const n = input.promptLength;
  const heavy = h2oBudget(params.heavy, n);
  const recent = h2oBudget(params.recent, n);
  const sums = input.attentionColumnSums();
  for (const column of sums) {
    if (column.length !== n) throw new RangeError(`column sums must hold ${n} values`);
  }
  const scores = averageOverGroups(sums, input.numKvHeads, input.groupSize);
  return scores.map((headScores) => {
    let positions = allPositions(n);
    if (heavy + recent < n) {
      const older = topPositions(headScores.subarray(0, n - recent), heavy);
      positions = older.concat(positions.slice(n - recent));
    }
    return { positions, scores: positions.map((p) => headScores[p]), heavy, recent };
  });
}

/** H2O prefill selection: the kept positions of {@link h2oPrefill}, per KV head. */
export function selectH2o(input: H2oInput, params: H2oParams): number[][] {
  return h2oPrefill(input, params).map((state) => state.positions.slice());
}

/**
 * One H2O decoding step for one KV head. The runtime has appended the new token (original
 * position `position`) at the END of the cache and computed the new query's attention:
 * `attention` holds, per query head of the group, probabilities over the cache entries in
 * cache order, the new entry last (`state.positions.length + 1` values). The group-mean
 * attention is added to every entry's score (the new entry starts at 0); then, if the cache
 * holds more than heavy + recent entries, the lowest-scoring entry outside the `recent` most
 * recent positions is evicted (ties → older position). `state` is updated in place; the
 * return value is the cache index evicted (entries after it shift down by one), or `null`.
 */
export function h2oDecodeStep(
  state: H2oHeadState,
  attention: readonly ArrayLike<number>[],
  position: number,
): number | null {
  state.positions.push(position);
  state.scores.push(0);
  const size = state.positions.length;
  for (const probs of attention) {
    if (probs.length !== size) throw new RangeError(`attention must cover ${size} entries`);
    for (let i = 0; i < size; i++) state.scores[i] += probs[i] / attention.length;
  }
  if (size <= state.heavy + state.recent) return null;
  const byPosition = allPositions(size).sort((a, b) => state.positions[a] - state.positions[b]);
  let evict = -1;
  for (const i of byPosition.slice(0, size - state.recent)) {
    if (evict < 0 || state.scores[i] < state.scores[evict]) evict = i;
  }
  state.positions.splice(evict, 1);
  state.scores.splice(evict, 1);
  return evict;
}
