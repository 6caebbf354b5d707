/**
 * KV-cache accounting: what a full cache would hold, what the policy kept, and what is really
 * allocated, per layer and per KV head.
 *
 * @module
 */

import type { RaggedKvCache } from "./raggedKvCache.ts";

/** One layer's lengths and bytes. */
export interface KvLayerReport {
  /** Entries held per KV head. */
  lengths: number[];
  /** Bytes held per KV head (K and V of the held entries). */
  bytes: number[];
  /** Bytes allocated per KV head (capacity × row bytes, K and V). */
  allocated: number[];
}

/** The `kv` object of `run --json`. */
export interface KvReport {
  /** Element type of cached keys/values. */
  dtype: string;
  /** Entries a full cache would hold per head (prompt + fed generated tokens). */
  fullLength: number;
  /** Bytes a full cache would hold (all layers and heads, K and V). */
  fullBytes: number;
  /** Bytes of the entries kept. */
  keptBytes: number;
  /** Bytes allocated on the device for the cache. */
  allocatedBytes: number;
  /** keptBytes / fullBytes. */
  ratio: number;
  /** Per layer. */
  layers: KvLayerReport[];
}

/** Builds the report from the cache and its lengths (read with `cache.lengths()`). */
export function kvReport(cache: RaggedKvCache, lengths: number[][], fullLength: number): KvReport {
  const row = 2 * cache.rowBytes;
  const layers = cache.layers.map((layer, l) => ({
    lengths: lengths[l],
    bytes: lengths[l].map((n) => n * row),
    allocated: layer.capacities.map((c) => c * row),
  }));
  const heads = layers.reduce((s, l) => s + l.lengths.length, 0);
  const fullBytes = heads * fullLength * row;
  const keptBytes = layers.reduce((s, l) => s + l.bytes.reduce((a, b) => a + b, 0), 0);
  return {
    dtype: cache.dtype,
    fullLength,
    fullBytes,
    keptBytes,
    allocatedBytes: cache.allocatedBytes(),
    ratio: fullBytes > 0 ? keptBytes / fullBytes : 1,
    layers,
  };
}
