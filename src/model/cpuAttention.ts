/**
 * Scaled dot-product attention of query rows over an explicit set of cached entries — the
 * primitive of the CPU reference. Restricting attention to an index set is exactly what a
 * compacted KV cache does, so tests compare GPU caches against this.
 *
 * @module
 */

/** Result of {@link attendToEntries}. */
export interface AttentionResult {
  /** `rows × headDim` attention outputs. */
  output: Float64Array;
  /** `rows × indices.length` softmax weights, in the order of `indices`. */
  probabilities: Float64Array;
}

/** A logit bias on one cache entry (see {@link attendToEntries}). */
export interface LogitBias {
  /** Cache index of the entry. */
  index: number;
  /** Added to its scaled logit. */
  value: number;
}

/**
 * For each of the query rows (`queries` is `rows × headDim`, post-RoPE), softmax over the
 * entries at `indices` of `q·k · scale` (default `1 / sqrt(headDim)`), then the weighted sum of their values.
 * `keys` and `values` are `length × headDim`. With no indices the output is all zeros.
 * `bias` adds `value` to the scaled logit of cache entry `index` (when it is among `indices`):
 * RazorAttention's compensation token (`+ln N_d`).
 */
export function attendToEntries(
  keys: Float64Array,
  values: Float64Array,
  headDim: number,
  queries: Float64Array,
  indices: ArrayLike<number>,
  bias?: LogitBias,
  scale: number = 1 / Math.sqrt(headDim),
): AttentionResult {
  const rows = queries.length / headDim;
  const count = indices.length;
  const entries = keys.length / headDim;
  for (let j = 0; j < count; j++) {
    const index = indices[j];
    if (!Number.isInteger(index) || index < 0 || index >= entries) {
      throw new RangeError(`attention index ${index} is outside the cache [0, ${entries})`);
    }
  }
  const output = new Float64Array(rows * headDim);
  const probabilities = new Float64Array(rows * count);
  for (let r = 0; r < rows; r++) {
    const qOffset = r * headDim;
    const scores = probabilities.subarray(r * count, (r + 1) * count);
    let maxScore = -Infinity;
    for (let j = 0; j < count; j++) {
      const kOffset = indices[j] * headDim;
      let dot = 0;
      for (let d = 0; d < headDim; d++) dot += queries[qOffset + d] * keys[kOffset + d];
      scores[j] = dot * scale + (bias && indices[j] === bias.index ? bias.value : 0);
      if (scores[j] > maxScore) maxScore = scores[j];
    }
    let total = 0;
    for (let j = 0; j < count; j++) {
      scores[j] = Math.exp(scores[j] - maxScore);
      total += scores[j];
    }
    for (let j = 0; j < count; j++) {
      const p = scores[j] / total;
      scores[j] = p;
      const vOffset = indices[j] * headDim;
      for (let d = 0; d < headDim; d++) output[qOffset + d] += p * values[vOffset + d];
    }
  }
  return { output, probabilities };
}
