/**
 * Appends `m` new tokens' keys and values to every KV head of a layer's ragged cache, at each
 * head's current length, and advances the lengths — all on the GPU. Tokens that do not fit in a
 * head's region are dropped and counted in `meta` (see `kvCache.ts`) — or, for a head with a ring
 * start, overwrite the ring's oldest rows (with more new tokens than ring rows in one call, which
 * of them survives in a row is unspecified; decode appends one at a time).
 *
 * With `rope`, the append also applies RoPE (the decode step's `rope` + `kvAppend` in one
 * dispatch): each workgroup rotates its GQA group's queries in place and the keys on their way
 * into the cache (the source `k` stays unrotated), with the same angle code as `rope.ts`, so
 * results are identical to running the two ops.
 *
 * One workgroup of 64 threads per KV head: all threads read the head's length, synchronise, then
 * thread 0 writes the new length — so a single dispatch suffices.
 *
 * Bindings: 0 params, 1 meta u32 (read_write), 2 K cache, 3 V cache (read_write),
 * 4 k f32 `[m][ldk]`, 5 v f32 `[m][ldv]` (read; head h at columns h·D .. h·D+D-1); with `rope`:
 * 6 q f32 `[m][ldq]` (read_write), 7 positions u32, 8 invFreq f32 `[D/2]` (read).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { ROPE_COS_SIN_WGSL } from "./rope.ts";

/** RoPE done by the append (see the module doc). */
export interface AppendRope {
  /** Queries `[m][qRowStride]` f32 (head h at columns h·D …), rotated in place. */
  q: BufferRef;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Absolute positions (u32), one per token, from element `positionsOffset`. */
  positions: BufferRef;
  /** First position element (default 0). */
  positionsOffset?: number;
  /** Inverse frequencies `[D/2]` f32 (`uploadInvFreq`). */
  invFreq: BufferRef;
  /** Elements between q rows (default H·D; a multiple of 4). */
  qRowStride?: number;
}

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
  /** Rotate q and k on the way (head_dim a multiple of 8). */
  rope?: AppendRope;
}

/** WGSL of the rotation: q in place per group, `rotK` for a key vec4 (rope variant only). */
function ropeWgsl(): string {
  return `@group(0) @binding(6) var<storage, read_write> Q: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;
@group(0) @binding(8) var<storage, read> invFreq: array<vec4<f32>>;
${ROPE_COS_SIN_WGSL}
// cos (in [0]) and sin (in [1]) of token t's angles for frequencies 4·f … 4·f + 3.
fn cosSin4(t: u32, f: u32) -> array<vec4<f32>, 2> {
  let position = pos[p.pos0 + t];
  let w = invFreq[f];
  let a = ropeCosSin(position, w.x);
  let b = ropeCosSin(position, w.y);
  let c = ropeCosSin(position, w.z);
  let d = ropeCosSin(position, w.w);
  return array<vec4<f32>, 2>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}
// Rotates the query heads of KV head h's group for every token.
fn rotateQueries(h: u32, li: u32) {
  let g = p.H / p.Hkv;
  let half4 = p.D4 / 2u;
  for (var i = li; i < p.M * g * half4; i += 64u) {
    let t = i / (g * half4);
    let r = i % (g * half4);
    let f = r % half4;
    let at = t * p.ldq4 + (h * g + r / half4) * p.D4 + f;
    let cs = cosSin4(t, f);
    let x1 = Q[at];
    let x2 = Q[at + half4];
    Q[at] = x1 * cs[0] - x2 * cs[1];
    Q[at + half4] = x2 * cs[0] + x1 * cs[1];
  }
}
// Key vec4 d4 of the row starting at src, rotated (rotate_half: pairs d4 and d4 ± D4/2).
fn rotK(t: u32, src: u32, d4: u32) -> vec4<f32> {
  let half4 = p.D4 / 2u;
  let f = d4 % half4;
  let cs = cosSin4(t, f);
  let x = ks[src + d4];
  if (d4 < half4) { return x * cs[0] - ks[src + d4 + half4] * cs[1]; }
  return x * cs[0] + ks[src + f] * cs[1];
}`;
}

function code(dtype: KvStorage, withRope: boolean): string {
  return `struct Params { Hkv: u32, D4: u32, M: u32, ldk4: u32, ldv4: u32, k04: u32, v04: u32,
  H: u32, ldq4: u32, pos0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("KC", 2, dtype, true)}
${kvDecl("VC", 3, dtype, true)}
@group(0) @binding(4) var<storage, read> ks: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> vs: array<vec4<f32>>;
${withRope ? ropeWgsl() : ""}
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
  ${withRope ? "rotateQueries(h, li);" : ""}
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
    let src = p.k04 + t * p.ldk4 + h * p.D4;
    KCw(dst, ${withRope ? "rotK(t, src, d4)" : "ks[src + d4]"});
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
  const r = a.rope;
  const ldq = r ? (r.qRowStride ?? r.numHeads * D) : 0;
  for (const x of [ldk, ldv, k0, v0, ldq]) {
    if (x % 4 !== 0) throw new RangeError("kvAppend: strides and offsets must be multiples of 4");
  }
  if (r && (D % 8 !== 0 || r.numHeads % c.numKvHeads !== 0)) {
    throw new RangeError(
      `kvAppend: RoPE needs head_dim % 8 = 0 (${D}) and whole GQA groups (${r.numHeads}/${c.numKvHeads})`,
    );
  }
  const buffers: BufferRef[] = [c.meta, c.k, c.v, a.k, a.v];
  if (r) buffers.push(r.q, r.positions, r.invFreq);
  return dispatchOp(ctx, {
    label: r ? "kvAppend+rope" : "kvAppend",
    pipeline: ctx.pipeline(`kvAppend:${c.dtype}:${!!r}`, () => code(kvStorage(ctx, c.dtype), !!r)),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", D / 4],
      ["u32", a.m],
      ["u32", ldk / 4],
      ["u32", ldv / 4],
      ["u32", k0 / 4],
      ["u32", v0 / 4],
      ["u32", r?.numHeads ?? 0],
      ["u32", ldq / 4],
      ["u32", r?.positionsOffset ?? 0],
    ]),
    buffers,
    workgroups: [c.numKvHeads],
  });
}
