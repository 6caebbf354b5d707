/** `quant`: KIVI-style low-bit KV storage. @module */
import type { PressSchema } from "./schema.ts";

/**
 * KIVI (Liu et al., 2024, arXiv 2402.02750; jy-yuan/KIVI): asymmetric min/max quantization,
 * keys per channel (groups of `group` tokens), values per token (groups of `group` channels);
 * the most recent `residual` tokens stay in full precision until a block fills.
 */
export const quantPress: PressSchema = {
  kind: "press",
  name: "quant",
  role: "store",
  when: "bounded",
  params: [
    { name: "bits", type: { kind: "int", oneOf: [2, 4, 8] }, default: 4, doc: "bits per value" },
    {
      name: "group",
      type: { kind: "int", min: 1, max: 1024 },
      default: 32,
      doc: "quantization group size (KIVI uses 32 to 128)",
    },
    {
      name: "residual",
      type: { kind: "int", min: 0, max: 65536 },
      default: 32,
      doc: "recent tokens kept in full precision",
    },
  ],
  doc: "KIVI: packed low-bit keys (per channel) and values (per token).",
};

/*
 * Packed layout of one (layer, KV head) stream of T tokens, head dimension d, b bits, group G
 * (the layout the GPU kernels follow):
 * - The first Q = quantizedTokenCount(T) tokens are quantised; the last T − Q stay in full
 *   precision (the residual, stored as the runtime's float cache). Q is a multiple of G and
 *   T − Q lies in [residual, residual + G) once T ≥ residual: tokens leave the residual in
 *   whole blocks of G.
 * - Codes (keys and values alike) are token-major: token t owns W = ceil(d·b/32) u32 words at
 *   `codes[t·W …]`; channel c sits in word ⌊c / (32/b)⌋ at bit offset (c mod (32/b))·b,
 *   lowest bits first. Unused high bits of a token's last word are 0.
 * - Key params (per channel, shared by a block of G tokens): block β = ⌊t/G⌋, channel c:
 *   `keyParams[2(β·d + c)]` = min, `keyParams[2(β·d + c) + 1]` = scale (f32).
 * - Value params (per token, shared by a group of G channels): token t, group γ = ⌊c/G⌋ of
 *   ceil(d/G) groups (the last may be partial): `valueParams[2(t·ceil(d/G) + γ)]` = min, `+ 1`
 *   = scale (f32).
 * - Quantisation: scale = f32((max − min)/(2^b − 1)), code = round((x − min)/scale) clamped to
 *   [0, 2^b − 1] (0 when scale = 0); dequantised x̂ = min + code·scale, |x − x̂| ≤ scale/2.
 */

/** Parameters of the quant press, named as in the schema. */
export interface QuantParams {
  /** Bits per value: 2, 4 or 8. */
  bits: number;
  /** Group size: tokens per key block, channels per value group. */
  group: number;
  /** Recent tokens kept in full precision. */
  residual: number;
}

/** Packed codes and their (min, scale) pairs. */
export interface PackedTensor {
  /** Token-major packed codes, `W` words per token. */
  codes: Uint32Array;
  /** Interleaved (min, scale) pairs, see the layout above. */
  params: Float32Array;
}

/** Q: how many of `numTokens` tokens are stored quantised (a multiple of `group`). */
export function quantizedTokenCount(numTokens: number, params: QuantParams): number {
  if (numTokens <= params.residual) return 0;
  return Math.floor((numTokens - params.residual) / params.group) * params.group;
}

/** W: u32 words holding one token's `headDim` codes. */
export function wordsPerToken(headDim: number, bits: number): number {
  return Math.ceil((headDim * bits) / 32);
}

function quantizeGroup(
  source: ArrayLike<number>,
  indices: number[],
  bits: number,
  codes: Uint32Array,
  wordsPerRow: number,
  headDim: number,
): [number, number] {
  let min = Infinity, max = -Infinity;
  for (const i of indices) {
    min = Math.min(min, source[i]);
    max = Math.max(max, source[i]);
  }
  min = Math.fround(min);
  const levels = 2 ** bits - 1;
  const scale = Math.fround((max - min) / levels);
  const perWord = 32 / bits;
  for (const i of indices) {
    const code = scale === 0
      ? 0
      : Math.min(levels, Math.max(0, Math.round((source[i] - min) / scale)));
    const t = Math.floor(i / headDim), c = i % headDim;
    const word = t * wordsPerRow + Math.floor(c / perWord);
    codes[word] = (codes[word] | (code << ((c % perWord) * bits))) >>> 0;
  }
  return [min, scale];
}

function checkShape(data: ArrayLike<number>, headDim: number, params: QuantParams): number {
  if (![2, 4, 8].includes(params.bits)) throw new RangeError(`bits must be 2, 4 or 8`);
  const tokens = data.length / headDim;
  if (!Number.isInteger(tokens)) throw new RangeError(`data is not a whole number of tokens`);
  return tokens;
}

/**
 * Packs `keys` (`tokens × headDim`, tokens a multiple of `group`): per channel, each block of
 * `group` tokens shares a (min, scale).
 */
export function quantizeKeys(
  keys: ArrayLike<number>,
  headDim: number,
  params: QuantParams,
): PackedTensor {
  const tokens = checkShape(keys, headDim, params);
  const { bits, group } = params;
  if (tokens % group !== 0) throw new RangeError(`${tokens} key tokens: not whole blocks`);
  const words = wordsPerToken(headDim, bits);
  const codes = new Uint32Array(tokens * words);
  const out = new Float32Array(2 * (tokens / group) * headDim);
  for (let block = 0; block < tokens / group; block++) {
    for (let c = 0; c < headDim; c++) {
      const indices = [];
      for (let t = block * group; t < (block + 1) * group; t++) indices.push(t * headDim + c);
      const [min, scale] = quantizeGroup(keys, indices, bits, codes, words, headDim);
      out[2 * (block * headDim + c)] = min;
      out[2 * (block * headDim + c) + 1] = scale;
    }
  }
  return { codes, params: out };
}

/** Packs `values` (`tokens × headDim`): per token, each group of `group` channels shares one. */
export function quantizeValues(
  values: ArrayLike<number>,
  headDim: number,
  params: QuantParams,
): PackedTensor {
  const tokens = checkShape(values, headDim, params);
  const { bits, group } = params;
  const words = wordsPerToken(headDim, bits);
  const groups = Math.ceil(headDim / group);
  const codes = new Uint32Array(tokens * words);
  const out = new Float32Array(2 * tokens * groups);
  for (let t = 0; t < tokens; t++) {
    for (let g = 0; g < groups; g++) {
      const indices = [];
      for (let c = g * group; c < Math.min(headDim, (g + 1) * group); c++) {
        indices.push(t * headDim + c);
      }
      const [min, scale] = quantizeGroup(values, indices, bits, codes, words, headDim);
      out[2 * (t * groups + g)] = min;
      out[2 * (t * groups + g) + 1] = scale;
    }
  }
  return { codes, params: out };
}

function code(codes: Uint32Array, t: number, c: number, headDim: number, bits: number): number {
  const perWord = 32 / bits;
  const word = codes[t * wordsPerToken(headDim, bits) + Math.floor(c / perWord)];
  return (word >>> ((c % perWord) * bits)) & (2 ** bits - 1);
}

/** Unpacks {@link quantizeKeys} output to `tokens × headDim` float32. */
export function dequantizeKeys(
  packed: PackedTensor,
  headDim: number,
  params: QuantParams,
): Float32Array {
  const tokens = packed.codes.length / wordsPerToken(headDim, params.bits);
  const out = new Float32Array(tokens * headDim);
  for (let t = 0; t < tokens; t++) {
    const block = Math.floor(t / params.group);
    for (let c = 0; c < headDim; c++) {
      const at = 2 * (block * headDim + c);
      out[t * headDim + c] = packed.params[at] +
        code(packed.codes, t, c, headDim, params.bits) * packed.params[at + 1];
    }
  }
  return out;
}

/** Unpacks {@link quantizeValues} output to `tokens × headDim` float32. */
export function dequantizeValues(
  packed: PackedTensor,
  headDim: number,
  params: QuantParams,
): Float32Array {
  const tokens = packed.codes.length / wordsPerToken(headDim, params.bits);
  const groups = Math.ceil(headDim / params.group);
  const out = new Float32Array(tokens * headDim);
  for (let t = 0; t < tokens; t++) {
    for (let c = 0; c < headDim; c++) {
      const at = 2 * (t * groups + Math.floor(c / params.group));
      out[t * headDim + c] = packed.params[at] +
        code(packed.codes, t, c, headDim, params.bits) * packed.params[at + 1];
    }
  }
  return out;
}

/** Bytes of one (layer, KV head) stream, keys and values together. */
export interface QuantBytes {
  /** Packed codes: 2 · Q · W · 4. */
  codes: number;
  /** (min, scale) f32 pairs: 8 · (Q/G · d + Q · ceil(d/G)). */
  scales: number;
  /** Full-precision residual: 2 · (T − Q) · d · bytesPerElement. */
  residual: number;
  /** The sum. */
  total: number;
}

/**
 * Exact storage of `numTokens` tokens of one (layer, KV head) under the layout above, keys and
 * values together; residual elements take `residualBytesPerElement` bytes (2 for f16).
 */
export function quantizedBytes(
  numTokens: number,
  headDim: number,
  params: QuantParams,
  residualBytesPerElement = 2,
): QuantBytes {
  const quantized = quantizedTokenCount(numTokens, params);
  const codes = 2 * quantized * wordsPerToken(headDim, params.bits) * 4;
  const pairs = (quantized / params.group) * headDim +
    quantized * Math.ceil(headDim / params.group);
  const scales = 8 * pairs;
  const residual = 2 * (numTokens - quantized) * headDim * residualBytesPerElement;
  return { codes, scales, residual, total: codes + scales + residual };
}
