/**
 * KV-cache accounting: what a full cache would hold, what the policy kept, and what is really
 * allocated, per layer and per KV head. Quantised (KIVI) heads count their real storage — packed
 * codes, f32 (min, scale) pairs and full-precision residual rows — which equals
 * `quantizedBytes` of `src/plugins/quantPress.ts` (residual at the cache's element size).
 *
 * @module
 */

import { isQuantLayer, type QuantHeadBytes, quantHeadBytes } from "../gpu/quantKvCache.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/** One layer's lengths and bytes. */
export interface KvLayerReport {
  /** Entries held per KV head. */
  lengths: number[];
  /** Bytes held per KV head (K and V of the held entries; for quantised heads, `quant`'s total). */
  bytes: number[];
  /** Bytes allocated per KV head (K and V: capacity × row bytes, or packed slots + residual). */
  allocated: number[];
  /** For a quantised layer, per KV head: codes, scales and residual bytes held (null: full). */
  quant?: (QuantHeadBytes | null)[];
}

/** The `kv` object of `run --json`. */
export interface KvReport {
  /** Element type of cached keys/values. */
  dtype: string;
  /** Entries a full cache would hold per head (prompt + fed generated tokens). */
  fullLength: number;
  /**
   * Bytes the model's full cache would hold (all layers and heads, K and V; a sliding layer of
   * Gemma 3 holds at most its window, as the model's own cache does).
   */
  fullBytes: number;
  /** Bytes of the entries kept. */
  keptBytes: number;
  /** Bytes allocated on the device for the cache. */
  allocatedBytes: number;
  /**
   * The most bytes the cache ever held allocated (a compaction holds a layer's old and new
   * buffers at once): one-shot compression peaks at the full prompt, chunked prefill at its
   * budget plus a chunk.
   */
  peakBytes: number;
  /** keptBytes / fullBytes. */
  ratio: number;
  /** Per layer. */
  layers: KvLayerReport[];
}

/** Builds the report from the cache and its lengths (read with `cache.lengths()`). */
export function kvReport(cache: RaggedKvCache, lengths: number[][], fullLength: number): KvReport {
  const row = 2 * cache.rowBytes;
  const layers = cache.layers.map((layer, l): KvLayerReport => {
    const allocated = cache.layerAllocated(l);
    if (!isQuantLayer(layer)) {
      return {
        lengths: lengths[l],
        bytes: lengths[l].map((n) => n * row),
        allocated,
      };
    }
    const quant = lengths[l].map((n, h) =>
      layer.quant.residuals[h] === null ? null : quantHeadBytes(layer, h, n)
    );
    const bytes = lengths[l].map((n, h) => quant[h]?.total ?? n * row);
    return { lengths: lengths[l], bytes, allocated, quant };
  });
  // The model's own cache: a sliding layer holds at most its window (`slidingLayers.ts`).
  const windows = cache.layerWindows;
  const fullBytes = layers.reduce(
    (s, l, i) => s + l.lengths.length * Math.min(fullLength, windows[i] ?? Infinity) * row,
    0,
  );
  const keptBytes = layers.reduce((s, l) => s + l.bytes.reduce((a, b) => a + b, 0), 0);
  return {
    dtype: cache.dtype,
    fullLength,
    fullBytes,
    keptBytes,
    allocatedBytes: cache.allocatedBytes(),
    peakBytes: cache.peakBytes,
    ratio: fullBytes > 0 ? keptBytes / fullBytes : 1,
    layers,
  };
}
