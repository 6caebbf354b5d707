/**
 * Expected Attention's query statistics, accumulated on the GPU while the prompt is prefilled
 * (Devoto et al., 2025, arXiv 2510.00636; kvpress `expected_attention_press.py`): for each query
 * head h, over the pass's rows whose position is at least `sink`, the sums of the PRE-RoPE query
 * q and of its outer products q·qᵀ —
 * `sum[h][e] += q[e]`, `sq[h][e][f] += q[e]·q[f]` (f32). The pass's queries arrive after RoPE
 * (rotate_half layout, see `rope.ts`) and are rotated back by their position here:
 * `x[i] = y1·cos a + y2·sin a`, `x[i + D/2] = y2·cos a − y1·sin a`, `a = pos · invFreq[i]`, the same
 * angle (and cos/sin) the forward rotation used. Pre-RoPE queries include any q bias and q_norm.
 *
 * One workgroup of 64 threads per (e, h): thread t owns the elements f ≡ t (mod 64) of row e of
 * `sq` (its only writer) and thread 0 also `sum[h][e]`. Rows go in slabs of at most
 * {@link ROWS_PER_DISPATCH} so that no invocation loops more than llvmpipe's 65,535 times.
 *
 * Bindings: 0 params, 1 q f32 `[m][H·D]` (read), 2 positions u32 (read), 3 invFreq f32 `[D/2]`
 * (read), 4 sum f32 `[H][D]` (rw), 5 sq f32 `[H][D][D]` (rw).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams, sequenceOp } from "../op.ts";
import { ROPE_COS_SIN_WGSL } from "./rope.ts";

/** Rows per dispatch: rows × ⌈D/64⌉ loop trips per invocation stay ≤ 16,384. */
export const ROWS_PER_DISPATCH = 4096;

/** Arguments of {@link queryStatistics}. */
export interface QueryStatisticsArgs {
  /** The pass's post-RoPE queries `[m][H·D]`. */
  q: BufferRef;
  /** Absolute positions (u32), one per row, from element `positionsOffset`. */
  positions: BufferRef;
  /** First position element. */
  positionsOffset: number;
  /** RoPE inverse frequencies `[D/2]` f32 (the forward pass's). */
  invFreq: BufferRef;
  /** Running sums `[H][D]` f32. */
  sum: BufferRef;
  /** Running outer-product sums `[H][D][D]` f32. */
  sq: BufferRef;
  /** Rows of the pass. */
  m: number;
  /** Query heads. */
  numHeads: number;
  /** Head dimension (even, ≤ 256). */
  headDim: number;
  /** Rows at positions below this are left out (kvpress's `n_sink`). */
  sink: number;
}

const CODE = `struct Params { D: u32, H: u32, rows: u32, row0: u32, pos0: u32, sink: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;
@group(0) @binding(5) var<storage, read_write> sq: array<f32>;
${ROPE_COS_SIN_WGSL}
fn unrotated(r: u32, h: u32, i: u32, position: u32) -> f32 {
  let half = p.D / 2u;
  let base = (r * p.H + h) * p.D;
  let j = select(i - half, i, i < half);
  let cs = ropeCosSin(position, invFreq[j]);
  let y1 = q[base + j];
  let y2 = q[base + j + half];
  if (i < half) { return y1 * cs.x + y2 * cs.y; }
  return y2 * cs.x - y1 * cs.y;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = wid.x;
  let h = wid.y;
  var acc: array<f32, 4>;
  var s = 0.0;
  for (var r = p.row0; r < p.row0 + p.rows; r++) {
    let position = pos[p.pos0 + r];
    if (position < p.sink) { continue; }
    let qe = unrotated(r, h, e, position);
    s += qe;
    for (var k = 0u; k < 4u; k++) {
      let f = t + 64u * k;
      if (f < p.D) { acc[k] += qe * unrotated(r, h, f, position); }
    }
  }
  for (var k = 0u; k < 4u; k++) {
    let f = t + 64u * k;
    if (f < p.D) { sq[(h * p.D + e) * p.D + f] += acc[k]; }
  }
  if (t == 0u) { sum[h * p.D + e] += s; }
}
`;

/** Prepares the accumulation of one pass of `m` rows (one dispatch per slab of rows). */
export function queryStatistics(ctx: GpuContext, a: QueryStatisticsArgs): GpuOp {
  if (a.headDim % 2 !== 0 || a.headDim > 256) {
    throw new RangeError(`queryStatistics: head_dim ${a.headDim} must be even and ≤ 256`);
  }
  const ops: GpuOp[] = [];
  for (let row0 = 0; row0 < a.m; row0 += ROWS_PER_DISPATCH) {
    ops.push(dispatchOp(ctx, {
      label: "queryStatistics",
      pipeline: ctx.pipeline("queryStatistics", () => CODE),
      params: packParams([
        ["u32", a.headDim],
        ["u32", a.numHeads],
        ["u32", Math.min(ROWS_PER_DISPATCH, a.m - row0)],
        ["u32", row0],
        ["u32", a.positionsOffset],
        ["u32", a.sink],
      ]),
      buffers: [a.q, a.positions, a.invFreq, a.sum, a.sq],
      workgroups: [a.headDim, a.numHeads],
    }));
  }
  return ops.length === 1 ? ops[0] : sequenceOp("queryStatistics", ops);
}
