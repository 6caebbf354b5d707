/**
 * CriticalKV's value weight on the GPU (Feng et al., 2025, arXiv 2502.03805; kvpress
 * `criticalkv_press.py`): for each cached value v_i of one KV head and one query head h of its
 * group, the L1 norm over the hidden dimension of v_i·W_o^(h), where W_o^(h) is the query head's
 * `headDim × hidden` slice of the attention output projection —
 * `out[i] = Σ_c |Σ_e v[i][e] · w[c][e]|`, with `w[c][e] = W_o[c][h·headDim + e]` given as a
 * `hidden × headDim` f32 matrix.
 *
 * One workgroup of 64 threads per value row: the row goes to workgroup memory, each thread sums
 * |dot| over the output channels c ≡ thread (mod 64), and a tree reduction adds the 64 partial
 * sums. Loop trips per invocation are ⌈hidden/64⌉·headDim (8,192 at hidden 4096, head_dim 128),
 * well inside llvmpipe's 65,535 (`src/gpu/loopBudget.ts`).
 *
 * Bindings: 0 params, 1 values f32 `[rows][headDim]` (read), 2 w f32 `[…][hidden][headDim]` (read,
 * from element `wOffset`), 3 out f32 (rw, `[rows]` from element `outOffset`).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** Arguments of {@link valueOutputNorms}. */
export interface ValueOutputNormsArgs {
  /** Value rows `[rows][headDim]` f32. */
  values: BufferRef;
  /** Output-projection slices `[…][hidden][headDim]` f32: the query head's starts at `wOffset`. */
  w: BufferRef;
  /** Element of `w` where the query head's slice starts. */
  wOffset: number;
  /** Output f32: the `rows` norms go to elements `outOffset …`. */
  out: BufferRef;
  /** Element of `out` where the norms go. */
  outOffset: number;
  /** Value rows. */
  rows: number;
  /** Elements of one value (≤ 256). */
  headDim: number;
  /** The model's hidden size (output channels of W_o). */
  hidden: number;
}

/** The most value rows one dispatch covers (workgroups along x). */
const MAX_ROWS_PER_DISPATCH = 65535;

const CODE = `struct Params { rows: u32, d: u32, hidden: u32, base: u32, wOff: u32, outOff: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> row: array<f32, 256>;
var<workgroup> partial: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let i = p.base + wid.x;
  for (var e = t; e < p.d; e += 64u) { row[e] = values[i * p.d + e]; }
  workgroupBarrier();
  var sum = 0.0;
  for (var c = t; c < p.hidden; c += 64u) {
    var dot = 0.0;
    for (var e = 0u; e < p.d; e++) { dot += row[e] * w[p.wOff + c * p.d + e]; }
    sum += abs(dot);
  }
  partial[t] = sum;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (t < s) { partial[t] += partial[t + s]; }
    workgroupBarrier();
  }
  if (t == 0u) { out[p.outOff + i] = partial[0]; }
}
`;

/** Prepares the norms of `rows` value rows against one query head's slice (one or more dispatches). */
export function valueOutputNorms(ctx: GpuContext, a: ValueOutputNormsArgs): GpuOp[] {
  if (!(a.headDim >= 1 && a.headDim <= 256)) {
    throw new RangeError(`valueOutputNorms: head_dim ${a.headDim} outside 1..256`);
  }
  if (Math.ceil(a.hidden / 64) * a.headDim > 65535) {
    throw new RangeError(
      `valueOutputNorms: hidden ${a.hidden} × head_dim ${a.headDim} needs more loop trips per ` +
        "invocation than llvmpipe allows (65,535)",
    );
  }
  const ops: GpuOp[] = [];
  for (let base = 0; base < a.rows; base += MAX_ROWS_PER_DISPATCH) {
    ops.push(dispatchOp(ctx, {
      label: "valueOutputNorms",
      pipeline: ctx.pipeline("valueOutputNorms", () => CODE),
      params: packParams([
        ["u32", a.rows],
        ["u32", a.headDim],
        ["u32", a.hidden],
        ["u32", base],
        ["u32", a.wOffset],
        ["u32", a.outOffset],
      ]),
      buffers: [a.values, a.w, a.out],
      workgroups: [Math.min(MAX_ROWS_PER_DISPATCH, a.rows - base)],
    }));
  }
  return ops;
}
