/**
 * The runtime side of a press: what the runtime computes for one layer after prefill
 * ({@link LayerScoresInput}) and the shared helpers select presses use to turn scores into kept
 * index sets.
 *
 * Conventions shared by every `select…` function in `src/plugins/*Press.ts`:
 * - The result is `number[][]`: one array per KV head, holding the kept ORIGINAL prompt
 *   positions (0-based), strictly increasing, never empty (prompts of ≥ 1 token).
 * - Scores are per KV head; scores defined per query head are averaged over the `groupSize`
 *   query heads of the GQA group (query heads `kvHead·g … kvHead·g + g − 1`), in float64.
 * - Ranking: higher score first; ties go to the LOWER position (then, where heads compete, the
 *   lower KV head). This makes every selection deterministic.
 * - Budgets count every kept entry, the observation window included.
 *
 * @module
 */

import type { Budget, ParamValue, PressSchema } from "./schema.ts";

/**
 * Everything a press may ask the runtime about one layer at the end of prefill. Each press
 * states which members it uses (through `Pick<…>`), so the runtime computes only those.
 */
export interface LayerScoresInput {
  /** 0-based layer index. */
  layer: number;
  /** Number of decoder layers of the model. */
  numLayers: number;
  /** N: prompt tokens cached in this layer (every KV head holds all N at this point). */
  promptLength: number;
  /** H_kv. */
  numKvHeads: number;
  /** g = H / H_kv: query heads per KV head. */
  groupSize: number;
  /** d: elements of one key. */
  headDim: number;
  /**
   * Softmax attention probabilities of the last `window` prompt queries (`window` ≤ N; presses
   * pass the effective window) over all N prompt keys, per QUERY head (H arrays). Array `h` is
   * `window × N`, row-major: row `r` is the query at position `N − window + r`; entries for keys
   * after the query (causal mask) are 0. Computed as softmax(q·Kᵀ/√d) with post-RoPE q and K.
   */
  windowAttention(window: number): Float32Array[];
  /**
   * SnapKV's votes: per QUERY head (H arrays of length N), entry `j` is the sum over the last
   * `window` prompt queries of their probability on key `j` — the column sums of
   * `windowAttention(window)`. Optional: inputs without it are summed from `windowAttention`.
   * The runtime computes it on the GPU (f32 sums in row order) for presses that declare
   * `needs.windowVotesOnly`, and then offers no `windowAttention`.
   */
  windowVotes?(window: number): Float32Array[];
  /**
   * H2O's accumulated attention: per QUERY head (H arrays of length N), entry `j` is the sum over
   * ALL prompt queries `i ≥ j` of their causal softmax probability on key `j`.
   */
  attentionColumnSums(): Float32Array[];
  /** Post-RoPE keys of KV head `kvHead`: `N × headDim`, row-major. */
  keys(kvHead: number): Float32Array;
  /**
   * CriticalKV's value weight of KV head `kvHead`: per position i, the L1 norm over the hidden
   * dimension of v_i·W_o^(h) (W_o^(h): query head h's `headDim × hidden` slice of o_proj),
   * averaged over the group's query heads. Offered to presses that declare
   * `needs.projectedValueNorms` (computed on the GPU).
   */
  projectedValueNorms?(kvHead: number): Float64Array;
  /** Values of KV head `kvHead`: `N × headDim`, row-major. Offered with `needs.values`. */
  values?(kvHead: number): Float32Array;
  /**
   * The prompt's pre-RoPE query statistics per query head (from the `sink` positions of
   * `needs.queryStatistics` on), with the model's RoPE inverse frequencies. Offered with
   * `needs.queryStatistics` (Expected Attention).
   */
  queryStatistics?(): QueryStatistics;
  /**
   * KVzip's scores of every layer (`[layer][kvHead][position]`): each entry's highest attention
   * weight while the model repeated the context. Offered with `needs.reconstruction`.
   */
  reconstruction?(): Float64Array[][];
  /**
   * `make()`'s result, kept under `key` for every plan that starts from the same shared prefill
   * (`eval` runs several budgets of a press on one prompt): for work that depends only on this
   * layer's prompt entries, the model and what `key` names (the press's parameters other than
   * its budget, and `promptLength`). Absent for a plan prefilled alone.
   */
  memo?<T>(key: string, make: () => T): T;
}

/** Per query head: the mean and population covariance of the prompt's pre-RoPE queries. */
export interface QueryStatistics {
  /** Queries counted per head. */
  count: number;
  /** Per query head: the mean (`headDim`). */
  mean: Float64Array[];
  /** Per query head: the covariance (`headDim × headDim`, row-major; divides by `count`). */
  covariance: Float64Array[];
  /** RoPE inverse frequencies (`headDim / 2`, rotate_half layout). */
  invFreq: ArrayLike<number>;
}

/** Every position 0 … n − 1 (a KV head that keeps its whole cache). */
export function allPositions(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Positions `from … to − 1`. */
export function positionRange(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

/** `numKvHeads` copies of {@link allPositions}`(n)`. */
export function keepAllHeads(numKvHeads: number, n: number): number[][] {
  return Array.from({ length: numKvHeads }, () => allPositions(n));
}

/**
 * The value at index `k` of `a` sorted ascending (quickselect, median-of-three pivots; reorders
 * `a`). Falls back to a native sort of the remaining range after ~4·log₂(n) partitions.
 */
function nthSmallest(a: Float64Array, k: number): number {
  let lo = 0, hi = a.length - 1;
  let budget = 4 * Math.ceil(Math.log2(a.length + 1)) + 8;
  while (hi > lo) {
    if (budget-- === 0) return a.subarray(lo, hi + 1).sort()[k - lo];
    const x = a[lo], y = a[(lo + hi) >>> 1], z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/**
 * The indices of the `count` largest `scores` (higher score first, ties → lower index),
 * returned in increasing index order. `count` is clamped to `[0, scores.length]`; scores must not
 * be NaN. The threshold (the `count`-th largest score) comes from a quickselect on a copy, then one
 * pass keeps everything above it and the first of the ties: 16K scores × 8 heads took ≈ 60 ms per
 * layer with an index sort by comparator, the press's main CPU cost on a GPU.
 */
export function topPositions(scores: ArrayLike<number>, count: number): number[] {
  const n = scores.length;
  const take = Math.max(0, Math.min(count, n));
  if (take === n) return allPositions(n);
  if (take === 0) return [];
  const threshold = nthSmallest(Float64Array.from(scores), n - take);
  let ties = take;
  for (let i = 0; i < n; i++) if (scores[i] > threshold) ties--;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = scores[i];
    if (s > threshold) out.push(i);
    else if (s === threshold && ties > 0) {
      out.push(i);
      ties--;
    }
  }
  return out;
}

/**
 * Averages per-query-head arrays over each GQA group: `perQueryHead` holds H = numKvHeads ·
 * groupSize arrays of equal length; the result holds numKvHeads float64 arrays.
 */
export function averageOverGroups(
  perQueryHead: readonly ArrayLike<number>[],
  numKvHeads: number,
  groupSize: number,
): Float64Array[] {
  if (perQueryHead.length !== numKvHeads * groupSize) {
    throw new RangeError(
      `expected ${numKvHeads * groupSize} query heads, got ${perQueryHead.length}`,
    );
  }
  const out: Float64Array[] = [];
  for (let kv = 0; kv < numKvHeads; kv++) {
    const length = perQueryHead[kv * groupSize].length;
    const mean = new Float64Array(length);
    for (let q = kv * groupSize; q < (kv + 1) * groupSize; q++) {
      const values = perQueryHead[q];
      for (let j = 0; j < length; j++) mean[j] += values[j];
    }
    for (let j = 0; j < length; j++) mean[j] /= groupSize;
    out.push(mean);
  }
  return out;
}

/**
 * Whether a press with these parameters keeps the cache bounded by evicting while decoding (a
 * rolling window): its schema has `bound` and `bound` does not return `null` for them.
 */
export function evictsWhileDecoding(
  schema: { bound?: PressSchema["bound"] } | undefined,
  call: { params: Record<string, ParamValue> },
): boolean {
  return schema?.bound?.(call.params, 1) != null;
}

/**
 * The kept positions of a scorer press followed by a rescoring press (`snap(k=25%) + chunkkv`):
 * the scorer's {@link PressSchema.score}s, handed with its budget `k` to the rescoring press's
 * {@link PressSchema.rescore}.
 */
export function rescoreSelect(
  input: LayerScoresInput,
  scorer: PressSchema,
  scorerParams: Record<string, ParamValue>,
  rescorer: PressSchema,
  rescorerParams: Record<string, ParamValue>,
): number[][] {
  if (!scorer.score || !rescorer.rescore) {
    throw new RangeError(`'${rescorer.name}' needs scores from '${scorer.name}'`);
  }
  const scores = scorer.score(input, scorerParams);
  return rescorer.rescore(input, scores, scorerParams.k as Budget, rescorerParams);
}
