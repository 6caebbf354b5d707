/**
 * Prefill-time quantisation: turns a full-precision layer cache (after any selection compaction)
 * into a KIVI-quantised layer. For every KV head with T entries, the first
 * Q = ⌊(T − residual)/G⌋·G entries (0 when T ≤ residual, and 0 for heads that are not quantised)
 * are packed block by block, and entries Q … T−1 are copied into the head's residual ring
 * (starting at ring row 0). T is read from the source's meta on the GPU.
 *
 * Workgroup (b, h) of 64 threads packs block b of head h; the extra workgroup b = `maxBlocks`
 * copies the residual and writes the destination's lengths.
 *
 * Bindings: 0 params, 1 source meta, 2 source K, 3 source V (read), 4 destination meta,
 * 5 residual K, 6 residual V, 7 codes, 8 pairs (read_write).
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import { packBlockWgsl } from "./quantPackWgsl.ts";

/** Arguments of {@link quantConvert}. */
export interface QuantConvertArgs {
  /** Full-precision source (same heads and head_dim). */
  src: KvCacheLayer;
  /** Empty quantised destination, sized for what the source holds. */
  dst: QuantKvLayer;
}

function code(dst: QuantKvLayer, ss: KvStorage, ds: KvStorage): string {
  return `struct Params { Hkv: u32, last: u32, vq0: u32, vp0: u32, one: f32 };
@group(0) @binding(0) var<uniform> p: Params;
${quantConstsWgsl(dst.headDim, dst.quant)}
@group(0) @binding(1) var<storage, read> smeta: array<u32>;
${kvDecl("SK", 2, ss, false)}
${kvDecl("SV", 3, ss, false)}
@group(0) @binding(4) var<storage, read_write> dmeta: array<u32>;
${kvDecl("RK", 5, ds, true)}
${kvDecl("RV", 6, ds, true)}
${quantBuffersWgsl(7, true)}
${packBlockWgsl("SK4", "SV4")}
var<workgroup> wm: array<u32, 7>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let b = wid.x;
  let h = wid.y;
  if (li == 0u) {
    wm[0] = smeta[h];
    wm[1] = smeta[p.Hkv + h];
    wm[2] = smeta[3u * p.Hkv + h];
    wm[3] = dmeta[h];
    wm[4] = dmeta[2u * p.Hkv + h];
    wm[5] = dmeta[6u * p.Hkv + h];
    wm[6] = dmeta[7u * p.Hkv + h];
  }
  let m = workgroupUniformLoad(&wm);
  let sbase = m[0];
  let T = m[1];
  let rcap = m[4];
  let qcap = m[5];
  var Q = 0u;
  // A quantised head (qcap > 0) has rcap = residual + G.
  if (qcap > 0u && T + G > rcap) { Q = min((T + G - rcap) / G * G, qcap); }
  if (b < Q / G) { packBlock(li, sbase, b * G, 0xffffffffu, m[6] + b * G); }
  if (b == p.last) {
    let n = min(T - Q, rcap);
    for (var x = li; x < n * D4; x += 64u) {
      let at = (m[3] + x / D4) * D4 + x % D4;
      let src4 = (sbase + Q + x / D4) * D4 + x % D4;
      RKw(at, SK4(src4));
      RVw(at, SV4(src4));
    }
    if (li == 0u) {
      dmeta[p.Hkv + h] = Q + n;
      dmeta[3u * p.Hkv + h] = m[2] + T - Q - n;
      dmeta[4u * p.Hkv + h] = 0u;
      dmeta[5u * p.Hkv + h] = Q;
    }
  }
}
`;
}

/** Prepares the conversion of `src` into `dst` (one dispatch). */
export function quantConvert(ctx: GpuContext, a: QuantConvertArgs): GpuOp {
  const { src, dst } = a;
  if (src.numKvHeads !== dst.numKvHeads || src.headDim !== dst.headDim) {
    throw new RangeError("quantConvert: source and destination differ in heads or head_dim");
  }
  const G = dst.quant.group;
  const maxBlocks = Math.max(0, ...dst.quantCapacities.map((c) => c / G));
  const key = `quantConvert:${src.dtype}:${dst.dtype}:${dst.headDim}:${dst.quant.bits}:${G}`;
  return dispatchOp(ctx, {
    label: "quantConvert",
    pipeline: ctx.pipeline(
      key,
      () => code(dst, kvStorage(ctx, src.dtype), kvStorage(ctx, dst.dtype)),
    ),
    params: packParams([
      ["u32", dst.numKvHeads],
      ["u32", maxBlocks],
      ["u32", dst.valueCodes],
      ["u32", dst.valueParams],
      ["f32", 1],
    ]),
    buffers: [src.meta, src.k, src.v, dst.meta, dst.rk, dst.rv, dst.codes, dst.params],
    workgroups: [maxBlocks + 1, dst.numKvHeads],
  });
}
