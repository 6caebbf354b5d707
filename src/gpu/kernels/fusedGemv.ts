/**
 * Fused decode GEMV (CPU adapters, m = 1): up to three projections of the same input in one
 * dispatch, with the input's preceding elementwise step done on the fly —
 *
 * - `norm`: `y_i = (rmsnorm(x)·g)·W_iᵀ` (the attention block's q/k/v, the MLP's gate/up): each
 *   thread recomputes `1/rms(x)` (K uniform loads) and scales its dot products by it;
 * - `swiglu`: `y = (silu(gate)·up)·Wᵀ` (the down projection);
 * - `plain`: `y_i = x·W_iᵀ`.
 *
 * Decode on llvmpipe pays ≈ 50–300 µs per dispatch, so removing the RMSNorm / SwiGLU passes and
 * merging q/k/v and gate/up saves 5 of 14 dispatches per layer. Workgroups are assigned to one
 * projection each (a uniform branch), 16 threads × 8 rows (`GEMV_ROWS_PER_THREAD`).
 *
 * Bindings: 0 params, 1 x f32 (read), 2 norm weight (`norm`) or up f32 (`swiglu`) (read, absent
 * for `plain`), then W_0 … W_{n−1} (read), then y_0 … y_{n−1} f32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import type { GpuMatrix, GpuVector } from "../weights.ts";
import { weightDecl, type WeightStorage, weightStorage } from "../wgslDtype.ts";
import { GEMV_ROWS_PER_THREAD, GEMV_WG, gemvRowsWgsl } from "./matmul.ts";
import { each } from "./wgslUnroll.ts";

/** The input's elementwise step. */
export type FusedGemvInput =
  | { kind: "plain" }
  | { kind: "norm"; weight: GpuVector; eps: number }
  | { kind: "swiglu"; up: BufferRef };

/** One projection of {@link fusedGemv}. */
export interface FusedGemvOutput {
  /** Weight `[N, K]` (one segment). */
  w: GpuMatrix;
  /** Output `[N]` f32. */
  y: BufferRef;
  /** Add into `y` (a residual) instead of overwriting it. */
  accumulate?: boolean;
}

/** Arguments of {@link fusedGemv}. */
export interface FusedGemvArgs {
  /** Input `[K]` f32 (the residual stream for `norm`, the gate for `swiglu`). */
  x: BufferRef;
  /** Elementwise step applied to the input. */
  input: FusedGemvInput;
  /** One to three projections sharing K. */
  outputs: FusedGemvOutput[];
}

/**
 * Whether these weights can go through {@link fusedGemv}: one segment each, K a multiple of 4.
 * (Tuned for CPU adapters: callers use it where `ctx.isFallbackAdapter`.)
 */
export function canFuseGemv(ws: GpuMatrix[]): boolean {
  const K = ws[0].cols;
  return K % 4 === 0 && ws.length <= 3 &&
    ws.every((w) => w.cols === K && w.segments.length === 1);
}

function inputWgsl(input: FusedGemvInput["kind"], normDtype: WeightStorage): string {
  switch (input) {
    case "plain":
      return "fn xin(k4: u32) -> vec4<f32> { return X[k4]; }";
    case "norm":
      return weightDecl("G", 2, normDtype) +
        "fn xin(k4: u32) -> vec4<f32> { return X[k4] * G4(k4); }";
    case "swiglu":
      return `@group(0) @binding(2) var<storage, read> U: array<vec4<f32>>;
fn xin(k4: u32) -> vec4<f32> { let g = X[k4]; return g / (1.0 + exp(-g)) * U[k4]; }`;
  }
}

function code(
  input: FusedGemvInput["kind"],
  normDtype: WeightStorage,
  dtypes: WeightStorage[],
  acc: boolean[],
): string {
  const n = dtypes.length, R = GEMV_ROWS_PER_THREAD, first = input === "plain" ? 2 : 3;
  const scale = input === "norm"
    ? `  var ss = 0.0;
  for (var k4 = 0u; k4 < p.K / 4u; k4++) { let v = X[k4]; ss += dot(v, v); }
  let inv = inverseSqrt(ss / f32(p.K) + p.eps);`
    : "  let inv = 1.0;";
  const proj = (i: number) =>
    `fn proj${i}(r0: u32, inv: f32) {
${
      gemvRowsWgsl({
        rpt: R,
        w4: `W${i}_4`,
        x4: (k) => `xin(${k})`,
        rows: `p.rows${i}`,
        kStride4: `p.ks${i}`,
        K: "p.K",
      })
    }
${
      each(R, (j) =>
        `  if (r0 + ${j}u < p.rows${i}) { Y${i}[r0 + ${j}u] = ${
          acc[i] ? `Y${i}[r0 + ${j}u] + ` : ""
        }s${j} * inv; }`)
    }
}`;
  return `struct Params { K: u32, eps: f32, rows0: u32, rows1: u32, rows2: u32, ks0: u32, ks1: u32,
  ks2: u32, wg0: u32, wg1: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
${inputWgsl(input, normDtype)}
${each(n, (i) => weightDecl(`W${i}_`, first + i, dtypes[i]))}
${
    each(n, (i) =>
      `@group(0) @binding(${first + n + i}) var<storage, read_write> Y${i}: array<f32>;`)
  }
${each(n, proj, "\n\n")}
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
${scale}
  var w = wid.x;
${
    each(n, (i) =>
      i === n - 1
        ? `  proj${i}((w * ${GEMV_WG}u + li) * ${R}u, inv);`
        : `  if (w < p.wg${i}) { proj${i}((w * ${GEMV_WG}u + li) * ${R}u, inv); return; }
  w -= p.wg${i};`)
  }
}
`;
}

/** Prepares the fused GEMV (one dispatch); check {@link canFuseGemv} first. */
export function fusedGemv(ctx: GpuContext, a: FusedGemvArgs): GpuOp {
  const ws = a.outputs.map((o) => o.w);
  if (a.outputs.length < 1 || !canFuseGemv(ws)) {
    throw new RangeError(
      "fusedGemv: needs 1–3 single-segment weights with one K (a multiple of 4)",
    );
  }
  const K = ws[0].cols, perWg = GEMV_WG * GEMV_ROWS_PER_THREAD;
  const wgs = ws.map((w) => Math.ceil(w.rows / perWg));
  const kind = a.input.kind;
  const normDtype = a.input.kind === "norm" ? a.input.weight.dtype : "F32";
  if (a.input.kind === "norm" && a.input.weight.length !== K) {
    throw new RangeError(`fusedGemv: norm weight of ${a.input.weight.length}, K ${K}`);
  }
  const acc = a.outputs.map((o) => o.accumulate ?? false);
  const key = `fusedGemv:${kind}:${normDtype}:${ws.map((w) => w.dtype)}:${acc}`;
  const buffers: BufferRef[] = [a.x];
  if (a.input.kind === "norm") buffers.push(a.input.weight.buffer);
  if (a.input.kind === "swiglu") buffers.push(a.input.up);
  for (const w of ws) {
    const s = w.segments[0];
    buffers.push({ buffer: s.buffer, offset: s.offset, size: s.size });
  }
  for (const o of a.outputs) buffers.push(o.y);
  const at = (i: number, f: (w: GpuMatrix) => number) => (ws[i] ? f(ws[i]) : 0);
  return dispatchOp(ctx, {
    label: `fusedGemv(${kind}: ${ws.map((w) => w.name).join(", ")})`,
    pipeline: ctx.pipeline(key, () =>
      code(
        kind,
        weightStorage(ctx, normDtype),
        ws.map((w) => weightStorage(ctx, w.dtype)),
        acc,
      )),
    params: packParams([
      ["u32", K],
      ["f32", a.input.kind === "norm" ? a.input.eps : 0],
      ["u32", at(0, (w) => w.rows)],
      ["u32", at(1, (w) => w.rows)],
      ["u32", at(2, (w) => w.rows)],
      ["u32", at(0, (w) => w.rowStride / 4)],
      ["u32", at(1, (w) => w.rowStride / 4)],
      ["u32", at(2, (w) => w.rowStride / 4)],
      ["u32", wgs[0]],
      ["u32", wgs[1] ?? 0],
    ]),
    buffers,
    workgroups: [wgs.reduce((x, y) => x + y, 0)],
  });
}
