/** `tova`: TOVA, the newest query's attention averaged over every head. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * TOVA (Oren et al., 2024, "Transformers are Multi-State RNNs", arXiv 2401.06104; kvpress
 * `tova_press.py`): a cached token's score is the LAST prompt query's softmax attention to it,
 * averaged over ALL query heads of the layer (not per GQA group), so every KV head of a layer keeps
 * the same positions. The last prompt token is always kept (kvpress gives it the maximum score; a
 * slight departure from the paper that kvpress documents). No pooling, no sink, no window. The
 * runtime sums the one-row observation on the GPU (`windowVotes(1)`). Runs once after prefill;
 * `+ decoding(every=N)` re-applies it while generating (kvpress's `DecodingPress(TOVAPress())`).
 */
export const tovaPress: PressSchema = {
  kind: "press",
  name: "tova",
  role: "select",
  when: "prefill",
  params: [{
    name: "k",
    type: { kind: "budget" },
    doc: "entries kept per KV head (all heads of a layer alike); a fraction f keeps int(f·N)",
  }],
  doc: "TOVA: keep the tokens the last query attends to most, averaged over all heads.",
  needs: { observationWindow: () => 1, windowVotesOnly: true },
  select: (input, p) => selectTova(input, p as unknown as TovaParams),
  score: (input) => {
    // The last token scores the highest other score + 1, as kvpress keeps it.
    const scores = tovaScores(input);
    const all = new Float64Array(input.promptLength);
    all.set(scores);
    all[input.promptLength - 1] = scores.reduce((m, s) => Math.max(m, s), -Infinity) + 1;
    return Array.from({ length: input.numKvHeads }, () => all.slice());
  },
};

/** Parameters of {@link selectTova}. */
export interface TovaParams {
  /** Entries kept per KV head; fractions resolve as kvpress's `int(L·(1−r))` (floor). */
  k: Budget;
}

/** What TOVA needs from the runtime: the last prompt query's attention, per query head. */
export type TovaInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "windowAttention" | "windowVotes"
>;

/**
 * TOVA's scores of positions `0 … N − 2`: the last query's probability on each, averaged over the
 * H query heads (float64).
 */
export function tovaScores(input: TovaInput): Float64Array {
  const n = input.promptLength;
  const rows = input.windowVotes ? input.windowVotes(1) : input.windowAttention(1);
  const mean = new Float64Array(n - 1);
  for (const row of rows) {
    if (row.length !== n) {
      throw new RangeError(`the last query's row must be ${n}, got ${row.length}`);
    }
    for (let j = 0; j < n - 1; j++) mean[j] += row[j];
  }
  for (let j = 0; j < n - 1; j++) mean[j] /= rows.length;
  return mean;
}

/**
 * TOVA selection for one layer: with k = `int(f·N)` for a fraction (else the token count),
 * N ≤ k keeps everything; otherwise every KV head keeps the same k − 1 positions of the highest
 * {@link tovaScores} (ties → lower position) and the last prompt position.
 */
export function selectTova(input: TovaInput, params: TovaParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n, "floor");
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const kept = topPositions(tovaScores(input), k - 1);
  kept.push(n - 1);
  return Array.from({ length: input.numKvHeads }, () => kept.slice());
}
