/**
 * RMSNorm: `out[m, i] = x[m, i] / sqrt(mean(x[m, :]²) + eps) · w[i]`, computed in f32, with the
 * weight in its checkpoint dtype. One workgroup of 64 threads per row.
 *
 * Bindings: 0 params, 1 x f32 (read), 2 weight (read), 3 out f32 (read_write; must not alias x).
 * The in-place form ({@link rmsNormInPlace}, Qwen3's per-head q/k norm) binds x read_write and
 * writes each row over itself: every thread reads its elements for the sum before the barrier
 * and rewrites only the elements it reads afterwards.
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";
import type { GpuVector } from "../weights.ts";
import { weightDecl, type WeightStorage, weightStorage } from "../wgslDtype.ts";

/** Arguments of {@link rmsNorm}. */
export interface RmsNormArgs {
  /** Input `[m, H]` f32. */
  x: BufferRef;
  /** Weight `[H]`. */
  weight: GpuVector;
  /** Output `[m, H]` f32 (a different buffer from `x`). */
  out: BufferRef;
  /** Rows. */
  m: number;
  /** `rms_norm_eps`. */
  eps: number;
  /** Elements between rows of x (default H). */
  xRowStride?: number;
  /** Elements between rows of out (default H). */
  outRowStride?: number;
}

function code(dtype: WeightStorage, inPlace: boolean): string {
  const buffers = inPlace
    ? `@group(0) @binding(1) var<storage, read_write> X: array<f32>;
${weightDecl("G", 2, dtype)}`
    : `@group(0) @binding(1) var<storage, read> X: array<f32>;
${weightDecl("G", 2, dtype)}
@group(0) @binding(3) var<storage, read_write> out: array<f32>;`;
  const store = inPlace ? "X[m * p.ldx + i]" : "out[m * p.ldo + i]";
  return `struct Params { H: u32, M: u32, eps: f32, ldx: u32, ldo: u32 };
@group(0) @binding(0) var<uniform> p: Params;
${buffers}
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m = wid.x + wid.y * nwg.x;
  let row = min(m, p.M - 1u);
  var s = 0.0;
  for (var i = li; i < p.H; i += 64u) {
    let v = X[row * p.ldx + i];
    s += v * v;
  }
  red[li] = s;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] / f32(p.H) + p.eps);
  if (m >= p.M) { return; }
  for (var i = li; i < p.H; i += 64u) {
    ${store} = X[m * p.ldx + i] * inv * G1(i);
  }
}
`;
}

/** Prepares RMSNorm over `m` rows. */
export function rmsNorm(ctx: GpuContext, a: RmsNormArgs): GpuOp {
  const H = a.weight.length;
  return dispatchOp(ctx, {
    label: `rmsNorm(${a.weight.name})`,
    pipeline: ctx.pipeline(
      `rmsNorm:${a.weight.dtype}`,
      () => code(weightStorage(ctx, a.weight.dtype), false),
    ),
    params: packParams([
      ["u32", H],
      ["u32", a.m],
      ["f32", a.eps],
      ["u32", a.xRowStride ?? H],
      ["u32", a.outRowStride ?? H],
    ]),
    buffers: [a.x, a.weight.buffer, a.out],
    workgroups: grid2d(a.m),
  });
}

/** Arguments of {@link rmsNormInPlace}. */
export interface RmsNormInPlaceArgs {
  /** Rows `[m, H]` f32, normalised in place (H = the weight's length). */
  x: BufferRef;
  /** Weight `[H]`. */
  weight: GpuVector;
  /** Rows. */
  m: number;
  /** `rms_norm_eps`. */
  eps: number;
}

/**
 * RMSNorm of `m` contiguous rows in place — Qwen3's `q_norm` / `k_norm`, where every head of
 * every token is one row of `head_dim` values.
 */
export function rmsNormInPlace(ctx: GpuContext, a: RmsNormInPlaceArgs): GpuOp {
  const H = a.weight.length;
  return dispatchOp(ctx, {
    label: `rmsNormInPlace(${a.weight.name})`,
    pipeline: ctx.pipeline(
      `rmsNormInPlace:${a.weight.dtype}`,
      () => code(weightStorage(ctx, a.weight.dtype), true),
    ),
    params: packParams([["u32", H], ["u32", a.m], ["f32", a.eps], ["u32", H], ["u32", H]]),
    buffers: [a.x, a.weight.buffer],
    workgroups: grid2d(a.m),
  });
}
