/**
 * SnapKV's votes on the GPU: for every query head h and key j, the sum over the last `window`
 * recorded observation rows of their softmax probability on key j —
 * `votes[h][j] = Σ_{r = rows − window}^{rows − 1} obs[h][r][j]` (f32, rows in ascending order).
 * Reading these `H × N` values back instead of the `H × rows × N` probabilities is what keeps the
 * press cheap next to a GPU's prefill (bench/NOTES.md, section 4).
 *
 * Bindings: 0 params, 1 obs f32 `[H][rows][stride]` (read), 2 votes f32 `[H][stride]` (rw).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** Arguments of {@link windowVotes}. */
export interface WindowVotesArgs {
  /** Observation probabilities `[H][rows][stride]` (see `prefillAttention`'s window). */
  obs: BufferRef;
  /** Output `[H][stride]` f32. */
  votes: BufferRef;
  /** Query heads. */
  numHeads: number;
  /** Rows recorded per head. */
  rows: number;
  /** Rows summed: the last `window` (1 … rows). */
  window: number;
  /** Keys per row. */
  stride: number;
}

const CODE = `struct Params { rows: u32, window: u32, stride: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> obs: array<f32>;
@group(0) @binding(2) var<storage, read_write> votes: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  if (j >= p.stride) { return; }
  var sum = 0.0;
  for (var r = p.rows - p.window; r < p.rows; r++) {
    sum += obs[(h * p.rows + r) * p.stride + j];
  }
  votes[h * p.stride + j] = sum;
}
`;

/** Prepares the window sums of one layer's observation (one dispatch). */
export function windowVotes(ctx: GpuContext, a: WindowVotesArgs): GpuOp {
  if (!(Number.isInteger(a.window) && a.window >= 1 && a.window <= a.rows)) {
    throw new RangeError(`windowVotes: window ${a.window} outside 1..${a.rows}`);
  }
  return dispatchOp(ctx, {
    label: "windowVotes",
    pipeline: ctx.pipeline("windowVotes", () => CODE),
    params: packParams([["u32", a.rows], ["u32", a.window], ["u32", a.stride]]),
    buffers: [a.obs, a.votes],
    workgroups: [Math.ceil(a.stride / 64), a.numHeads],
  });
}
