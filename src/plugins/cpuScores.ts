/**
 * The scores a press asks for ({@link LayerScoresInput}), computed from the CPU reference model
 * right after a one-call prefill. An oracle for the GPU runtime's score kernels and the input of
 * the press integration tests.
 *
 * @module
 */

import type { CpuReferenceModel } from "../model/cpuReference.ts";
import type { LayerScoresInput, QueryStatistics } from "./press.ts";

/**
 * {@link LayerScoresInput} of `layer` from `model`, which must have just run the whole prompt
 * in ONE `forward` call (so `lastQueries` holds every prompt query) with no compaction since:
 * every KV head then holds the N prompt entries in order. Probabilities come from
 * `attendSubset` (float64), rounded to float32 as the GPU would deliver them.
 */
export function cpuLayerScores(
  model: CpuReferenceModel,
  layer: number,
  querySink = 4,
): LayerScoresInput {
  const { numHeads, numKvHeads, headDim, numLayers } = model.config;
  const groupSize = numHeads / numKvHeads;
  const queries = model.lastQueries[layer];
  const n = queries.length / (numHeads * headDim);
  for (let kv = 0; kv < numKvHeads; kv++) {
    if (model.cache.length(layer, kv) !== n) {
      throw new RangeError(`layer ${layer} KV head ${kv} does not hold the ${n} prompt entries`);
    }
  }
  /** Causal probabilities of query head `head` at position `i` over keys 0..i. */
  const probabilities = (head: number, i: number): Float64Array => {
    const offset = (i * numHeads + head) * headDim;
    const visible = Array.from({ length: i + 1 }, (_, j) => j);
    const kv = Math.floor(head / groupSize);
    return model.attendSubset(layer, kv, queries.subarray(offset, offset + headDim), visible)
      .probabilities;
  };
  return {
    layer,
    numLayers,
    promptLength: n,
    numKvHeads,
    groupSize,
    headDim,
    windowAttention(window) {
      return Array.from({ length: numHeads }, (_, head) => {
        const out = new Float32Array(window * n);
        for (let r = 0; r < window; r++) out.set(probabilities(head, n - window + r), r * n);
        return out;
      });
    },
    attentionColumnSums() {
      return Array.from({ length: numHeads }, (_, head) => {
        const sums = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          const row = probabilities(head, i);
          for (let j = 0; j <= i; j++) sums[j] += row[j];
        }
        return Float32Array.from(sums);
      });
    },
    keys(kvHead) {
      return Float32Array.from(model.cache.keys(layer, kvHead));
    },
    values(kvHead) {
      return Float32Array.from(model.cache.values(layer, kvHead));
    },
    queryStatistics() {
      // Every prompt position from `sink` on (the runtime's `needs.queryStatistics` sink): the
      // caller sets it with `cpuQueryStatistics`, defaulting to kvpress's 4.
      return cpuQueryStatistics(model, layer, querySink);
    },
    projectedValueNorms(kvHead) {
      // Σ_c |Σ_e v[i][e] · W_o[c][h·d + e]| for each query head h of the group, then their mean.
      const wo = model.outputProjection(layer);
      const values = model.cache.values(layer, kvHead);
      const hidden = model.config.hiddenSize, width = numHeads * headDim;
      return Float64Array.from({ length: n }, (_, i) => {
        let total = 0;
        for (let h = kvHead * groupSize; h < (kvHead + 1) * groupSize; h++) {
          for (let c = 0; c < hidden; c++) {
            let dot = 0;
            for (let e = 0; e < headDim; e++) {
              dot += values[i * headDim + e] * wo[c * width + h * headDim + e];
            }
            total += Math.abs(dot);
          }
        }
        return total / groupSize;
      });
    },
  };
}

/**
 * The mean and population covariance (float64) of `model`'s pre-RoPE queries of `layer` from its
 * last one-call `forward`, over the positions from `sink` on, per query head.
 */
export function cpuQueryStatistics(
  model: CpuReferenceModel,
  layer: number,
  sink: number,
): QueryStatistics {
  const { numHeads: H, headDim: D } = model.config;
  const q = model.lastQueriesBeforeRope[layer];
  const tokens = q.length / (H * D);
  const n = tokens - sink;
  const mean: Float64Array[] = [], covariance: Float64Array[] = [];
  for (let h = 0; h < H; h++) {
    const mu = new Float64Array(D);
    for (let t = sink; t < tokens; t++) {
      for (let e = 0; e < D; e++) mu[e] += q[(t * H + h) * D + e] / n;
    }
    const cov = new Float64Array(D * D);
    for (let t = sink; t < tokens; t++) {
      for (let e = 0; e < D; e++) {
        const a = q[(t * H + h) * D + e] - mu[e];
        for (let f = 0; f < D; f++) cov[e * D + f] += (a * (q[(t * H + h) * D + f] - mu[f])) / n;
      }
    }
    mean.push(mu);
    covariance.push(cov);
  }
  return { count: n, mean, covariance, invFreq: model.config.ropeInvFreq };
}
