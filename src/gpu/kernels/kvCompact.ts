/**
 * Compaction: copies, for every KV head, the kept rows `idx[h][0..count)` (indices into the
 * head's current entries, ascending for order-preserving policies) of a source cache into rows
 * `0..count` of a destination cache and sets the destination lengths. This is how presses shrink
 * the cache: allocate a destination sized to what is kept (plus the decode budget), compact,
 * release the source — the saved memory is really returned. Source and destination must be
 * different layers (they may use different capacities and dtypes).
 *
 * Selection buffer (u32): `[0, Hkv)` start of each head's index list, `[Hkv, 2Hkv)` counts, then
 * the indices (see {@link uploadKvSelection}). Indices ≥ the source length are clamped; counts
 * beyond the destination capacity are truncated.
 *
 * Bindings: 0 params, 1 selection u32, 2 source meta, 3 source K, 4 source V (read),
 * 5 destination meta (read_write), 6 destination K, 7 destination V (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** Arguments of {@link kvCompact}. */
export interface KvCompactArgs {
  /** Source layer. */
  src: KvCacheLayer;
  /** Destination layer (same heads and head_dim). */
  dst: KvCacheLayer;
  /** Selection buffer (see module doc). */
  selection: BufferRef;
  /** Upper bound of any head's count (sizes the dispatch). */
  maxCount: number;
}

/** Builds the selection buffer contents from per-head index lists. */
export function encodeKvSelection(perHead: number[][]): Uint32Array {
  const H = perHead.length;
  const total = perHead.reduce((s, l) => s + l.length, 0);
  const out = new Uint32Array(2 * H + total);
  let at = 2 * H;
  perHead.forEach((list, h) => {
    out[h] = at;
    out[H + h] = list.length;
    out.set(list, at);
    at += list.length;
  });
  return out;
}

/** Uploads per-head index lists as a selection buffer. */
export function uploadKvSelection(ctx: GpuContext, perHead: number[][]): GPUBuffer {
  return ctx.upload(encodeKvSelection(perHead));
}

function code(src: KvStorage, dst: KvStorage): string {
  return `struct Params { Hkv: u32, D4: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sel: array<u32>;
@group(0) @binding(2) var<storage, read> smeta: array<u32>;
${kvDecl("SK", 3, src, false)}
${kvDecl("SV", 4, src, false)}
@group(0) @binding(5) var<storage, read_write> dmeta: array<u32>;
${kvDecl("DK", 6, dst, true)}
${kvDecl("DV", 7, dst, true)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.y;
  let count = min(sel[p.Hkv + h], dmeta[2u * p.Hkv + h]);
  let i = gid.x / p.D4;
  let d4 = gid.x % p.D4;
  if (gid.x == 0u) { dmeta[p.Hkv + h] = count; }
  if (i >= count) { return; }
  let slen = smeta[p.Hkv + h];
  let j = min(sel[sel[h] + i], max(slen, 1u) - 1u);
  let s = (smeta[h] + j) * p.D4 + d4;
  let d = (dmeta[h] + i) * p.D4 + d4;
  DKw(d, SK4(s));
  DVw(d, SV4(s));
}
`;
}

/** Prepares the compaction of `src` into `dst`. */
export function kvCompact(ctx: GpuContext, a: KvCompactArgs): GpuOp {
  const { src, dst } = a;
  if (src.numKvHeads !== dst.numKvHeads || src.headDim !== dst.headDim) {
    throw new RangeError("kvCompact: source and destination differ in heads or head_dim");
  }
  if (src.k === dst.k) throw new RangeError("kvCompact: source and destination must differ");
  const D4 = src.headDim / 4;
  return dispatchOp(ctx, {
    label: "kvCompact",
    pipeline: ctx.pipeline(
      `kvCompact:${src.dtype}:${dst.dtype}`,
      () => code(kvStorage(ctx, src.dtype), kvStorage(ctx, dst.dtype)),
    ),
    params: packParams([["u32", src.numKvHeads], ["u32", D4]]),
    buffers: [a.selection, src.meta, src.k, src.v, dst.meta, dst.k, dst.v],
    workgroups: [Math.max(1, Math.ceil((a.maxCount * D4) / 64)), src.numKvHeads],
  });
}
