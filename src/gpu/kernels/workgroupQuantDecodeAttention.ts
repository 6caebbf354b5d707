/**
 * The split pass of decode attention over a quantised layer, for GPUs: one workgroup of 64
 * threads per (split of up to 512 entries, KV head, chunk of `G` query heads of its group), where
 * the thread-per-split pass of `quantDecodeAttention.ts` (written for CPU adapters) gives a GPU
 * one lane per split and dequantises every entry serially. The shape is that of
 * `workgroupDecodeAttention.ts`, whose steps 2–3 it shares:
 *
 * 1. thread t dequantises the keys of entries `t, t + 64, …` of the split — packed slots as
 *    `min + code·scale` with the (min, scale) of their key block, residual ring entries as stored —
 *    and scores them against the `G` queries held in workgroup memory;
 * 2. per-head maximum and sum of `exp(s − max)` by tree reductions;
 * 3. each thread owns one (head, 4 dims) pair and a slice of the entries, dequantising that vec4
 *    of the value (per-token (min, scale) of its channel group) or reading it from the ring.
 *
 * Entry numbering, meta fields and partials are those of `quantDecodeAttention.ts` (keys j < Qk
 * packed at key slot `kbase + j`, values j < Qv at value slot `vbase + j`, the rest in the ring at
 * row `rbase + j % rcap`), so the shared `decodeReduce` pass merges the splits.
 *
 * Bindings: 0 params, 1 q f32, 2 meta, 3 residual K, 4 residual V, 5 codes, 6 pairs (read),
 * 7 scratch (read_write).
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp } from "../op.ts";
import { quantHeadMetaWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import {
  MAX_SPLIT,
  WG,
  type WorkgroupDecodeSplitArgs,
  workgroupLoadQueriesWgsl,
  workgroupSoftmaxValuesWgsl,
  workgroupSplitDeclsWgsl,
} from "./workgroupDecodeAttention.ts";
import { each } from "./wgslUnroll.ts";
import { codesVec4Wgsl, quantDecodeParams, quantDecodePreambleWgsl } from "./quantDecodeCommon.ts";

/** Arguments of {@link workgroupQuantDecodeSplit}: those of the plain pass, over a quantised layer. */
export type WorkgroupQuantDecodeSplitArgs =
  & Omit<WorkgroupDecodeSplitArgs, "cache" | "qOffset">
  & {
    /** The layer's quantised cache. */
    cache: QuantKvLayer;
  };

function code(c: QuantKvLayer, G: number, storage: KvStorage): string {
  const D = c.headDim, D4 = D / 4;
  // Key vec4 d of packed slot `sl`: min + codes·scale, the (min, scale) pairs of the slot's key
  // block at `pa + 2c` for channel c.
  const packedKey = (d: number) => {
    const pair = (o: number) => each(4, (i) => `kp(pa + ${8 * d + 2 * i + o}u)`, ", ");
    const codes = codesVec4Wgsl((i) => `kq(sl * KW + ${i}u)`, d, c.quant.kbits);
    return `      k${d} = vec4<f32>(${pair(0)}) + ${codes} * vec4<f32>(${pair(1)});`;
  };
  return `${quantDecodePreambleWgsl(c, storage)}
${workgroupSplitDeclsWgsl(G, D4)}

/** Value vec4 \`d\` (channels 4d … 4d+3) of packed slot \`sl\`: per-token pairs per channel group. */
fn packedValue(sl: u32, d: u32) -> vec4<f32> {
  let ch = 4u * d;
  let sh = (ch % VPER_WORD) * VBITS;
  let word = vq(sl * VW + ch / VPER_WORD);
  let codes = (vec4<u32>(word) >> (vec4<u32>(sh) + vec4<u32>(0u, VBITS, 2u * VBITS, 3u * VBITS))) &
    vec4<u32>(VMASK);
  let va = 2u * (sl * NG + ch / G);
  let gr = (vec4<u32>(ch) + vec4<u32>(0u, 1u, 2u, 3u)) / G - vec4<u32>(ch / G);
  let mn = vec4<f32>(vp(va + 2u * gr.x), vp(va + 2u * gr.y), vp(va + 2u * gr.z), vp(va + 2u * gr.w));
  let scl = vec4<f32>(vp(va + 2u * gr.x + 1u), vp(va + 2u * gr.y + 1u), vp(va + 2u * gr.z + 1u),
    vp(va + 2u * gr.w + 1u));
  return mn + vec4<f32>(codes) * scl;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = wid.x;
  let kvh = wid.y / p.chunks;
  let h0 = kvh * p.group + (wid.y % p.chunks) * ${G}u;
${quantHeadMetaWgsl()}
  let j0 = s * p.splitSize;
  let n = select(0u, min(p.splitSize, len - j0), j0 < len);
${workgroupLoadQueriesWgsl(G, D4)}
  // 1. dequantised (or residual) keys, scores, and each thread's maximum per head
${each(G, (g) => `  var m${g} = NEG;`)}
${each(D4, (d) => `  var k${d}: vec4<f32>;`)}
  for (var jj = t; jj < n; jj += ${WG}u) {
    let j = j0 + jj;
    if (j < nqk) {
      let sl = kbase + j;
      let pa = 2u * (sl / G) * D;
${each(D4, packedKey)}
    } else {
      let row = (rbase + j % rcap) * D4;
${each(D4, (d) => `      k${d} = RK4(row + ${d}u);`)}
    }
${
    each(G, (g) =>
      `    let s${g} = ${each(D4, (d) => `dot(qs[${g * D4 + d}u], k${d})`, " + ")};
    sc[${g}u * S + jj] = s${g};
    m${g} = max(m${g}, s${g});`)
  }
  }
${
    workgroupSoftmaxValuesWgsl(
      G,
      D4,
      `entryValue(j0 + jj, d, nqv, vbase, rbase, rcap)`,
    )
  }
}

/** Value vec4 \`d\` of entry \`j\`: packed, or from the residual ring. */
fn entryValue(j: u32, d: u32, nqv: u32, vbase: u32, rbase: u32, rcap: u32) -> vec4<f32> {
  if (j < nqv) { return packedValue(vbase + j, d); }
  return RV4((rbase + j % rcap) * D4 + d);
}
`;
}

/**
 * Prepares the workgroup-per-split pass over a quantised layer (one dispatch). The caller owns
 * the scratch and adds the reduce pass; `quantDecodeAttention` does both and picks this pass where
 * `ctx.kernels.decode` is `workgroup` (GPUs).
 */
export function workgroupQuantDecodeSplit(
  ctx: GpuContext,
  a: WorkgroupQuantDecodeSplitArgs,
): GpuOp {
  const c = a.cache;
  const G = a.headsPerGroup, group = a.numHeads / c.numKvHeads;
  if (a.splitSize < 1 || a.splitSize > MAX_SPLIT) {
    throw new RangeError(
      `workgroupQuantDecodeSplit: split of ${a.splitSize} entries (1..${MAX_SPLIT})`,
    );
  }
  const { kbits, vbits, group: QG } = c.quant;
  const key = `quantDecodeAttnWg:${c.dtype}:${c.headDim}:${kbits}:${vbits}:${QG}:${G}`;
  return dispatchOp(ctx, {
    label: "quantDecodeAttention.split",
    pipeline: ctx.pipeline(key, () => code(c, G, kvStorage(ctx, c.dtype))),
    params: quantDecodeParams(c, { ...a, headsPerGroup: G }),
    buffers: [a.q, c.meta, c.rk, c.rv, c.codes, c.params, a.scratch],
    workgroups: [a.splits, c.numKvHeads * (group / G)],
  });
}
