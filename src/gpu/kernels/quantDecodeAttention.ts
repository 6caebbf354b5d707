/**
 * Decode attention (one query token) over a quantised layer, split-KV flash decoding like
 * `decodeAttention`, dequantising inside the kernel. A head's entries are numbered
 * j = 0 … T−1: j < Q are its packed slots `qbase + j` (keys dequantised per channel with the
 * block's (min, scale), values per token and channel group), j ≥ Q its residual ring entries
 * (row `rbase + (rstart + j − Q) % rcap`, full precision). One thread per (query head, split of
 * `splitSize` entries) runs the shared online softmax over its entries, whichever part they lie
 * in, and writes `(O, m, l)` partials; the shared reduce pass merges them. GQA: the KV head is
 * `h / (H / Hkv)`. Key (min, scale) vectors are cached per block in private memory.
 *
 * Split bindings: 0 params, 1 q f32, 2 meta, 3 residual K, 4 residual V, 5 codes, 6 pairs (read),
 * 7 scratch (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { kvDecl } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams, sequenceOp } from "../op.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import { onlineSoftmaxWgsl } from "./attentionCommon.ts";
import {
  decodeReduce,
  decodeScratchBytes,
  defaultSplitSize,
  withOwnedScratch,
} from "./decodeAttention.ts";

/** Arguments of {@link quantDecodeAttention}. */
export interface QuantDecodeAttentionArgs {
  /** The layer's quantised cache (the current token already appended). */
  cache: QuantKvLayer;
  /** Query `[H·D]` f32 after RoPE. */
  q: BufferRef;
  /** Output `[H·D]` f32. */
  out: BufferRef;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  /** Scratch of at least `decodeScratchBytes` bytes (allocated by the op if omitted). */
  scratch?: GPUBuffer;
  /** Entries per split (default: about 64 splits over the largest head, at least 32). */
  splitSize?: number;
}

/** Largest number of entries any head of `c` can hold (packed slots + residual rows). */
export function quantMaxEntries(c: QuantKvLayer): number {
  return Math.max(1, ...c.quantCapacities.map((q, h) => q + c.residualCapacities[h]));
}

function valueParamsWgsl(group: number): string {
  // Channels 4d … 4d+3 share one value group when G is a multiple of 4.
  if (group % 4 === 0) {
    return `fn vgroups(slot: u32, c: u32) -> array<vec4<f32>, 2> {
  let at = 2u * (slot * NG + c / G);
  return array<vec4<f32>, 2>(vec4<f32>(vp(at)), vec4<f32>(vp(at + 1u)));
}`;
  }
  return `fn vgroups(slot: u32, c: u32) -> array<vec4<f32>, 2> {
  let a = 2u * (slot * NG + vec4<u32>(c, c + 1u, c + 2u, c + 3u) / G);
  return array<vec4<f32>, 2>(
    vec4<f32>(vp(a.x), vp(a.y), vp(a.z), vp(a.w)),
    vec4<f32>(vp(a.x + 1u), vp(a.y + 1u), vp(a.z + 1u), vp(a.w + 1u)));
}`;
}

function splitCode(c: QuantKvLayer): string {
  return `struct Params { H: u32, Hkv: u32, group: u32, splits: u32, splitSize: u32, scale: f32,
  vq0: u32, vp0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
${quantConstsWgsl(c.headDim, c.quant)}
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("RK", 3, c.dtype, false)}
${kvDecl("RV", 4, c.dtype, false)}
${quantBuffersWgsl(5, false)}
@group(0) @binding(7) var<storage, read_write> part: array<vec4<f32>>;
${onlineSoftmaxWgsl(true)}
var<private> nq: u32;
var<private> qbase: u32;
var<private> rbase: u32;
var<private> rcap: u32;
var<private> rstart: u32;
var<private> kblk: u32;
var<private> kmn: array<vec4<f32>, D4>;
var<private> ksc: array<vec4<f32>, D4>;
fn codes4(word: u32, c: u32) -> vec4<f32> {
  let sh = (c % PER_WORD) * BITS;
  return vec4<f32>(vec4<u32>(word >> sh, word >> (sh + BITS), word >> (sh + 2u * BITS),
    word >> (sh + 3u * BITS)) & vec4<u32>(MASK));
}
fn loadKeyBlock(blk: u32) {
  for (var d = 0u; d < D4; d++) {
    let at = 2u * (blk * D + 4u * d);
    kmn[d] = vec4<f32>(kp(at), kp(at + 2u), kp(at + 4u), kp(at + 6u));
    ksc[d] = vec4<f32>(kp(at + 1u), kp(at + 3u), kp(at + 5u), kp(at + 7u));
  }
  kblk = blk;
}
${valueParamsWgsl(c.quant.group)}
fn ringRow(j: u32) -> u32 { return rbase + (rstart + j - nq) % rcap; }
fn entryScore(j: u32) -> f32 {
  var s = vec4<f32>(0.0);
  if (j < nq) {
    let slot = qbase + j;
    if (slot / G != kblk) { loadKeyBlock(slot / G); }
    for (var d = 0u; d < D4; d++) {
      let k = kmn[d] + codes4(kq(slot * W + 4u * d / PER_WORD), 4u * d) * ksc[d];
      s += q[d] * k;
    }
  } else {
    let row = ringRow(j);
    for (var d = 0u; d < D4; d++) { s += q[d] * RK4(row * D4 + d); }
  }
  return (s.x + s.y) + (s.z + s.w);
}
fn entryValue(j: u32, pk: f32) {
  if (j < nq) {
    let slot = qbase + j;
    for (var d = 0u; d < D4; d++) {
      let ms = vgroups(slot, 4u * d);
      o[d] += pk * (ms[0] + codes4(vq(slot * W + 4u * d / PER_WORD), 4u * d) * ms[1]);
    }
  } else {
    let row = ringRow(j);
    for (var d = 0u; d < D4; d++) { o[d] += pk * RV4(row * D4 + d); }
  }
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x;
  let h = gid.y;
  if (s >= p.splits) { return; }
  let kvh = h / p.group;
  rbase = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  rcap = kvmeta[2u * p.Hkv + kvh];
  rstart = kvmeta[4u * p.Hkv + kvh];
  nq = kvmeta[5u * p.Hkv + kvh];
  qbase = kvmeta[7u * p.Hkv + kvh];
  kblk = 0xffffffffu;
  let j0 = s * p.splitSize;
  let j1 = min(j0 + p.splitSize, len);
  for (var d = 0u; d < D4; d++) {
    q[d] = Q[h * D4 + d] * p.scale;
    o[d] = vec4<f32>(0.0);
  }
  mx = NEG;
  l = 0.0;
  if (j0 < j1) { attend(0u, j0, j1); }
  let at = (h * p.splits + s) * (D4 + 1u);
  for (var d = 0u; d < D4; d++) { part[at + d] = o[d]; }
  part[at + D4] = vec4<f32>(mx, l, 0.0, 0.0);
}
`;
}

/** Prepares split-KV decode attention over a quantised layer (two dispatches). */
export function quantDecodeAttention(ctx: GpuContext, a: QuantDecodeAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`quantDecodeAttention: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const maxEntries = quantMaxEntries(c);
  const splitSize = a.splitSize ?? defaultSplitSize(maxEntries);
  const splits = Math.max(1, Math.ceil(maxEntries / splitSize));
  const need = decodeScratchBytes(H, D, maxEntries, splitSize);
  let owned: GPUBuffer | null = null;
  const scratch = a.scratch ?? (owned = ctx.createBuffer(need));
  if (scratch.size < need) throw new RangeError(`quantDecodeAttention: scratch needs ${need} B`);
  const key = `quantDecodeAttn:${c.dtype}:${D}:${c.quant.bits}:${c.quant.group}`;
  const split = dispatchOp(ctx, {
    label: "quantDecodeAttention.split",
    pipeline: ctx.pipeline(key, () => splitCode(c)),
    params: packParams([
      ["u32", H],
      ["u32", c.numKvHeads],
      ["u32", H / c.numKvHeads],
      ["u32", splits],
      ["u32", splitSize],
      ["f32", a.scale ?? 1 / Math.sqrt(D)],
      ["u32", c.valueCodes],
      ["u32", c.valueParams],
    ]),
    buffers: [a.q, c.meta, c.rk, c.rv, c.codes, c.params, scratch],
    workgroups: [Math.ceil(splits / 64), H],
  });
  const reduce = decodeReduce(ctx, { scratch, out: a.out, numHeads: H, headDim: D, splits });
  return withOwnedScratch(ctx, sequenceOp("quantDecodeAttention", [split, reduce]), owned);
}
