/**
 * Plain-TypeScript reference math (float64) and random inputs for the GPU kernel tests.
 *
 * @module
 */

import type { DType } from "../../src/model/types.ts";
import {
  blockElements,
  type BlockInt8DType,
  blockInt8ToFloat32,
  packBlockInt8,
} from "../../src/model/blockInt8.ts";

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform values in [-scale, scale), rounded to f32. */
export function randomF32(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

/** Rounds f32 values to bf16 (round to nearest even); returns the raw 16-bit patterns. */
export function toBf16Bits(v: Float32Array): Uint16Array {
  const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = u[i];
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/**
 * Encodes `v` in `dtype`; returns the raw bytes and the values as the GPU sees them (rounded).
 */
export function encode(v: Float32Array, dtype: DType): { bytes: Uint8Array; values: Float64Array } {
  if (dtype === "F32") {
    return { bytes: new Uint8Array(v.slice().buffer), values: Float64Array.from(v) };
  }
  if (dtype === "F16") {
    const h = Float16Array.from(v);
    return { bytes: new Uint8Array(h.buffer), values: Float64Array.from(h) };
  }
  const b = toBf16Bits(v);
  const values = new Float64Array(v.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < v.length; i++) {
    u[0] = b[i] << 16;
    values[i] = f[0];
  }
  return { bytes: new Uint8Array(b.buffer), values };
}

/**
 * Quantizes `v` to a block-int8 dtype per block (scale and min from the block's range; odd
 * blocks without a min); returns the bytes and the values the CPU decodes from them.
 */
export function encodeBlocks(v: Float32Array, dtype: BlockInt8DType) {
  const s = blockElements(dtype), blocks = v.length / s;
  const codes = new Int8Array(v.length);
  const scales = new Float32Array(blocks), mins = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const part = v.subarray(b * s, (b + 1) * s);
    const lo = Math.min(...part), hi = Math.max(...part);
    // odd blocks without a min (−0), as Q8_0 / Q6_K; even ones with one, as Q4_K
    mins[b] = b % 2 ? -0 : Math.fround((lo + hi) / 2);
    scales[b] = Math.fround(Math.max(hi - mins[b], mins[b] - lo, 1e-6) / 127);
    part.forEach((x, i) => codes[b * s + i] = Math.round((x - mins[b]) / scales[b]));
  }
  const bytes = packBlockInt8(codes, scales, mins, s);
  return { bytes, values: Float64Array.from(blockInt8ToFloat32(dtype, bytes)) };
}

/** Asserts `|got - want| ≤ atol + rtol·|want|` elementwise, with a helpful message. */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  atol: number,
  rtol = 0,
  what = "value",
): void {
  if (got.length !== want.length) {
    throw new Error(`${what}: length ${got.length} ≠ ${want.length}`);
  }
  let worst = -1, worstErr = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const lim = atol + rtol * Math.abs(want[i]);
    if (!(err <= lim) && (worst < 0 || err - lim > worstErr)) {
      worst = i;
      worstErr = err - lim;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}[${worst}]: got ${got[worst]}, want ${want[worst]} (atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** `y[m, n] = Σ_k x[m, k] w[n, k] (+ b[n])` in float64. */
export function refMatmul(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
  bias?: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) s += x[i * k + t] * w[j * k + t];
      y[i * n + j] = s;
    }
  }
  return y;
}

/**
 * Softmax attention of one query over the given key/value rows (float64); `bias` adds a logit
 * to one row's scaled score (the cache's logit-bias row).
 */
export function refAttend(
  q: ArrayLike<number>,
  keys: ArrayLike<number>[],
  values: ArrayLike<number>[],
  scale: number,
  bias?: { row: number; value: number },
): { out: Float64Array; probs: Float64Array } {
  const d = q.length;
  const s = keys.map((k, j) => {
    let t = 0;
    for (let i = 0; i < d; i++) t += q[i] * k[i];
    return t * scale + (bias && j === bias.row ? bias.value : 0);
  });
  const mx = Math.max(...s);
  const e = s.map((x) => Math.exp(x - mx));
  const z = e.reduce((a, b) => a + b, 0);
  const out = new Float64Array(values[0]?.length ?? d);
  e.forEach((p, j) => {
    for (let i = 0; i < out.length; i++) out[i] += (p / z) * values[j][i];
  });
  return { out, probs: Float64Array.from(e, (p) => p / z) };
}
