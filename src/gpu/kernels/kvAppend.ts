/**
 * Appends `m` new tokens' keys and values to every KV head of a layer's ragged cache, at each
 * head's current length, and advances the lengths — all on the GPU. Tokens that do not fit in a
 * head's region are dropped and counted in `meta` (see `kvCache.ts`) — or, for a head with a ring
 * start, overwrite the ring's oldest rows (with more new tokens than ring rows in one call, which
 * of them survives in a row is unspecified; decode appends one at a time).
 *
 * One workgroup of 64 threads per KV head: all threads read the head's length, synchronise, then
 * thread 0 writes the new length — so a single dispatch suffices.
 *
 * Bindings: 0 params, 1 meta u32 (read_write), 2 K cache, 3 V cache (read_write),
 * 4 k f32 `[m][ldk]`, 5 v f32 `[m][ldv]` (read; head h at columns h·D .. h·D+D-1).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvDType } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** Arguments of {@link kvAppend}. */
export interface KvAppendArgs {
  /** The layer's cache. */
  cache: KvCacheLayer;
  /** New keys (after RoPE): element (t, h, d) at `kOffset + t·kRowStride + h·D + d`. */
  k: BufferRef;
  /** New values, laid out like `k`. */
  v: BufferRef;
  /** Number of new tokens. */
  m: number;
  /** Elements between k rows (default Hkv·D; a multiple of 4). */
  kRowStride?: number;
  /** Elements between v rows (default Hkv·D; a multiple of 4). */
  vRowStride?: number;
  /** First k element (default 0; a multiple of 4). */
  kOffset?: number;
  /** First v element (default 0; a multiple of 4). */
  vOffset?: number;
}

function code(dtype: KvDType): string {
  return `struct Params { Hkv: u32, D4: u32, M: u32, ldk4: u32, ldv4: u32, k04: u32, v04: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("KC", 2, dtype, true)}
${kvDecl("VC", 3, dtype, true)}
@group(0) @binding(4) var<storage, read> ks: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> vs: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let base = kvmeta[h];
  let len = kvmeta[p.Hkv + h];
  let cap = kvmeta[2u * p.Hkv + h];
  let dropped = kvmeta[3u * p.Hkv + h];
  let ring = kvmeta[4u * p.Hkv + h];
  storageBarrier();
  workgroupBarrier();
  for (var i = li; i < p.M * p.D4; i += 64u) {
    let t = i / p.D4;
    let d4 = i % p.D4;
    var row = len + t;
    if (row >= cap) {
      // Full: a ring overwrites its oldest row; otherwise the token is dropped.
      if (ring >= cap) { continue; }
      row = ring + (dropped + row - cap) % (cap - ring);
    }
    let dst = (base + row) * p.D4 + d4;
    KCw(dst, ks[p.k04 + t * p.ldk4 + h * p.D4 + d4]);
    VCw(dst, vs[p.v04 + t * p.ldv4 + h * p.D4 + d4]);
  }
  if (li == 0u) {
    let n = min(p.M, cap - min(len, cap));
    kvmeta[p.Hkv + h] = len + n;
    kvmeta[3u * p.Hkv + h] = dropped + p.M - n;
  }
}
`;
}

/** Prepares the append of `m` tokens to every head of `cache`. */
export function kvAppend(ctx: GpuContext, a: KvAppendArgs): GpuOp {
  const c = a.cache;
  const D = c.headDim;
  const ldk = a.kRowStride ?? c.numKvHeads * D;
  const ldv = a.vRowStride ?? c.numKvHeads * D;
  const k0 = a.kOffset ?? 0, v0 = a.vOffset ?? 0;
  for (const x of [ldk, ldv, k0, v0]) {
    if (x % 4 !== 0) throw new RangeError("kvAppend: strides and offsets must be multiples of 4");
  }
  return dispatchOp(ctx, {
    label: "kvAppend",
    pipeline: ctx.pipeline(`kvAppend:${c.dtype}`, () => code(c.dtype)),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", D / 4],
      ["u32", a.m],
      ["u32", ldk / 4],
      ["u32", ldv / 4],
      ["u32", k0 / 4],
      ["u32", v0 / 4],
    ]),
    buffers: [c.meta, c.k, c.v, a.k, a.v],
    workgroups: [c.numKvHeads],
  });
}
