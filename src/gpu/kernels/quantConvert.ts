/**
 * Prefill-time quantisation: turns a full-precision layer cache (after any selection compaction)
 * into a KIVI-quantised layer, settled as KIVI's prefill leaves it (`models/llama_kivi.py`): for
 * every KV head with T entries (at most its capacity; the rest counted as dropped) and residual R,
 * keys 0 … Qk−1 (Qk = T − (T mod R)) are packed block by block, values 0 … Qv−1 (Qv = max(0, T − R))
 * token by token, and entries Qv … T−1 are copied into the head's ring at rows `rbase + j % rcap`.
 * A head that is not quantised (R = 0) is copied whole. T is read from the source's meta on the
 * GPU.
 *
 * Workgroup (b, h) of 64 threads packs key block b and the values of tokens bG … bG+G−1 of head h
 * (those below Qk and Qv); the extra workgroup b = `maxBlocks` copies the ring and writes the
 * destination's lengths.
 *
 * Bindings: 0 params, 1 source meta, 2 source K, 3 source V (read), 4 destination meta,
 * 5 ring K, 6 ring V, 7 codes, 8 pairs (read_write).
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import { packWgsl } from "./quantPackWgsl.ts";

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
${packWgsl("SK4", "SV4")}
var<workgroup> wm: array<u32, 9>;
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
    wm[5] = dmeta[4u * p.Hkv + h];
    wm[6] = dmeta[7u * p.Hkv + h];
    wm[7] = dmeta[8u * p.Hkv + h];
    wm[8] = dmeta[9u * p.Hkv + h];
  }
  let m = workgroupUniformLoad(&wm);
  let sbase = m[0];
  let T = min(m[1], m[8]);
  let rcap = m[4];
  let R = m[5];
  var nqk = 0u;
  var nqv = 0u;
  if (R > 0u) {
    nqk = T - T % R;
    nqv = select(0u, T - R, T > R);
  }
  if (b * G < nqk) { packKeys(li, sbase, b * G, 0xffffffffu, m[6] + b * G); }
  if (b * G < nqv) { packValues(li, sbase, b * G, 0xffffffffu, m[7] + b * G, min(G, nqv - b * G)); }
  if (b == p.last) {
    let n = T - nqv;
    for (var x = li; x < n * D4; x += 64u) {
      let j = nqv + x / D4;
      let at = (m[3] + j % rcap) * D4 + x % D4;
      let src4 = (sbase + j) * D4 + x % D4;
      RKw(at, SK4(src4));
      RVw(at, SV4(src4));
    }
    if (li == 0u) {
      dmeta[p.Hkv + h] = T;
      dmeta[3u * p.Hkv + h] = m[2] + m[1] - T;
      dmeta[5u * p.Hkv + h] = nqk;
      dmeta[6u * p.Hkv + h] = nqv;
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
  const { kbits, vbits, group: G } = dst.quant;
  const maxBlocks = Math.max(0, ...dst.keyCapacities.map((c) => c / G));
  const key = `quantConvert:${src.dtype}:${dst.dtype}:${dst.headDim}:${kbits}:${vbits}:${G}`;
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
