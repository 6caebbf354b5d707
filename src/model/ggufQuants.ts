/**
 * Exact dequantization of GGUF tensor data (ggml's block formats) to float32. Every result is
 * bit-for-bit what the reference dequantizer of llama.cpp's Python package computes
 * (`gguf.quants.dequantize`): f16 scales widen to float32 exactly, and each product and sum is
 * rounded to float32 in the same order as there (`Math.fround`, or the store into the
 * Float32Array). Block layouts follow ggml's `ggml-common.h` (`block_q4_0`, `block_q4_K`, ...);
 * all fields are little-endian, as is the host (F32 data is copied as is).
 *
 * @module
 */

import type { GgmlTypeName } from "./ggufTypes.ts";
import { type BlockInt8DType, packBlockInt8 } from "./blockInt8.ts";

/** Elements in a super-block of the K-quants (`QK_K` in `ggml-common.h`). */
const QK_K = 256;

/** [elements per block, bytes per block] of every ggml type (`GGML_QUANT_SIZES` in gguf-py). */
const BLOCKS: Record<GgmlTypeName, readonly [number, number]> = {
  F32: [1, 4],
  F16: [1, 2],
  BF16: [1, 2],
  Q4_0: [32, 18],
  Q4_1: [32, 20],
  Q5_0: [32, 22],
  Q5_1: [32, 24],
  Q8_0: [32, 34],
  Q8_1: [32, 36],
  Q2_K: [QK_K, 84],
  Q3_K: [QK_K, 110],
  Q4_K: [QK_K, 144],
  Q5_K: [QK_K, 176],
  Q6_K: [QK_K, 210],
  Q8_K: [QK_K, 292],
};

/** A block decoder: `blocks` blocks of `data` into `out` (and `bits`, the same memory as u32). */
type Decoder = (data: Uint8Array, blocks: number, out: Float32Array, bits: Uint32Array) => void;

/**
 * Float32 value of every f16 bit pattern, computed on the bits (NaN payloads kept, as numpy's
 * `astype(np.float32)` does). Built on first use.
 */
let f16Table: Float32Array | undefined;

function f16ToF32(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    if (exp === 0x1f) bits[h] = sign | 0x7f800000 | (mant << 13);
    else if (exp !== 0) bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
    else if (mant === 0) bits[h] = sign;
    else {
      // Subnormal: normalize the mantissa into a float32 normal.
      let e = 113;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits[h] = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
  }
  return f16Table = new Float32Array(bits.buffer);
}

/** The f16 at byte `p` of `data`, widened through `table`. */
function f16(table: Float32Array, data: Uint8Array, p: number): number {
  return table[data[p] | (data[p + 1] << 8)];
}

/** F32: a plain copy of the bits. */
function decodeF32(data: Uint8Array, n: number, out: Float32Array): void {
  new Uint8Array(out.buffer, out.byteOffset, n * 4).set(data);
}

/** F16: each half widened exactly. */
function decodeF16(data: Uint8Array, n: number, _out: Float32Array, bits: Uint32Array): void {
  const table = new Uint32Array(f16ToF32().buffer);
  for (let i = 0; i < n; i++) bits[i] = table[data[2 * i] | (data[2 * i + 1] << 8)];
}

/** BF16: the upper 16 bits of a float32. */
function decodeBF16(data: Uint8Array, n: number, _out: Float32Array, bits: Uint32Array): void {
  for (let i = 0; i < n; i++) bits[i] = (data[2 * i] | (data[2 * i + 1] << 8)) << 16;
}

/**
 * A quantized block format unpacked into its parts: for every element e, an integer code
 * `codes[e]` (−128..127), and for every sub-block g of {@link Unpacker.sub} elements a float32
 * scale `scales[g]` and min `mins[g]` (−0 where the format has none), such that ggml's value is
 * `fround(scales[g] · codes[e]) + mins[g]` — exactly the operations, in the order, of
 * `gguf.quants.dequantize`.
 */
interface Unpacker {
  /** Elements per sub-block sharing one scale and min. */
  sub: 16 | 32;
  /** Unpacks `blocks` blocks of `data`. */
  unpack(
    data: Uint8Array,
    blocks: number,
    codes: Int8Array,
    scales: Float32Array,
    mins: Float32Array,
  ): void;
}

/** `block_q8_0`: f16 d, int8 qs[32]; x = qs * d. */
const unpackQ8_0: Unpacker = {
  sub: 32,
  unpack(data, nb, codes, scales, mins) {
    const table = f16ToF32();
    for (let b = 0, p = 0, o = 0; b < nb; b++, p += 34, o += 32) {
      scales[b] = f16(table, data, p);
      mins[b] = -0;
      codes.set(new Int8Array(data.buffer, data.byteOffset + p + 2, 32), o);
    }
  },
};

/**
 * The four 32-element formats `block_q4_0`, `block_q4_1`, `block_q5_0` and `block_q5_1`:
 * f16 d, [f16 m], [u32 qh], u8 qs[16]. Element j < 16 is the low nibble of qs[j], element
 * j + 16 the high one; bit j of qh is element j's fifth bit. x = d * (q - offset) [+ m].
 */
function unpackQ4Q5(hasMin: boolean, hasHigh: boolean): Unpacker {
  const bytes = 18 + (hasMin ? 2 : 0) + (hasHigh ? 4 : 0);
  const offset = hasMin ? 0 : hasHigh ? 16 : 8;
  return {
    sub: 32,
    unpack(data, nb, codes, scales, mins) {
      const table = f16ToF32();
      for (let b = 0, p = 0, o = 0; b < nb; b++, p += bytes, o += 32) {
        scales[b] = f16(table, data, p);
        mins[b] = hasMin ? f16(table, data, p + 2) : -0;
        let qh = 0;
        let qs = p + (hasMin ? 4 : 2);
        if (hasHigh) {
          qh = data[qs] | (data[qs + 1] << 8) | (data[qs + 2] << 16) | (data[qs + 3] << 24);
          qs += 4;
        }
        for (let j = 0; j < 16; j++) {
          const byte = data[qs + j];
          codes[o + j] = ((byte & 15) | (((qh >>> j) & 1) << 4)) - offset;
          codes[o + j + 16] = ((byte >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - offset;
        }
      }
    },
  };
}

/**
 * `block_q2_K` (84 bytes): u8 scales[16] (low nibble scale, high nibble min), u8 qs[64],
 * f16 d, f16 dmin. Element 128c + 32s + l is bits 2s..2s+1 of qs[32c + l]; its group of 16 is
 * g = element / 16. x = fround(d * scale_g) * q - fround(dmin * min_g).
 */
const unpackQ2_K: Unpacker = {
  sub: 16,
  unpack(data, nb, codes, scales, mins) {
    const table = f16ToF32();
    for (let b = 0, p = 0, o = 0; b < nb; b++, p += 84, o += QK_K) {
      const d = f16(table, data, p + 80);
      const dmin = f16(table, data, p + 82);
      for (let g = 0; g < 16; g++) {
        const sc = data[p + g];
        scales[16 * b + g] = Math.fround(d * (sc & 15));
        mins[16 * b + g] = -Math.fround(dmin * (sc >> 4));
        const shift = 2 * ((g >> 1) & 3);
        const qs = p + 16 + 32 * (g >> 3) + 16 * (g & 1);
        for (let l = 0; l < 16; l++) codes[o + 16 * g + l] = (data[qs + l] >> shift) & 3;
      }
    }
  },
};

/**
 * `block_q3_K` (110 bytes): u8 hmask[32], u8 qs[64], u8 scales[12] (sixteen 6-bit scales),
 * f16 d. Low bits as in Q2_K; element 32j + l subtracts 4 when bit j of hmask[l] is clear.
 * x = fround(d * (scale_g - 32)) * q.
 */
const unpackQ3_K: Unpacker = {
  sub: 16,
  unpack(data, nb, codes, scales, mins) {
    const table = f16ToF32();
    for (let b = 0, p = 0, o = 0; b < nb; b++, p += 110, o += QK_K) {
      const d = f16(table, data, p + 108);
      const sc = p + 96;
      for (let g = 0; g < 16; g++) {
        const low = (data[sc + (g & 7)] >> (g & 8 ? 4 : 0)) & 15;
        const high = (data[sc + 8 + (g & 3)] >> (2 * (g >> 2))) & 3;
        scales[16 * b + g] = Math.fround(d * ((low | (high << 4)) - 32));
        mins[16 * b + g] = -0;
        const j = g >> 1;
        const shift = 2 * (j & 3);
        const qs = p + 32 + 32 * (j >> 2) + 16 * (g & 1);
        const hm = p + 16 * (g & 1);
        for (let l = 0; l < 16; l++) {
          codes[o + 16 * g + l] = ((data[qs + l] >> shift) & 3) -
            (((data[hm + l] >> j) & 1) ^ 1) * 4;
        }
      }
    }
  },
};

/**
 * Scale and min of sub-block j of `block_q4_K`/`block_q5_K` from the 12 packed bytes at `s`
 * (`get_scale_min_k4` in ggml): 6 bits each, the top bits of sub-blocks 4..7 in bytes 0..7.
 */
function scaleK(data: Uint8Array, s: number, j: number): number {
  return j < 4 ? data[s + j] & 63 : (data[s + j + 4] & 15) | ((data[s + j - 4] >> 6) << 4);
}

/** The min of sub-block j, packed like {@link scaleK}'s scale (bytes 4..11). */
function minK(data: Uint8Array, s: number, j: number): number {
  return j < 4 ? data[s + j + 4] & 63 : (data[s + j + 4] >> 4) | ((data[s + j] >> 6) << 4);
}

/**
 * `block_q4_K` (144 bytes) and `block_q5_K` (176 bytes): f16 d, f16 dmin, u8 scales[12],
 * [u8 qh[32]], u8 qs[128]. Sub-block j = 2c + h (32 elements) takes nibble h of qs[32c + l],
 * and for Q5_K bit j of qh[l] as fifth bit. x = fround(d * sc_j) * q - fround(dmin * m_j).
 */
function unpackQ45_K(hasHigh: boolean): Unpacker {
  const bytes = hasHigh ? 176 : 144;
  return {
    sub: 32,
    unpack(data, nb, codes, scales, mins) {
      const table = f16ToF32();
      for (let b = 0, p = 0, o = 0; b < nb; b++, p += bytes, o += QK_K) {
        const d = f16(table, data, p);
        const dmin = f16(table, data, p + 2);
        const qh = p + 16;
        const qs = hasHigh ? p + 48 : p + 16;
        for (let j = 0; j < 8; j++) {
          scales[8 * b + j] = Math.fround(d * scaleK(data, p + 4, j));
          mins[8 * b + j] = -Math.fround(dmin * minK(data, p + 4, j));
          const shift = 4 * (j & 1);
          const q0 = qs + 32 * (j >> 1);
          const dst = o + 32 * j;
          for (let l = 0; l < 32; l++) {
            const high = hasHigh ? ((data[qh + l] >> j) & 1) << 4 : 0;
            codes[dst + l] = ((data[q0 + l] >> shift) & 15) | high;
          }
        }
      }
    },
  };
}

/**
 * `block_q6_K` (210 bytes): u8 ql[128], u8 qh[64], int8 scales[16], f16 d. Element 128c + r
 * takes nibble r / 64 of ql[64c + r % 64] and bits 2(r / 32).. of qh[32c + r % 32].
 * x = fround(d * scale_g) * (q - 32), g = element / 16.
 */
const unpackQ6_K: Unpacker = {
  sub: 16,
  unpack(data, nb, codes, scales, mins) {
    const table = f16ToF32();
    for (let b = 0, p = 0, o = 0; b < nb; b++, p += 210, o += QK_K) {
      const d = f16(table, data, p + 208);
      for (let g = 0; g < 16; g++) {
        scales[16 * b + g] = Math.fround(d * ((data[p + 192 + g] << 24) >> 24));
        mins[16 * b + g] = -0;
        const c = g >> 3;
        const r = 16 * (g & 7);
        const ql = p + 64 * c + (r & 63);
        const lowShift = 4 * (r >> 6);
        const qh = p + 128 + 32 * c + (r & 31);
        const highShift = 2 * (r >> 5);
        for (let l = 0; l < 16; l++) {
          codes[o + 16 * g + l] =
            (((data[ql + l] >> lowShift) & 15) | (((data[qh + l] >> highShift) & 3) << 4)) - 32;
        }
      }
    }
  },
};

const UNPACKERS: Partial<Record<GgmlTypeName, Unpacker>> = {
  Q4_0: unpackQ4Q5(false, false),
  Q4_1: unpackQ4Q5(true, false),
  Q5_0: unpackQ4Q5(false, true),
  Q5_1: unpackQ4Q5(true, true),
  Q8_0: unpackQ8_0,
  Q2_K: unpackQ2_K,
  Q3_K: unpackQ3_K,
  Q4_K: unpackQ45_K(false),
  Q5_K: unpackQ45_K(true),
  Q6_K: unpackQ6_K,
};

/** A quantized type's values through its unpacker: `fround(scale · code) + min`. */
function decodeUnpacked(unpacker: Unpacker, perBlock: number): Decoder {
  return (data, nb, out) => {
    const n = nb * perBlock, sub = unpacker.sub;
    const { codes, scales, mins } = unpackBlocks(unpacker, data, nb, n);
    for (let g = 0, e = 0; g < n / sub; g++) {
      const s = scales[g], m = mins[g];
      for (let i = 0; i < sub; i++, e++) out[e] = Math.fround(s * codes[e]) + m;
    }
  };
}

function unpackBlocks(unpacker: Unpacker, data: Uint8Array, nb: number, n: number) {
  const codes = new Int8Array(n);
  const scales = new Float32Array(n / unpacker.sub), mins = new Float32Array(n / unpacker.sub);
  unpacker.unpack(data, nb, codes, scales, mins);
  return { codes, scales, mins };
}

const DECODERS: Partial<Record<GgmlTypeName, Decoder>> = {
  F32: decodeF32,
  F16: decodeF16,
  BF16: decodeBF16,
  ...Object.fromEntries(
    Object.entries(UNPACKERS).map(([t, u]) => [t, decodeUnpacked(u, BLOCKS[t as GgmlTypeName][0])]),
  ),
};

/**
 * Whether {@link dequantize} handles the ggml type `name`: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0 and the K-quants Q2_K to Q6_K (not Q8_1 and Q8_K, which only hold activations).
 */
export function isSupportedGgmlType(name: string): name is GgmlTypeName {
  return Object.hasOwn(DECODERS, name);
}

/**
 * Elements and bytes of one block of `type` (`ggml-common.h`: e.g. `block_q8_0` holds 32
 * elements in 34 bytes, `block_q4_K` 256 in 144); F32 is {1, 4}, F16 and BF16 {1, 2}.
 */
export function ggmlBlockSize(type: GgmlTypeName): { elements: number; bytes: number } {
  const [elements, bytes] = BLOCKS[type];
  return { elements, bytes };
}

/**
 * Bytes that `elementCount` elements of `type` occupy. Throws when the count is not a whole
 * number of blocks.
 */
export function ggmlTensorBytes(type: GgmlTypeName, elementCount: number): number {
  const { elements, bytes } = ggmlBlockSize(type);
  if (!Number.isSafeInteger(elementCount) || elementCount < 0 || elementCount % elements !== 0) {
    throw new Error(
      `${elementCount} elements of ${type} are not a whole number of ${elements}-element blocks`,
    );
  }
  return (elementCount / elements) * bytes;
}

/**
 * Dequantizes `elementCount` elements of `type` from `data` (exactly
 * `ggmlTensorBytes(type, elementCount)` bytes, at any byte offset) into `out` (at least
 * `elementCount` floats; a new array when omitted), which is returned. Bit-identical to
 * `gguf.quants.dequantize`.
 */
export function dequantize(
  type: GgmlTypeName,
  data: Uint8Array,
  elementCount: number,
  out: Float32Array = new Float32Array(elementCount),
): Float32Array {
  const decode = DECODERS[type];
  if (!decode) throw new Error(`ggml type ${type} cannot be dequantized`);
  const bytes = ggmlTensorBytes(type, elementCount);
  if (data.byteLength !== bytes) {
    throw new Error(
      `${elementCount} elements of ${type} take ${bytes} bytes, but ${data.byteLength} were given`,
    );
  }
  if (out.length < elementCount) {
    throw new Error(`output holds ${out.length} floats, ${elementCount} needed`);
  }
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  decode(data, elementCount / BLOCKS[type][0], out, bits);
  return out;
}

/**
 * The block-int8 form (`blockInt8.ts`) of `elementCount` elements of a quantized `type`, or null
 * for F32, F16 and BF16. Its values equal {@link dequantize}'s bit for bit.
 */
export function toBlockInt8(
  type: GgmlTypeName,
  data: Uint8Array,
  elementCount: number,
): { dtype: BlockInt8DType; data: Uint8Array } | null {
  const unpacker = UNPACKERS[type];
  if (!unpacker) return null;
  const bytes = ggmlTensorBytes(type, elementCount);
  if (data.byteLength !== bytes) {
    throw new Error(
      `${elementCount} elements of ${type} take ${bytes} bytes, but ${data.byteLength} were given`,
    );
  }
  const { codes, scales, mins } = unpackBlocks(
    unpacker,
    data,
    elementCount / BLOCKS[type][0],
    elementCount,
  );
  return {
    dtype: unpacker.sub === 32 ? "I8x32" : "I8x16",
    data: packBlockInt8(codes, scales, mins, unpacker.sub),
  };
}
