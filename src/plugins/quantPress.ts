/** `quant`: KIVI-style low-bit KV storage. @module */
import type { PressSchema } from "./schema.ts";

/**
 * KIVI (Liu et al., 2024, arXiv 2402.02750; jy-yuan/KIVI `models/llama_kivi.py`): asymmetric
 * min/max quantization, keys per channel (blocks of `group` tokens), values per token (groups of
 * `group` channels), with KIVI's own residual semantics: keys wait in full precision until
 * `residual` of them have gathered, then are packed together (0 … residual−1 stay full); values
 * keep exactly the `residual` most recent tokens in full precision, the oldest packed one token at
 * a time as new ones arrive. `residual` must be a positive multiple of `group` (KIVI asserts it).
 * `bits` sets both key and value bits; `kbits` / `vbits` override one side (KIVI's `k_bits`,
 * `v_bits`). Defaults (4-bit, G 32, R 32) are SimLayerKV's KIVI setting; the KIVI paper's main
 * runs are `quant(bits=2, residual=128)`.
 */
export const quantPress: PressSchema = {
  kind: "press",
  name: "quant",
  role: "store",
  when: "bounded",
  params: [
    {
      name: "bits",
      type: { kind: "int", oneOf: [2, 4, 8] },
      default: 4,
      doc: "bits per value (keys and values)",
    },
    {
      name: "group",
      type: { kind: "int", min: 1, max: 1024 },
      default: 32,
      doc: "quantization group size (KIVI uses 32 to 128)",
    },
    {
      name: "residual",
      type: { kind: "int", min: 1, max: 65536 },
      default: 32,
      doc: "recent tokens kept in full precision (R, a multiple of group; keys: 0 … R−1)",
    },
    {
      name: "kbits",
      type: { kind: "int", oneOf: [2, 4, 8] },
      default: null,
      doc: "bits per key (auto: bits)",
    },
    {
      name: "vbits",
      type: { kind: "int", oneOf: [2, 4, 8] },
      default: null,
      doc: "bits per value (auto: bits)",
    },
  ],
  doc: "KIVI: packed low-bit keys (per channel) and values (per token).",
  checkParams: (p) => {
    const group = p.group as number, residual = p.residual as number;
    return residual % group === 0 ? undefined : {
      error: `quant: 'residual' (${residual}) must be a multiple of 'group' (${group}): KIVI ` +
        `packs keys ${residual} at a time, in blocks of ${group}`,
      hint: `e.g. quant(group=${group}, residual=${
        Math.max(1, Math.round(residual / group)) * group
      })`,
    };
  },
};

/*
 * Packed layout of one (layer, KV head) stream of T entries, head dimension d, group G,
 * residual R (a multiple of G), key bits kb, value bits vb (the layout the GPU kernels follow):
 * - Keys: the first Qk = T − (T mod R) entries are packed (whole blocks of G tokens), the last
 *   T mod R stay in full precision. Values: the first Qv = max(0, T − R) are packed, the last
 *   min(T, R) stay in full precision. Qv < Qk once T ≥ R: a key is packed before its value.
 *   (This is the state KIVI holds after each step; `models/llama_kivi.py`, prefill and decode.)
 * - Codes are token-major: token t owns W = ceil(d·b/32) u32 words at `codes[t·W …]` (b = kb
 *   for keys, vb for values); channel c sits in word ⌊c / (32/b)⌋ at bit offset (c mod (32/b))·b,
 *   lowest bits first. Unused high bits of a token's last word are 0.
 * - Key params (per channel, shared by a block of G tokens): block β = ⌊t/G⌋, channel c:
 *   `keyParams[2(β·d + c)]` = min, `keyParams[2(β·d + c) + 1]` = scale (f32).
 * - Value params (per token, shared by a group of G channels): token t, group γ = ⌊c/G⌋ of
 *   ceil(d/G) groups (the last may be partial): `valueParams[2(t·ceil(d/G) + γ)]` = min, `+ 1`
 *   = scale (f32).
 * - Quantisation: scale = f32((max − min)/(2^b − 1)), code = round((x − min)/scale) clamped to
 *   [0, 2^b − 1] (0 when scale = 0); dequantised x̂ = min + code·scale, |x − x̂| ≤ scale/2.
 */

/** Parameters of the quant press once resolved (`kbits` / `vbits` default to `bits`). */
export interface QuantParams {
  /** Bits per key code: 2, 4 or 8. */
  kbits: number;
  /** Bits per value code: 2, 4 or 8. */
  vbits: number;
  /** Group size: tokens per key block, channels per value group. */
  group: number;
  /** R: a multiple of `group`; keys 0 … R−1 and values R stay in full precision. */
  residual: number;
}

/** One side's quantiser: bits per code and group size. */
export interface Quantizer {
  /** Bits per code: 2, 4 or 8. */
  bits: number;
  /** Group size. */
  group: number;
}

/** Resolves a plan's quant parameters (`kbits` / `vbits` `null` = `bits`). */
export function quantParams(p: Record<string, unknown>): QuantParams {
  const bits = p.bits as number;
  return {
    kbits: (p.kbits as number | null) ?? bits,
    vbits: (p.vbits as number | null) ?? bits,
    group: p.group as number,
    residual: p.residual as number,
  };
}

/** Packed tokens out of `numTokens`, as KIVI holds them after a step. */
export interface PackedCounts {
  /** Qk = T − (T mod R): keys packed in whole groups of R. */
  keys: number;
  /** Qv = max(0, T − R): values packed one token at a time. */
  values: number;
}

/** Qk and Qv for a stream of `numTokens` entries (see the layout above). */
export function packedCounts(numTokens: number, residual: number): PackedCounts {
  return {
    keys: numTokens - (numTokens % residual),
    values: Math.max(0, numTokens - residual),
  };
}

/** Packed codes and their (min, scale) pairs. */
export interface PackedTensor {
  /** Token-major packed codes, `W` words per token. */
  codes: Uint32Array;
  /** Interleaved (min, scale) pairs, see the layout above. */
  params: Float32Array;
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

function checkShape(data: ArrayLike<number>, headDim: number, params: Quantizer): number {
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
  params: Quantizer,
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
  params: Quantizer,
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
  params: Quantizer,
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
  params: Quantizer,
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
  /** Packed codes: Qk · Wk · 4 + Qv · Wv · 4. */
  codes: number;
  /** (min, scale) f32 pairs: 8 · (Qk/G · d + Qv · ceil(d/G)). */
  scales: number;
  /** Full-precision rows: ((T − Qk) + (T − Qv)) · d · bytesPerElement. */
  residual: number;
  /** The sum. */
  total: number;
}

/**
 * Exact storage of `numTokens` tokens of one (layer, KV head) under the layout above, as KIVI
 * holds them after a step; full-precision elements take `residualBytesPerElement` bytes (2 for
 * f16).
 */
export function quantizedBytes(
  numTokens: number,
  headDim: number,
  params: QuantParams,
  residualBytesPerElement = 2,
): QuantBytes {
  const q = packedCounts(numTokens, params.residual);
  return packedBytes(numTokens, q, headDim, params, residualBytesPerElement);
}

/** Storage of `numTokens` entries of which `packed` keys / values are packed (see above). */
export function packedBytes(
  numTokens: number,
  packed: PackedCounts,
  headDim: number,
  p: Omit<QuantParams, "residual">,
  residualBytesPerElement: number,
): QuantBytes {
  const codes = 4 * (packed.keys * wordsPerToken(headDim, p.kbits) +
    packed.values * wordsPerToken(headDim, p.vbits));
  const pairs = (packed.keys / p.group) * headDim + packed.values * Math.ceil(headDim / p.group);
  const scales = 8 * pairs;
  const residual = (2 * numTokens - packed.keys - packed.values) * headDim *
    residualBytesPerElement;
  return { codes, scales, residual, total: codes + scales + residual };
}
