/**
 * A plain-TypeScript model of the ragged KV cache for the attention / cache kernel tests.
 *
 * @module
 */

import type { KvDType } from "../../src/gpu/kvCache.ts";

/** Per KV head lists of key and value rows, as the GPU stores them (f16-rounded for f16). */
export class RefKvCache {
  /** Keys per head. */
  k: number[][][];
  /** Values per head. */
  v: number[][][];
  /** Creates an empty cache. */
  constructor(readonly numKvHeads: number, readonly dtype: KvDType) {
    this.k = Array.from({ length: numKvHeads }, () => []);
    this.v = Array.from({ length: numKvHeads }, () => []);
  }
  /** Appends rows from `[m][Hkv·D]` arrays, up to each head's capacity. */
  append(k: Float32Array, v: Float32Array, m: number, D: number, caps: number[]): void {
    const round = this.dtype === "f16" ? Math.f16round : (x: number) => x;
    for (let t = 0; t < m; t++) {
      for (let h = 0; h < this.numKvHeads; h++) {
        if (this.k[h].length >= caps[h]) continue;
        const at = (t * this.numKvHeads + h) * D;
        this.k[h].push(Array.from(k.subarray(at, at + D), round));
        this.v[h].push(Array.from(v.subarray(at, at + D), round));
      }
    }
  }
  /** Keeps only the given entries of each head. */
  compact(sel: number[][]): void {
    this.k = this.k.map((rows, h) => sel[h].map((i) => rows[i]));
    this.v = this.v.map((rows, h) => sel[h].map((i) => rows[i]));
  }
}

/** `count` distinct sorted indices below `n`. */
export function randomSubset(rand: () => number, n: number, count: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count).sort((a, b) => a - b);
}
