/**
 * CriticalKV's value weight on the GPU (Feng et al., 2025, arXiv 2502.03805; kvpress
 * `criticalkv_press.py`), second half: the L1 norm over the hidden dimension of v_i·W_o^(h) for
 * each value row i and each query head h of one GQA group, given the projections themselves
 * (`y = v·Wᵀ` of the group's `W_o` slices, computed by the GEMM of `matmul.ts`):
 * `out[j·outStride + outOffset + i] = Σ_c |y[i][j·hidden + c]|`.
 *
 * One thread per (row, query head) walks the head's `hidden` outputs in order (loop trips:
 * `hidden`, within llvmpipe's 65,535, `src/gpu/loopBudget.ts`).
 *
 * Bindings: 0 params, 1 y f32 `[rows][groups·hidden]` (read), 2 out f32 (rw).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";

/** Arguments of {@link valueOutputNorms}. */
export interface ValueOutputNormsArgs {
  /** The projections `[rows][groups·hidden]` f32: row i's query head j at `j·hidden`. */
  y: BufferRef;
  /** Rows of `y`. */
  rows: number;
  /** Query heads per row. */
  groups: number;
  /** The model's hidden size (output channels of W_o). */
  hidden: number;
  /** Output f32. */
  out: BufferRef;
  /** Element of `out` where query head 0's norm of row 0 goes. */
  outOffset: number;
  /** Elements of `out` between consecutive query heads' norms. */
  outStride: number;
}

const WG = 64;

const CODE = `struct Params {
  rows: u32, groups: u32, hidden: u32, outOff: u32, outStride: u32, perRow: u32, wgx: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let k = (wid.y * p.wgx + wid.x) * ${WG}u + t;
  if (k >= p.rows * p.groups) { return; }
  let i = k / p.groups;
  let j = k % p.groups;
  let base = i * p.perRow + j * p.hidden;
  var sum = 0.0;
  for (var c = 0u; c < p.hidden; c++) { sum += abs(y[base + c]); }
  out[p.outOff + j * p.outStride + i] = sum;
}
`;

/** Prepares the norms of `rows × groups` projections (one dispatch). */
export function valueOutputNorms(ctx: GpuContext, a: ValueOutputNormsArgs): GpuOp {
  if (!(a.hidden >= 1 && a.hidden <= 65535)) {
    throw new RangeError(`valueOutputNorms: hidden ${a.hidden} outside 1..65535 (loop trips)`);
  }
  const workgroups = grid2d(Math.ceil((a.rows * a.groups) / WG));
  return dispatchOp(ctx, {
    label: "valueOutputNorms",
    pipeline: ctx.pipeline("valueOutputNorms", () => CODE),
    params: packParams([
      ["u32", a.rows],
      ["u32", a.groups],
      ["u32", a.hidden],
      ["u32", a.outOffset],
      ["u32", a.outStride],
      ["u32", a.groups * a.hidden],
      ["u32", workgroups[0]],
    ]),
    buffers: [a.y, a.out],
    workgroups,
  });
}
