/**
 * Teacher forcing in the decode loop: instead of sampling, the step's next token is the given
 * target `targets[step]`, and its natural-log probability under the step's logits,
 * `logits[t] − max − log Σ exp(logits − max)` (a log-softmax), is written to `logprobs[step]`.
 * The target is then emitted like a sampled id (see `samplerState.ts`), so the next step reads it:
 * perplexity through exactly the decode steps a generation runs, with no readback per token.
 * One workgroup of 256 threads.
 *
 * Bindings: 0 params, 1 logits f32 (read), 2 targets u32 (read), 3 logprobs f32 (read_write),
 * 4 state u32, 5 ids u32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { emitWgsl, type SamplerState, STATE_STEP } from "../samplerState.ts";

/** Arguments of {@link teacherForce}. */
export interface TeacherForceArgs {
  /** Logits `[V]` f32 starting at element `logitsOffset`. */
  logits: BufferRef;
  /** First logit (default 0). */
  logitsOffset?: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** u32 `[n]`: the token each step must produce; steps past `n` repeat the last. */
  targets: BufferRef;
  /** f32 `[n]`: each step's log-probability of its target (steps past `n` write nothing). */
  logprobs: BufferRef;
  /** The state the next step reads; the ids buffer records the targets. */
  sampler: SamplerState;
}

const CODE = `struct Params { V: u32, l0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> logprobs: array<f32>;
${emitWgsl(4, 5)}
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var m = -3.4028235e38;
  for (var i = li; i < p.V; i += 256u) { m = max(m, logits[p.l0 + i]); }
  red[li] = m;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] = max(red[li], red[li + w]); }
    workgroupBarrier();
  }
  let top = red[0];
  workgroupBarrier();
  var s = 0.0;
  for (var i = li; i < p.V; i += 256u) { s += exp(logits[p.l0 + i] - top); }
  red[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let step = state[${STATE_STEP}];
    let t = targets[min(step, arrayLength(&targets) - 1u)];
    if (step < arrayLength(&logprobs)) { logprobs[step] = logits[p.l0 + t] - top - log(red[0]); }
    emit(t);
  }
}
`;

/** Prepares one teacher-forced pick: log-probability of `targets[step]`, then emits it. */
export function teacherForce(ctx: GpuContext, a: TeacherForceArgs): GpuOp {
  return dispatchOp(ctx, {
    label: "teacherForce",
    pipeline: ctx.pipeline("teacherForce", () => CODE),
    params: packParams([["u32", a.vocabSize], ["u32", a.logitsOffset ?? 0]]),
    buffers: [a.logits, a.targets, a.logprobs, a.sampler.state, a.sampler.ids],
    workgroups: [1],
  });
}
