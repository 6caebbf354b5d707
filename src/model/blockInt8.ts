/**
 * The runtime's storage form for GGUF's quantized weights: int8 codes in blocks of 16 or 32
 * elements along a row, each block followed by its float32 scale and float32 min, so that an
 * element is `fround(scale · code) + min` — bit for bit what `gguf.quants.dequantize` gives for
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q4_K, Q5_K (blocks of 32: `I8x32`) and Q2_K, Q3_K, Q6_K
 * (blocks of 16, one scale each: `I8x16`). Every ggml block format reduces to that, so one GPU
 * loader serves them all, at 1.25 (1.5) bytes per weight instead of float32's 4.
 *
 * Layout of a block of S elements: S code bytes (int8), then scale and min (f32, little-endian);
 * 40 bytes for S = 32, 24 for S = 16. A row of `cols` elements is `cols / S` whole blocks.
 *
 * @module
 */

import type { DType } from "./types.ts";

/** The two block-int8 dtypes. */
export type BlockInt8DType = "I8x32" | "I8x16";

/** Whether `dtype` is a block-int8 form. */
export function isBlockInt8(dtype: string): dtype is BlockInt8DType {
  return dtype === "I8x32" || dtype === "I8x16";
}

/** Elements per block of a block-int8 dtype. */
export function blockElements(dtype: BlockInt8DType): 16 | 32 {
  return dtype === "I8x32" ? 32 : 16;
}

/** Bytes of `count` elements of any storage dtype (block-int8: whole blocks only). */
export function tensorBytes(dtype: DType, count: number): number {
  if (!isBlockInt8(dtype)) return count * (dtype === "F32" ? 4 : 2);
  const s = blockElements(dtype);
  if (count % s !== 0) throw new RangeError(`${count} elements are not whole ${dtype} blocks`);
  return (count / s) * (s + 8);
}

/** Packs codes, per-block scales and mins (`scales.length` blocks of `s`) into the layout. */
export function packBlockInt8(
  codes: Int8Array,
  scales: Float32Array,
  mins: Float32Array,
  s: 16 | 32,
): Uint8Array {
  const out = new Uint8Array(scales.length * (s + 8));
  const view = new DataView(out.buffer);
  for (let b = 0; b < scales.length; b++) {
    const at = b * (s + 8);
    out.set(new Uint8Array(codes.buffer, codes.byteOffset + b * s, s), at);
    view.setFloat32(at + s, scales[b], true);
    view.setFloat32(at + s + 4, mins[b], true);
  }
  return out;
}

/** The float32 values of `count` block-int8 elements: `fround(scale · code) + min`. */
export function blockInt8ToFloat32(dtype: BlockInt8DType, data: Uint8Array): Float32Array {
  const s = blockElements(dtype), blocks = data.byteLength / (s + 8);
  const out = new Float32Array(blocks * s);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let b = 0, e = 0; b < blocks; b++) {
    const at = b * (s + 8);
    const scale = view.getFloat32(at + s, true), min = view.getFloat32(at + s + 4, true);
    for (let i = 0; i < s; i++, e++) {
      out[e] = Math.fround(scale * view.getInt8(at + i)) + min;
    }
  }
  return out;
}

/** Index of the first block whose scale or min is not finite, or −1. */
export function firstNonFiniteBlock(dtype: BlockInt8DType, data: Uint8Array): number {
  const s = blockElements(dtype), blocks = data.byteLength / (s + 8);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = b * (s + 8);
    const ok = Number.isFinite(view.getFloat32(at + s, true)) &&
      Number.isFinite(view.getFloat32(at + s + 4, true));
    if (!ok) return b;
  }
  return -1;
}
