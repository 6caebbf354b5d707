/**
 * What the two quantised decode split passes share (`quantDecodeAttention.ts`, thread per split;
 * `workgroupQuantDecodeAttention.ts`, workgroup per split): their WGSL preamble and params block.
 *
 * @module
 */

import { kvDecl, type KvStorage } from "../kvCache.ts";
import { packParams } from "../op.ts";
import { each } from "./wgslUnroll.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";

/**
 * WGSL both quantised split passes start with:
 * params (H, Hkv, group, splits, splitSize, scale, q04, chunks, vq0, vp0), the quantisation
 * constants, `NEG`, and bindings 1–7 (q, meta, residual K / V, codes, pairs, partials).
 */
export function quantDecodePreambleWgsl(c: QuantKvLayer, storage: KvStorage): string {
  return `struct Params { H: u32, Hkv: u32, group: u32, splits: u32, splitSize: u32, scale: f32,
  q04: u32, chunks: u32, vq0: u32, vp0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
${quantConstsWgsl(c.headDim, c.quant)}
const NEG = -3.0e38;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("RK", 3, storage, false)}
${kvDecl("RV", 4, storage, false)}
${quantBuffersWgsl(5, false)}
@group(0) @binding(7) var<storage, read_write> part: array<vec4<f32>>;`;
}

/** The params block of {@link quantDecodePreambleWgsl} (queries from element 0). */
export function quantDecodeParams(
  c: QuantKvLayer,
  a: { numHeads: number; splits: number; splitSize: number; scale: number; headsPerGroup: number },
): ArrayBuffer {
  const group = a.numHeads / c.numKvHeads;
  return packParams([
    ["u32", a.numHeads],
    ["u32", c.numKvHeads],
    ["u32", group],
    ["u32", a.splits],
    ["u32", a.splitSize],
    ["f32", a.scale],
    ["u32", 0],
    ["u32", group / a.headsPerGroup],
    ["u32", c.valueCodes],
    ["u32", c.valueParams],
  ]);
}

/**
 * WGSL expression of the 4 codes of channels 4d … 4d+3 as a `vec4<f32>`: they lie in one code
 * word (32/bits is a multiple of 4), so the word index and the shifts are constants. `word(i)` is
 * the WGSL expression of code word `i` of the entry.
 */
export function codesVec4Wgsl(word: (i: number) => string, d: number, bits: number): string {
  const perWord = 32 / bits, sh = ((4 * d) % perWord) * bits;
  const shifts = each(4, (i) => `${sh + i * bits}u`, ", ");
  return `vec4<f32>((vec4<u32>(${
    word(Math.floor((4 * d) / perWord))
  }) >> vec4<u32>(${shifts})) & vec4<u32>(${2 ** bits - 1}u))`;
}
