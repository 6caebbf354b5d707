/**
 * Residual add: `acc[i] += x[i]` for `n` f32 elements (in place).
 *
 * Bindings: 0 params, 1 acc f32 (read_write), 2 x f32 (read; must not alias acc).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";

/** Arguments of {@link residualAdd}. */
export interface ResidualAddArgs {
  /** Accumulator (the residual stream), updated in place. */
  acc: BufferRef;
  /** Added values. */
  x: BufferRef;
  /** Number of elements. */
  n: number;
}

const CODE = `struct Params { n: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + li;
  if (i < p.n) { acc[i] += x[i]; }
}
`;

/** Prepares `acc += x` over `n` elements. */
export function residualAdd(ctx: GpuContext, a: ResidualAddArgs): GpuOp {
  return dispatchOp(ctx, {
    label: "residualAdd",
    pipeline: ctx.pipeline("residualAdd", () => CODE),
    params: packParams([["u32", a.n]]),
    buffers: [a.acc, a.x],
    workgroups: grid2d(Math.ceil(a.n / 64)),
  });
}
