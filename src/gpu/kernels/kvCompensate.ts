/**
 * RazorAttention's compensation token on the GPU: for every KV head, the mean key and mean value
 * of the entries a select press dropped (rows of the SOURCE cache, before compaction) are written
 * to one row of the DESTINATION cache — run right after `kvCompact` into the same destination.
 * Keys are post-RoPE, so the mean needs no position. Sums are f32, in index order.
 *
 * List buffer (u32): `[0, Hkv)` start of each head's dropped-index list, `[Hkv, 2Hkv)` counts,
 * `[2Hkv, 3Hkv)` destination row (within the head's region; {@link encodeCompensation} writes
 * 0xffffffff for heads without a token), then the indices.
 *
 * One thread per (vec4 of the head dimension, KV head). Bindings: 0 params, 1 list, 2 source
 * meta, 3 source K, 4 source V (read), 5 destination meta (read), 6 destination K,
 * 7 destination V (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { each } from "./wgslUnroll.ts";

/** Dropped rows summed per loop iteration. */
const UNROLL = 16;

/** One head's compensation: the dropped indices (into the source head) and the target row. */
export interface CompensationRows {
  /** Source indices averaged (empty: no token). */
  dropped: number[];
  /** Destination row (within the head's region) receiving the means. */
  row: number;
}

/** Builds the list buffer contents (see the module doc); `undefined` heads get no token. */
export function encodeCompensation(perHead: (CompensationRows | undefined)[]): Uint32Array {
  const H = perHead.length;
  const total = perHead.reduce((s, c) => s + (c?.dropped.length ?? 0), 0);
  const out = new Uint32Array(3 * H + total);
  let at = 3 * H;
  perHead.forEach((c, h) => {
    out[h] = at;
    out[H + h] = c?.dropped.length ?? 0;
    out[2 * H + h] = c && c.dropped.length ? c.row : 0xffffffff;
    if (c) out.set(c.dropped, at);
    at += c?.dropped.length ?? 0;
  });
  return out;
}

/** Arguments of {@link kvCompensate}. */
export interface KvCompensateArgs {
  /** Source layer (the full cache). */
  src: KvCacheLayer;
  /** Destination layer (the compacted cache). */
  dst: KvCacheLayer;
  /** List buffer from {@link encodeCompensation}. */
  list: BufferRef;
}

function code(src: KvStorage, dst: KvStorage): string {
  return `struct Params { Hkv: u32, D4: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>;
@group(0) @binding(2) var<storage, read> smeta: array<u32>;
${kvDecl("SK", 3, src, false)}
${kvDecl("SV", 4, src, false)}
@group(0) @binding(5) var<storage, read> dmeta: array<u32>;
${kvDecl("DK", 6, dst, true)}
${kvDecl("DV", 7, dst, true)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d4 = gid.x;
  let h = gid.y;
  let count = list[p.Hkv + h];
  let row = list[2u * p.Hkv + h];
  if (d4 >= p.D4 || count == 0u || row == 0xffffffffu) { return; }
  var ks = vec4<f32>(0.0);
  var vs = vec4<f32>(0.0);
  // ${UNROLL} rows per iteration: llvmpipe ends a thread's loops after 65535 iterations.
  let first = list[h];
  var t = 0u;
  for (; t + ${UNROLL}u <= count; t += ${UNROLL}u) {
${
    each(UNROLL, (u) =>
      `    { let s = (smeta[h] + list[first + t + ${u}u]) * p.D4 + d4; ks += SK4(s); vs += SV4(s); }`)
  }
  }
  for (; t < count; t++) {
    let s = (smeta[h] + list[first + t]) * p.D4 + d4;
    ks += SK4(s);
    vs += SV4(s);
  }
  let inv = 1.0 / f32(count);
  let d = (dmeta[h] + row) * p.D4 + d4;
  DKw(d, ks * inv);
  DVw(d, vs * inv);
}
`;
}

/** Prepares the compensation rows of `dst` from `src` (one dispatch). */
export function kvCompensate(ctx: GpuContext, a: KvCompensateArgs): GpuOp {
  const { src, dst } = a;
  if (src.numKvHeads !== dst.numKvHeads || src.headDim !== dst.headDim) {
    throw new RangeError("kvCompensate: source and destination differ in heads or head_dim");
  }
  const D4 = src.headDim / 4;
  const dropped = Math.max(0, ...src.capacities);
  checkLoopBudget(ctx, dropped / UNROLL + UNROLL, "RazorAttention's compensation (kvCompensate)");
  return dispatchOp(ctx, {
    label: "kvCompensate",
    pipeline: ctx.pipeline(
      `kvCompensate:${src.dtype}:${dst.dtype}`,
      () => code(kvStorage(ctx, src.dtype), kvStorage(ctx, dst.dtype)),
    ),
    params: packParams([["u32", src.numKvHeads], ["u32", D4]]),
    buffers: [a.list, src.meta, src.k, src.v, dst.meta, dst.k, dst.v],
    workgroups: [Math.ceil(D4 / 64), src.numKvHeads],
  });
}
