/** `keydiff`: KeyDiff, keep the keys least like the mean key direction. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * KeyDiff (Park et al., 2025, arXiv 2504.15364; kvpress `keydiff_press.py`): per KV head, the
 * anchor is the mean of the unit-normalised post-RoPE keys, a key's score is minus its cosine
 * similarity to the anchor, and the head keeps its k highest scores: the most distinctive keys.
 * No queries, no attention, no sink. With `block=B > 0` the paper's block-wise iteration
 * (kvpress `BlockPress(KeyDiffPress(), block_size=B)`, its registry's `block_keydiff` uses 128):
 * start from the first k positions, then for each next block of B positions score (kept ∪ block)
 * with the anchor of that set alone and keep the top k.
 */
export const keydiffPress: PressSchema = {
  kind: "press",
  name: "keydiff",
  role: "select",
  when: "prefill",
  params: [
    {
      name: "k",
      type: { kind: "budget" },
      doc: "entries kept per KV head; a fraction f keeps int(f·N)",
    },
    {
      name: "block",
      type: { kind: "int", min: 0 },
      default: 0,
      doc: "0: one anchor over the whole prompt; B: the block-wise iteration over blocks of B",
    },
  ],
  doc: "KeyDiff: keep the keys least aligned with the mean key direction.",
  needs: { keys: true },
  select: (input, p) => selectKeydiff(input, p as unknown as KeydiffParams),
  score: (input) =>
    Array.from({ length: input.numKvHeads }, (_, kv) =>
      keydiffScores(
        input.keys(kv),
        input.headDim,
        Array.from({ length: input.promptLength }, (_, i) => i),
      )),
  scoreUnavailable: (p) =>
    p.block !== 0
      ? "block-wise KeyDiff re-scores each block against its own anchor: it has no single score per position (use block=0)"
      : undefined,
};

/** Parameters of {@link selectKeydiff}. */
export interface KeydiffParams {
  /** Entries kept per KV head; fractions resolve as kvpress's `int(L·(1−r))` (floor). */
  k: Budget;
  /** Block size of the block-wise iteration, 0 for none. */
  block: number;
}

/** What KeyDiff needs from the runtime: the post-RoPE keys of each KV head. */
export type KeydiffInput = Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "headDim" | "keys"
>;

/**
 * KeyDiff scores of the rows `rows` of `keys` (`headDim` wide): −cos(k_i, a) with
 * a = mean over `rows` of k_j/‖k_j‖, in float64. A zero key scores 0.
 */
export function keydiffScores(
  keys: ArrayLike<number>,
  headDim: number,
  rows: readonly number[],
): Float64Array {
  const norms = rows.map((r) => {
    let sum = 0;
    for (let d = 0; d < headDim; d++) sum += keys[r * headDim + d] ** 2;
    return Math.sqrt(sum);
  });
  const anchor = new Float64Array(headDim);
  rows.forEach((r, i) => {
    if (norms[i] === 0) return;
    for (let d = 0; d < headDim; d++) anchor[d] += keys[r * headDim + d] / norms[i];
  });
  let anchorNorm = 0;
  for (let d = 0; d < headDim; d++) anchorNorm += (anchor[d] /= rows.length) ** 2;
  anchorNorm = Math.sqrt(anchorNorm);
  return Float64Array.from(rows, (r, i) => {
    if (norms[i] === 0 || anchorNorm === 0) return 0;
    let dot = 0;
    for (let d = 0; d < headDim; d++) dot += keys[r * headDim + d] * anchor[d];
    return -dot / (norms[i] * anchorNorm);
  });
}

/**
 * KeyDiff selection for one layer: with k = `int(f·N)` for a fraction (else the token count),
 * N ≤ k keeps everything; otherwise each KV head keeps its top k {@link keydiffScores} (ties →
 * lower position), over the whole prompt or block by block (see {@link keydiffPress}).
 */
export function selectKeydiff(input: KeydiffInput, params: KeydiffParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(params.k, n, "floor");
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  const d = input.headDim;
  return Array.from({ length: input.numKvHeads }, (_, kv) => {
    const keys = input.keys(kv);
    if (keys.length !== n * d) throw new RangeError(`keys of KV head ${kv} must be ${n}×${d}`);
    const block = params.block > 0 ? params.block : n;
    // One-shot is the block-wise iteration's first step with a block of N − k after k.
    let kept = Array.from({ length: params.block > 0 ? k : 0 }, (_, i) => i);
    for (let start = kept.length; start < n; start += block) {
      const end = Math.min(n, start + block);
      const rows = kept.concat(Array.from({ length: end - start }, (_, i) => start + i));
      const top = topPositions(keydiffScores(keys, d, rows), k);
      kept = top.map((i) => rows[i]);
    }
    return kept;
  });
}
