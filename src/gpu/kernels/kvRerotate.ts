/**
 * StreamingLLM's re-indexed positions (`window(rerotate=true)`; mit-han-lab/streaming-llm
 * `pos_shift/modify_llama.py`): the official code caches keys before RoPE and, at every step,
 * rotates the cached keys by their rank in the cache (0 … L−1) and the query by L−1. Attention
 * only sees q·k rotated by the distance between them, so with our keys cached after RoPE at their
 * original positions the same scores follow from rotating only the sink entries: the recent
 * window is contiguous and ends at the query, so its distances are unchanged, while a sink entry
 * i must sit at distance L−1−i instead of P−p_i. Run after the step's append: for each head with
 * S sink rows (rows 0 … S−1 of its region, copied at compaction with their prefill keys), sink key
 * i is rewritten as its prefill key rotated forward by shift = P − (L − 1) positions, P the new
 * token's absolute position and L the head's entries after the append (shift = 0 until the window
 * first evicts).
 *
 * One workgroup of 64 threads per KV head; threads own (sink row, frequency vec4) pairs and
 * rotate dimensions f and f + D/2 together (rotate_half; head_dim a multiple of 8).
 * Bindings: 0 params, 1 meta (read), 2 K (read_write), 3 sink copies (read), 4 per-head sink
 * counts u32, 5 positions u32, 6 inverse frequencies f32 `[D/2]` (read).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { ROPE_COS_SIN_WGSL } from "./rope.ts";

/** A layer's re-rotation state: prefill copies of its sink keys and their count per head. */
export interface RerotateState {
  /** Sink key copies, cache dtype, head h's row i at `h·maxSinks + i`. */
  sinks: GPUBuffer;
  /** Per KV head, its sink rows (u32; 0: the head keeps original positions). */
  counts: GPUBuffer;
  /** Rows reserved per head in {@link sinks}. */
  maxSinks: number;
}

/** Arguments of {@link kvRerotate}. */
export interface KvRerotateArgs {
  /** The layer's cache. */
  cache: KvCacheLayer;
  /** Its re-rotation state. */
  state: RerotateState;
  /** Absolute positions (u32); the step's token at element `positionsOffset`. */
  positions: BufferRef;
  /** Element of the step's position (default 0). */
  positionsOffset?: number;
  /** Inverse frequencies `[D/2]` f32 (`uploadInvFreq`). */
  invFreq: BufferRef;
}

function code(storage: KvStorage): string {
  return `struct Params { Hkv: u32, D4: u32, S: u32, pos0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 2, storage, true)}
${kvDecl("SK", 3, storage, false)}
@group(0) @binding(4) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<storage, read> pos: array<u32>;
@group(0) @binding(6) var<storage, read> invFreq: array<vec4<f32>>;
${ROPE_COS_SIN_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let n = counts[h];
  let base = kvmeta[h];
  let len = kvmeta[p.Hkv + h];
  let shift = pos[p.pos0] + 1u - min(len, pos[p.pos0] + 1u);
  let half4 = p.D4 / 2u;
  for (var x = li; x < n * half4; x += 64u) {
    let i = x / half4;
    let f = x % half4;
    let w = invFreq[f];
    let a = ropeCosSin(shift, w.x);
    let b = ropeCosSin(shift, w.y);
    let c = ropeCosSin(shift, w.z);
    let d = ropeCosSin(shift, w.w);
    let cs = vec4<f32>(a.x, b.x, c.x, d.x);
    let sn = vec4<f32>(a.y, b.y, c.y, d.y);
    let src = (h * p.S + i) * p.D4;
    let x1 = SK4(src + f);
    let x2 = SK4(src + f + half4);
    let dst = (base + i) * p.D4;
    KCw(dst + f, x1 * cs - x2 * sn);
    KCw(dst + f + half4, x2 * cs + x1 * sn);
  }
}
`;
}

/** Prepares the re-rotation of every re-indexed head's sink keys (one dispatch). */
export function kvRerotate(ctx: GpuContext, a: KvRerotateArgs): GpuOp {
  const c = a.cache;
  if (c.headDim % 8 !== 0) {
    throw new RangeError(`kvRerotate: head_dim ${c.headDim} must be a multiple of 8`);
  }
  return dispatchOp(ctx, {
    label: "kvRerotate",
    pipeline: ctx.pipeline(`kvRerotate:${c.dtype}`, () => code(kvStorage(ctx, c.dtype))),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", c.headDim / 4],
      ["u32", a.state.maxSinks],
      ["u32", a.positionsOffset ?? 0],
    ]),
    buffers: [c.meta, c.k, a.state.sinks, a.state.counts, a.positions, a.invFreq],
    workgroups: [c.numKvHeads],
  });
}
