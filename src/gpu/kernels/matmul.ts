/**
 * `y[M, N] (+)= x[M, K] · W[N, K]ᵀ (+ bias)` with W in its checkpoint dtype (F32 / F16 / BF16).
 *
 * Two kernels, both without workgroup memory in their inner loops:
 * - GEMV (M = 1, decode): `ROWS` output rows per workgroup, `TPR` threads per row striding over K
 *   with `vec4` loads (a workgroup-memory tree reduction only when `TPR > 1`).
 * - GEMM (M > 1, prefill): each thread owns a 4×4 register tile (4 rows of x × 4 rows of W),
 *   accumulating `vec4` dot products; 8×8 threads per workgroup.
 *
 * Bindings: 0 params (uniform), 1 W segment (read), 2 x f32 (read), 3 y f32 (read_write),
 * 4 bias (read, optional). One dispatch per weight segment (see `weights.ts`).
 *
 * @module
 */

import type { DType } from "../../model/types.ts";
import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams, sequenceOp } from "../op.ts";
import type { GpuMatrix, GpuVector } from "../weights.ts";
import { weightDecl } from "../wgslDtype.ts";

/** Arguments of {@link matmul}. */
export interface MatmulArgs {
  /** Input `[m, K]` f32, row stride `xRowStride` (default K). */
  x: BufferRef;
  /** Weight `[N, K]`. */
  w: GpuMatrix;
  /** Output `[m, N]` f32, row stride `yRowStride` (default N). */
  y: BufferRef;
  /** Number of input rows. */
  m: number;
  /** Optional bias `[N]` in any dtype. */
  bias?: GpuVector;
  /** Add into `y` instead of overwriting it (fuses a residual add). */
  accumulate?: boolean;
  /** Elements between rows of x. */
  xRowStride?: number;
  /** Elements between rows of y. */
  yRowStride?: number;
  /** Force a path (tests); default GEMV for m = 1, GEMM otherwise. */
  path?: "gemv" | "gemm";
  /** GEMV threads per row (a power of two ≤ 64; default {@link gemvThreadsPerRow}). */
  threadsPerRow?: number;
}

/** Threads per output row of the GEMV kernel for this adapter (1 on CPU adapters). */
export function gemvThreadsPerRow(ctx: GpuContext): number {
  return ctx.isFallbackAdapter ? 1 : 16;
}

interface Variant {
  dtype: DType;
  xVec: boolean;
  bias: DType | null;
  accumulate: boolean;
}

const PARAMS =
  `struct Params { K: u32, rows: u32, n0: u32, ldy: u32, kStride4: u32, ldx: u32, M: u32 };
@group(0) @binding(0) var<uniform> p: Params;
`;

function commonDecls(v: Variant): string {
  const x = v.xVec
    ? `@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
fn x4(m: u32, k4: u32) -> vec4<f32> { return X[m * (p.ldx >> 2u) + k4]; }`
    : `@group(0) @binding(2) var<storage, read> X: array<f32>;
fn xs(m: u32, k: u32) -> f32 { return select(0.0, X[m * p.ldx + k], k < p.K); }
fn x4(m: u32, k4: u32) -> vec4<f32> {
  let k = k4 * 4u;
  return vec4<f32>(xs(m, k), xs(m, k + 1u), xs(m, k + 2u), xs(m, k + 3u));
}`;
  return PARAMS + weightDecl("W", 1, v.dtype) + x + `
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
` + (v.bias ? weightDecl("B", 4, v.bias) : "") + `
fn store(m: u32, r: u32, acc: f32) {
  let i = m * p.ldy + p.n0 + r;
  var v = acc${v.bias ? " + B1(p.n0 + r)" : ""};
  ${v.accumulate ? "v += Y[i];" : ""}
  Y[i] = v;
}
`;
}

function gemvCode(v: Variant, tpr: number, rowsPerWg: number): string {
  const reduce = tpr === 1 ? "let total = s;" : `red[li] = s;
  workgroupBarrier();
  for (var w = ${tpr / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  let total = red[li];`;
  return commonDecls(v) + `
const TPR = ${tpr}u;
const ROWS = ${rowsPerWg}u;
${tpr > 1 ? `var<workgroup> red: array<f32, ${tpr * rowsPerWg}>;` : ""}
@compute @workgroup_size(${tpr * rowsPerWg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let r = (wid.x + wid.y * nwg.x) * ROWS + li / TPR;
  let t = li % TPR;
  let K4 = (p.K + 3u) / 4u;
  let base = min(r, p.rows - 1u) * p.kStride4;
  var acc = vec4<f32>(0.0);
  for (var k4 = t; k4 < K4; k4 += TPR) {
    acc += W4(base + k4) * x4(0u, k4);
  }
  let s = (acc.x + acc.y) + (acc.z + acc.w);
  ${reduce}
  if (t == 0u && r < p.rows) { store(0u, r, total); }
}
`;
}

function gemmCode(v: Variant): string {
  return commonDecls(v) + `
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r0 = gid.x * 4u;
  let m0 = gid.y * 4u;
  if (r0 >= p.rows || m0 >= p.M) { return; }
  let K4 = (p.K + 3u) / 4u;
  var wb: array<u32, 4>;
  var xm: array<u32, 4>;
  for (var j = 0u; j < 4u; j++) {
    wb[j] = min(r0 + j, p.rows - 1u) * p.kStride4;
    xm[j] = min(m0 + j, p.M - 1u);
  }
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var k4 = 0u; k4 < K4; k4++) {
    let w0 = W4(wb[0] + k4);
    let w1 = W4(wb[1] + k4);
    let w2 = W4(wb[2] + k4);
    let w3 = W4(wb[3] + k4);
    let x0 = x4(xm[0], k4);
    let x1 = x4(xm[1], k4);
    let x2 = x4(xm[2], k4);
    let x3 = x4(xm[3], k4);
    a0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
    a1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
    a2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
    a3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
  }
  let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
  for (var i = 0u; i < 4u; i++) {
    if (m0 + i < p.M) {
      for (var j = 0u; j < 4u; j++) {
        if (r0 + j < p.rows) { store(m0 + i, r0 + j, acc[i][j]); }
      }
    }
  }
}
`;
}

/**
 * Prepares `y = x·Wᵀ (+ bias)` (or `y += …` with `accumulate`) as one op: one dispatch per weight
 * segment. Buffers are bound whole (or as given), so the op can be encoded every step.
 */
export function matmul(ctx: GpuContext, a: MatmulArgs): GpuOp {
  const { w, m } = a;
  const K = w.cols, N = w.rows;
  const ldx = a.xRowStride ?? K;
  const ldy = a.yRowStride ?? N;
  if (m < 1) throw new RangeError("matmul: m must be ≥ 1");
  if (a.bias && a.bias.length !== N) {
    throw new Error(`matmul: bias ${a.bias.name} has ${a.bias.length} elements, W has ${N} rows`);
  }
  const path = a.path ?? (m === 1 ? "gemv" : "gemm");
  const v: Variant = {
    dtype: w.dtype,
    xVec: K % 4 === 0 && ldx % 4 === 0,
    bias: a.bias?.dtype ?? null,
    accumulate: a.accumulate ?? false,
  };
  const vkey = `${v.dtype}:${v.xVec}:${v.bias}:${v.accumulate}`;
  const ops = w.segments.map((seg, si) => {
    const params = packParams([
      ["u32", K],
      ["u32", seg.rows],
      ["u32", seg.rowStart],
      ["u32", ldy],
      ["u32", w.rowStride / 4],
      ["u32", ldx],
      ["u32", m],
    ]);
    const buffers: BufferRef[] = [
      { buffer: seg.buffer, offset: seg.offset, size: seg.size },
      a.x,
      a.y,
    ];
    if (a.bias) buffers.push(a.bias.buffer);
    const label = `matmul(${w.name}#${si})`;
    if (path === "gemv") {
      if (m !== 1) throw new RangeError("matmul: the GEMV path needs m = 1");
      const tpr = a.threadsPerRow ?? gemvThreadsPerRow(ctx);
      if (!(tpr >= 1 && tpr <= 64 && (tpr & (tpr - 1)) === 0)) {
        throw new RangeError(`matmul: threadsPerRow ${tpr} must be a power of two ≤ 64`);
      }
      const rowsPerWg = Math.max(1, 64 / tpr);
      const pipeline = ctx.pipeline(
        `gemv:${vkey}:${tpr}`,
        () => gemvCode(v, tpr, rowsPerWg),
      );
      const wgs = grid2d(Math.ceil(seg.rows / rowsPerWg));
      return dispatchOp(ctx, { label, pipeline, params, buffers, workgroups: wgs });
    }
    const pipeline = ctx.pipeline(`gemm:${vkey}`, () => gemmCode(v));
    return dispatchOp(ctx, {
      label,
      pipeline,
      params,
      buffers,
      workgroups: [Math.ceil(seg.rows / 32), Math.ceil(m / 32)],
    });
  });
  return ops.length === 1 ? ops[0] : sequenceOp(`matmul(${w.name})`, ops);
}
