/**
 * Greedy sampling: the index of the largest logit (the lowest index on ties; NaN counts as −∞),
 * written into the sampler state and appended to the ids buffer (see `samplerState.ts`).
 * One workgroup of 256 threads.
 *
 * Bindings: 0 params, 1 logits f32 (read), 2 state u32, 3 ids u32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { emitWgsl, type SamplerState } from "../samplerState.ts";

/** Arguments of {@link argmax}. */
export interface ArgmaxArgs {
  /** Logits `[V]` f32 starting at element `logitsOffset`. */
  logits: BufferRef;
  /** First logit (default 0). */
  logitsOffset?: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Where the id goes. */
  sampler: SamplerState;
}

const CODE = `struct Params { V: u32, l0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
${emitWgsl(2, 3)}
const NONE = 0xffffffffu;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return j == NONE || (i != NONE && (v > w || (v == w && i < j)));
}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var v = 0.0;
  var idx = NONE;
  for (var i = li; i < p.V; i += 256u) {
    let x = logits[p.l0 + i];
    if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { continue; }
    if (better(x, i, v, idx)) { v = x; idx = i; }
  }
  bv[li] = v;
  bi[li] = idx;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w && better(bv[li + w], bi[li + w], bv[li], bi[li])) {
      bv[li] = bv[li + w];
      bi[li] = bi[li + w];
    }
    workgroupBarrier();
  }
  if (li == 0u) { emit(select(bi[0], 0u, bi[0] == NONE)); }
}
`;

/** Prepares greedy sampling of one token. */
export function argmax(ctx: GpuContext, a: ArgmaxArgs): GpuOp {
  return dispatchOp(ctx, {
    label: "argmax",
    pipeline: ctx.pipeline("argmax", () => CODE),
    params: packParams([["u32", a.vocabSize], ["u32", a.logitsOffset ?? 0]]),
    buffers: [a.logits, a.sampler.state, a.sampler.ids],
    workgroups: [1],
  });
}
