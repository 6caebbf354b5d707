/**
 * Appends `m` new tokens to every KV head of a quantised layer (decode) and packs residual blocks
 * as they fill — all on the GPU, so the decode loop needs no CPU round trip. Per head and per new
 * token, in order: the token goes to the residual ring's next row (or is dropped and counted when
 * the ring is full and cannot be emptied); then, if the ring now holds rcap = residual + G entries
 * and the packed region has room for G more slots, its oldest G entries are packed into the next
 * slots (`packBlock`) and leave the ring. So after every append T − Q lies in
 * [residual, residual + G) as in the reference layout: every G appended tokens, one block is packed.
 *
 * One workgroup of 64 threads per KV head; the head's meta is loaded once, updated in registers
 * and written back at the end.
 *
 * Bindings: 0 params, 1 meta (read_write), 2 residual K, 3 residual V (read_write),
 * 4 k f32 `[m][ldk]`, 5 v f32 `[m][ldv]` (read; head h at columns h·D …), 6 codes, 7 pairs
 * (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import { packBlockWgsl } from "./quantPackWgsl.ts";
import { checkLoopBudget } from "../loopBudget.ts";

/** Arguments of {@link quantAppend}. */
export interface QuantAppendArgs {
  /** The layer's quantised cache. */
  cache: QuantKvLayer;
  /** New keys (after RoPE): element (t, h, d) at `t·Hkv·D + h·D + d` f32. */
  k: BufferRef;
  /** New values, laid out like `k`. */
  v: BufferRef;
  /** Number of new tokens. */
  m: number;
}

function code(c: QuantKvLayer, storage: KvStorage): string {
  return `struct Params { Hkv: u32, M: u32, vq0: u32, vp0: u32, one: f32 };
@group(0) @binding(0) var<uniform> p: Params;
${quantConstsWgsl(c.headDim, c.quant)}
@group(0) @binding(1) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("RK", 2, storage, true)}
${kvDecl("RV", 3, storage, true)}
@group(0) @binding(4) var<storage, read> ks: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> vs: array<vec4<f32>>;
${quantBuffersWgsl(6, true)}
${packBlockWgsl("RK4", "RV4")}
var<workgroup> wm: array<u32, 8>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  if (li < 8u) { wm[li] = kvmeta[li * p.Hkv + h]; }
  let m = workgroupUniformLoad(&wm);
  let rbase = m[0];
  var T = m[1];
  let rcap = m[2];
  var dropped = m[3];
  var rstart = m[4];
  var Q = m[5];
  let qcap = m[6];
  let qbase = m[7];
  for (var t = 0u; t < p.M; t++) {
    let rlen = T - Q;
    if (rlen < rcap) {
      let row = rbase + (rstart + rlen) % rcap;
      for (var d = li; d < D4; d += 64u) {
        RKw(row * D4 + d, ks[(t * p.Hkv + h) * D4 + d]);
        RVw(row * D4 + d, vs[(t * p.Hkv + h) * D4 + d]);
      }
      T += 1u;
    } else {
      dropped += 1u;
    }
    storageBarrier();
    if (T - Q == rcap && Q + G <= qcap) {
      packBlock(li, rbase, rstart, rcap, qbase + Q);
      Q += G;
      rstart = (rstart + G) % rcap;
    }
  }
  if (li == 0u) {
    kvmeta[p.Hkv + h] = T;
    kvmeta[3u * p.Hkv + h] = dropped;
    kvmeta[4u * p.Hkv + h] = rstart;
    kvmeta[5u * p.Hkv + h] = Q;
  }
}
`;
}

/** Prepares the append of `m` tokens to every head of a quantised layer (one dispatch). */
export function quantAppend(ctx: GpuContext, a: QuantAppendArgs): GpuOp {
  const c = a.cache;
  const key = `quantAppend:${c.dtype}:${c.headDim}:${c.quant.bits}:${c.quant.group}`;
  // One workgroup appends the chunk token by token and packs every filled group of G tokens:
  // its loops must fit llvmpipe's budget (`../loopBudget.ts`).
  const D = c.headDim, G = c.quant.group, perWord = Math.floor(32 / c.quant.bits);
  const pack = Math.ceil(D / 64) * (G + 1) + Math.ceil(G * Math.ceil(D / G) / 64) * (G + 1) +
    Math.ceil(G * Math.ceil(D / perWord) / 64) * (perWord + 1);
  checkLoopBudget(
    ctx,
    a.m * (2 + Math.ceil(D / 256)) + Math.ceil(a.m / G + 1) * pack,
    `a quantised prefill chunk of ${a.m} tokens (quantAppend)`,
  );
  return dispatchOp(ctx, {
    label: "quantAppend",
    pipeline: ctx.pipeline(key, () => code(c, kvStorage(ctx, c.dtype))),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", a.m],
      ["u32", c.valueCodes],
      ["u32", c.valueParams],
      ["f32", 1],
    ]),
    buffers: [c.meta, c.rk, c.rv, a.k, a.v, c.codes, c.params],
    workgroups: [c.numKvHeads],
  });
}
