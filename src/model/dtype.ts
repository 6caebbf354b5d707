/**
 * Decoding checkpoint tensors (F32, F16, BF16 little-endian bytes) to `Float32Array`.
 * Every F16 and BF16 value is exactly representable in float32, so decoding is exact.
 * Used by the CPU reference and by tests; the GPU keeps 16-bit weights packed.
 *
 * @module
 */

import type { DType, Tensor } from "./types.ts";
import { blockInt8ToFloat32, firstNonFiniteBlock, isBlockInt8, tensorBytes } from "./blockInt8.ts";

/** Bytes per element of a 4- or 2-byte storage dtype (block-int8: see `tensorBytes`). */
export function bytesPerElement(dtype: DType): number {
  if (isBlockInt8(dtype)) throw new RangeError(`${dtype} has no whole bytes per element`);
  return dtype === "F32" ? 4 : 2;
}

/** Number of elements of a shape (1 for a scalar shape `[]`). */
export function elementCount(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) count *= dim;
  return count;
}

/** Decodes one bfloat16 bit pattern (upper half of a float32) to its exact value. */
export function bf16BitsToNumber(bits: number): number {
  SCRATCH_U32[0] = (bits & 0xffff) << 16;
  return SCRATCH_F32[0];
}

/** Decodes one IEEE half-precision bit pattern (normals, subnormals, inf, NaN) exactly. */
export function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const SCRATCH_U32 = new Uint32Array(1);
const SCRATCH_F32 = new Float32Array(SCRATCH_U32.buffer);

/** Decodes a tensor's raw bytes to float32 values (a fresh array, never a view of the tensor). */
export function tensorToFloat32(tensor: Tensor): Float32Array {
  const count = elementCount(tensor.shape);
  const expectedBytes = tensorBytes(tensor.dtype, count);
  if (tensor.data.byteLength !== expectedBytes) {
    throw new Error(
      `tensor "${tensor.name}" holds ${tensor.data.byteLength} bytes, expected ${expectedBytes}`,
    );
  }
  const bytes = tensor.data;
  if (isBlockInt8(tensor.dtype)) return blockInt8ToFloat32(tensor.dtype, bytes);
  const out = new Float32Array(count);
  if (tensor.dtype === "F32") {
    new Uint8Array(out.buffer).set(bytes);
    if (!LITTLE_ENDIAN) {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    }
    return out;
  }
  const out32 = new Uint32Array(out.buffer);
  for (let i = 0; i < count; i++) {
    const bits = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    if (tensor.dtype === "BF16") out32[i] = bits << 16;
    else out[i] = f16BitsToNumber(bits);
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Index of the first NaN or ±Infinity in a tensor (all exponent bits set), or −1. Reads the raw
 * bits, so it is fast and allocates nothing beyond a view.
 */
export function firstNonFinite(tensor: Tensor): number {
  const { dtype } = tensor;
  if (isBlockInt8(dtype)) return firstNonFiniteBlock(dtype, tensor.data);
  // Typed views need aligned offsets; copy the rare unaligned tensor.
  const data = tensor.data.byteOffset % 4 === 0 ? tensor.data : tensor.data.slice();
  if (dtype === "F32") {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2);
    for (let i = 0; i < words.length; i++) if ((words[i] & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const halves = new Uint16Array(data.buffer, data.byteOffset, data.byteLength >>> 1);
  const mask = dtype === "BF16" ? 0x7f80 : 0x7c00;
  for (let i = 0; i < halves.length; i++) if ((halves[i] & mask) === mask) return i;
  return -1;
}
