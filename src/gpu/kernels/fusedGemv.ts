/**
 * Fused decode GEMV (m = 1): up to three projections of the same input in one dispatch, with the
 * input's preceding elementwise step done on the fly —
 *
 * - `norm`: `y_i = (rmsnorm(x)·g)·W_iᵀ` (the attention block's q/k/v, the MLP's gate/up): the
 *   dot products are scaled by `1/rms(x)` at the end;
 * - `swiglu`: `y = (silu(gate)·up)·Wᵀ` (the down projection);
 * - `plain`: `y_i = x·W_iᵀ`.
 *
 * Removing the RMSNorm / SwiGLU passes and merging q/k/v and gate/up leaves 7 of 13 dispatches
 * per layer: an empty dispatch costs ≈ 30–40 µs on llvmpipe, and on an H100 a 'small-mha' step
 * measured ≈ 9 µs per dispatch of fixed cost. Workgroups are assigned to one projection each (a
 * uniform branch). Two bodies, as `matmul.ts`'s GEMV (`threadsPerRow`):
 *
 * - 1 thread per row (CPU adapters): 16 threads × 8 rows, each input vec4 loaded once for its 8
 *   rows, `Σx²` (for `norm`) accumulated from those loads; block-int8 weights walked block by
 *   block (`gemvRowsWgsl`: SmolLM2's Q4_1 projections ran 1.2–1.7× faster on llvmpipe);
 * - `TPR` threads per row (GPUs): they stride over K with vec4 loads, accumulating the row's dot
 *   product and (for `norm`) `Σx²` from the same loads, then a workgroup tree reduction.
 *
 * Bindings: 0 params, 1 x f32 (read), 2 norm weight (`norm`) or up f32 (`swiglu`) (read, absent
 * for `plain`), then W_0 … W_{n−1} (read), then y_0 … y_{n−1} f32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import type { GpuMatrix, GpuVector } from "../weights.ts";
import { weightDecl, type WeightStorage, weightStorage } from "../wgslDtype.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";
import { GEMV_ROWS_PER_THREAD, GEMV_WG, gemvRowsWgsl, gemvThreadsPerRow } from "./matmul.ts";
import { I8X4_WGSL } from "./matmulCommon.ts";
import { blockElements, isBlockInt8 } from "../../model/blockInt8.ts";
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
  /** Threads per row: 1, or a power of two ≤ 64 (default `gemvThreadsPerRow(ctx)`). */
  threadsPerRow?: number;
}

/** Whether these weights can go through {@link fusedGemv}: one segment each, K a multiple of 4. */
export function canFuseGemv(ws: GpuMatrix[]): boolean {
  const K = ws[0].cols;
  return K % 4 === 0 && ws.length <= 3 &&
    ws.every((w) => w.cols === K && w.segments.length === 1);
}

/** WGSL `xin(x, k4)`: the projections' input at vec4 `k4`, given `x = X[k4]`. */
function inputWgsl(input: FusedGemvInput["kind"], normDtype: WeightStorage): string {
  switch (input) {
    case "plain":
      return "fn xin(x: vec4<f32>, k4: u32) -> vec4<f32> { return x; }";
    case "norm":
      return weightDecl("G", 2, normDtype) +
        "fn xin(x: vec4<f32>, k4: u32) -> vec4<f32> { return x * G4(k4); }";
    case "swiglu":
      return `@group(0) @binding(2) var<storage, read> U: array<vec4<f32>>;
fn xin(g: vec4<f32>, k4: u32) -> vec4<f32> { return g / (1.0 + exp(-g)) * U[k4]; }`;
  }
}

/** `Y_i[r] = s` (or `+= s`) as WGSL. */
function storeWgsl(i: number, acc: boolean, r: string, s: string): string {
  return `Y${i}[${r}] = ${acc ? `Y${i}[${r}] + ` : ""}${s};`;
}

/** Rows per workgroup of a body with `tpr` threads per row. */
function rowsPerWorkgroup(tpr: number): number {
  return tpr === 1 ? GEMV_WG * GEMV_ROWS_PER_THREAD : 64 / tpr;
}

/**
 * `xss(x, k4)`: `xin` that also adds `x·x` to the thread's `ss` (the CPU body loads each input
 * vec4 once for all its rows, so `ss` ends as Σx² with no pass of its own).
 */
const SUM_OF_SQUARES_WGSL = `var<private> ss: f32 = 0.0;
fn xss(x: vec4<f32>, k4: u32) -> vec4<f32> { ss += dot(x, x); return xin(x, k4); }`;

/** The 1-thread-per-row body of projection `i` (CPU adapters; see the module doc). */
function rowsProjWgsl(i: number, acc: boolean, norm: boolean, dtype: WeightStorage): string {
  const R = GEMV_ROWS_PER_THREAD;
  return `fn proj${i}(w: u32, li: u32) {
  let r0 = (w * ${GEMV_WG}u + li) * ${R}u;
${
    gemvRowsWgsl({
      rpt: R,
      w4: `W${i}_4`,
      x4: (k) => `${norm ? "xss" : "xin"}(X[${k}], ${k})`,
      rows: `p.rows${i}`,
      kStride4: `p.ks${i}`,
      K: "p.K",
      block: isBlockInt8(dtype) ? { array: `W${i}_`, words: blockElements(dtype) / 4 } : undefined,
    })
  }
  let inv = ${norm ? "inverseSqrt(ss / f32(p.K) + p.eps)" : "1.0"};
${
    each(R, (j) =>
      `  if (r0 + ${j}u < p.rows${i}) { ${storeWgsl(i, acc, `r0 + ${j}u`, `s${j} * inv`)} }`)
  }
}`;
}

/** The `tpr`-threads-per-row body of projection `i` (GPUs; see the module doc). */
function reduceProjWgsl(i: number, acc: boolean, norm: boolean, tpr: number): string {
  return `fn proj${i}(w: u32, li: u32) {
  let r = w * ${64 / tpr}u + li / ${tpr}u;
  let t = li % ${tpr}u;
  let base = min(r, p.rows${i} - 1u) * p.ks${i};
  var a = vec4<f32>(0.0);
  var ss = 0.0;
  for (var k4 = t; k4 < p.K / 4u; k4 += ${tpr}u) {
    let x = X[k4];
    ${norm ? "ss += dot(x, x);" : ""}
    a += W${i}_4(base + k4) * xin(x, k4);
  }
  red[li] = vec2<f32>((a.x + a.y) + (a.z + a.w), ss);
  workgroupBarrier();
  for (var h = ${tpr / 2}u; h > 0u; h >>= 1u) {
    if (t < h) { red[li] += red[li + h]; }
    workgroupBarrier();
  }
  if (t == 0u && r < p.rows${i}) {
    let s = red[li].x${norm ? " * inverseSqrt(red[li].y / f32(p.K) + p.eps)" : ""};
    ${storeWgsl(i, acc, "r", "s")}
  }
}`;
}

function code(
  input: FusedGemvInput["kind"],
  normDtype: WeightStorage,
  dtypes: WeightStorage[],
  acc: boolean[],
  tpr: number,
): string {
  const n = dtypes.length, first = input === "plain" ? 2 : 3, norm = input === "norm";
  const proj = (i: number) =>
    tpr === 1 ? rowsProjWgsl(i, acc[i], norm, dtypes[i]) : reduceProjWgsl(i, acc[i], norm, tpr);
  const blocks = tpr === 1 && dtypes.some(isBlockInt8);
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
${tpr === 1 ? (norm ? SUM_OF_SQUARES_WGSL : "") : `var<workgroup> red: array<vec2<f32>, 64>;`}
${blocks ? I8X4_WGSL : ""}
${each(n, proj, "\n\n")}
@compute @workgroup_size(${tpr === 1 ? GEMV_WG : 64})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  var w = wid.x + wid.y * nwg.x;
${
    each(n, (i) =>
      i === n - 1 ? `  proj${i}(w, li);` : `  if (w < p.wg${i}) { proj${i}(w, li); return; }
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
  const tpr = a.threadsPerRow ?? gemvThreadsPerRow(ctx);
  if (!(tpr >= 1 && tpr <= 64 && (tpr & (tpr - 1)) === 0)) {
    throw new RangeError(`fusedGemv: threadsPerRow ${tpr} must be a power of two ≤ 64`);
  }
  const K = ws[0].cols, perWg = rowsPerWorkgroup(tpr);
  const wgs = ws.map((w) => Math.ceil(w.rows / perWg));
  const kind = a.input.kind;
  const normDtype = a.input.kind === "norm" ? a.input.weight.dtype : "F32";
  if (a.input.kind === "norm" && a.input.weight.length !== K) {
    throw new RangeError(`fusedGemv: norm weight of ${a.input.weight.length}, K ${K}`);
  }
  const acc = a.outputs.map((o) => o.accumulate ?? false);
  const key = `fusedGemv:${kind}:${normDtype}:${ws.map((w) => w.dtype)}:${acc}:${tpr}`;
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
        tpr,
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
    workgroups: grid2d(wgs.reduce((x, y) => x + y, 0)),
  });
}
