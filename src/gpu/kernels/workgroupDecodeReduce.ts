/**
 * The reduce pass of split-KV decoding for GPUs: one workgroup of {@link REDUCE_WG} threads per
 * query head merges the head's split partials `(O unnormalised, m, l)` in parallel, where the
 * serial reduce of `decodeAttention.ts` (written for CPU adapters) has each thread walk every
 * split three times, one dependent load after another:
 *
 * 1. thread t takes splits `t, t + 64, …`: its maximum of `m`, then the workgroup's by a tree;
 * 2. its share of `Σ l·e^{m − M}`, summed by a tree;
 * 3. thread t owns one output vec4 `d` and a slice of the splits; slices are summed in workgroup
 *    memory and scaled by `1 / Σ`.
 *
 * Same partials layout (`[H][splits][D/4 + 1]` vec4) and output as the serial pass; heads with no
 * entries (every `l = 0`) output zeros.
 *
 * Bindings: 0 params, 1 partials (read), 2 out f32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** Threads per workgroup (one workgroup per query head). */
export const REDUCE_WG = 64;

/** Arguments of {@link workgroupDecodeReduce}. */
export interface WorkgroupDecodeReduceArgs {
  /** Partials `[H][splits][D/4 + 1]` vec4 written by a split pass. */
  scratch: GPUBuffer;
  /** Output `[H·D]` f32. */
  out: BufferRef;
  /** Query heads. */
  numHeads: number;
  /** Head dimension. */
  headDim: number;
  /** Splits per head. */
  splits: number;
}

function code(D4: number): string {
  const WG = REDUCE_WG;
  // Split slices per output vec4 in step 3.
  const reps = Math.max(1, Math.floor(WG / D4));
  const tree = (op: string) =>
    `  for (var st = ${WG / 2}u; st > 0u; st >>= 1u) {
    if (t < st) { red[t] = ${op}; }
    workgroupBarrier();
  }`;
  return `struct Params { splits: u32 };
@group(0) @binding(0) var<uniform> p: Params;
const D4 = ${D4}u;
@group(0) @binding(1) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> acc: array<vec4<f32>, ${reps * D4}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.x;
  let first = h * p.splits;
  // 1. maximum of the splits' m
  var m = -3.0e38;
  for (var s = t; s < p.splits; s += ${WG}u) { m = max(m, part[(first + s) * (D4 + 1u) + D4].x); }
  red[t] = m;
  workgroupBarrier();
${tree("max(red[t], red[t + st])")}
  let mx = red[0];
  workgroupBarrier();
  // 2. Σ l·e^{m − M}
  var l = 0.0;
  for (var s = t; s < p.splits; s += ${WG}u) {
    let ml = part[(first + s) * (D4 + 1u) + D4];
    l += ml.y * exp(ml.x - mx);
  }
  red[t] = l;
  workgroupBarrier();
${tree("red[t] + red[t + st]")}
  let total = red[0];
  let inv = select(0.0, 1.0 / total, total > 0.0);
  // 3. O = Σ_s O_s·e^{m_s − M}: thread i owns vec4 i % D4 and splits ≡ i / D4 (mod ${reps})
  for (var i = t; i < ${reps * D4}u; i += ${WG}u) {
    let d = i % D4;
    var o = vec4<f32>(0.0);
    for (var s = i / D4; s < p.splits; s += ${reps}u) {
      let at = (first + s) * (D4 + 1u);
      let w = exp(part[at + D4].x - mx);
      if (w > 0.0) { o += part[at + d] * w; }
    }
    acc[i] = o;
  }
  workgroupBarrier();
  for (var d = t; d < D4; d += ${WG}u) {
    var o = acc[d];
    for (var r = 1u; r < ${reps}u; r++) { o += acc[r * D4 + d]; }
    out[h * D4 + d] = o * inv;
  }
}
`;
}

/** Prepares the parallel reduce pass (one dispatch, a workgroup per query head). */
export function workgroupDecodeReduce(ctx: GpuContext, a: WorkgroupDecodeReduceArgs): GpuOp {
  const D4 = a.headDim / 4;
  return dispatchOp(ctx, {
    label: "decodeAttention.reduce",
    pipeline: ctx.pipeline(`decodeAttnReduceWg:${D4}`, () => code(D4)),
    params: packParams([["u32", a.splits]]),
    buffers: [a.scratch, a.out],
    workgroups: [a.numHeads],
  });
}
