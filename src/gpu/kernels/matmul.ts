/**
 * `y[M, N] (+)= x[M, K] · W[N, K]ᵀ (+ bias)` with W in its checkpoint dtype (F32 / F16 / BF16) or
 * the block-int8 form of a quantized GGUF tensor (`../../model/blockInt8.ts`).
 *
 * Two kernels, both without workgroup memory in their inner loops, generated unrolled with named
 * register variables (see `wgslUnroll.ts`), and a third, `tiledGemm.ts` (`path: "tiled"`):
 * - GEMV (M = 1, decode): on CPU adapters 8 rows per thread, 16 threads per workgroup, x loaded
 *   once per k for all 8 rows (block-int8 weights: block by block, each block's scale and min
 *   loaded once; {@link gemvRowsWgsl}); on GPUs `TPR` threads per row striding over K with `vec4`
 *   loads and a workgroup-memory tree reduction.
 * - GEMM (M > 1, prefill, `registerGemm.ts`): each thread owns a TM×TN register tile (rows of x ×
 *   rows of W); the x rows are chosen by the workgroup id only, so every thread of a workgroup
 *   reads the same x values; 16–64 threads per workgroup (block-int8 weights: block by block).
 *
 * On llvmpipe every storage-buffer load is gathered lane by lane, even where all lanes read the
 * same address (Mesa takes its scalar path only for "always uniform" indices — constants and push
 * constants, not workgroup ids or uniform-buffer values; a GEMV whose x index was made
 * lane-dependent ran as fast as this one), so what these kernels save is the number of loads per
 * multiply-add: each loaded x value serves TN (GEMM) or 8 (GEMV) rows of W. It also runs every lane
 * of a SIMD batch, in range or not: a thread whose rows all lie past W's last returns at once, or
 * a 576-row W (SmolLM2's hidden size) in 512-row workgroups ran as if it had 1,024 rows (the
 * 256×576×1536 GEMM went from 0.55 to 1.06–1.09 GFLOP/s on a loaded 2-core llvmpipe).
 *
 * Bindings: 0 params (uniform), 1 W segment (read), 2 x f32 (read), 3 y f32 (read_write),
 * 4 bias (read, optional). One dispatch per weight segment (see `weights.ts`).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams, sequenceOp } from "../op.ts";
import type { GpuMatrix, GpuVector } from "../weights.ts";
import { I8X4_WGSL, matmulDecls, type MatmulVariant } from "./matmulCommon.ts";
import { TILED_SHAPES, tiledGemmCode } from "./tiledGemm.ts";
import { gemmBlockCode, gemmCode, gemmTile } from "./registerGemm.ts";
import { weightStorage } from "../wgslDtype.ts";
import { blockElements, isBlockInt8 } from "../../model/blockInt8.ts";
import { each } from "./wgslUnroll.ts";

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
  /**
   * Force a path; default GEMV for m = 1, otherwise the GEMM of `ctx.kernels.gemm` (the register
   * GEMM; `"tiled"` / `"tiled128"`: the workgroup-memory GEMMs of `tiledGemm.ts`, GPU candidates).
   */
  path?: "gemv" | "gemm" | "tiled" | "tiled128";
  /** GEMM register tile: rows of x × rows of W per thread (default {@link gemmTile}). */
  tile?: [number, number];
  /** GEMV threads per row (a power of two ≤ 64; default {@link gemvThreadsPerRow}). */
  threadsPerRow?: number;
  /** GEMM arithmetic (default `ctx.kernels.math`; `f16` needs `shader-f16`). The GEMV is f32. */
  math?: "f32" | "f16";
}

/** Threads per output row of the GEMV for `ctx.kernels.gemv`: 1 (`rows`) or 16 (`reduce`). */
export function gemvThreadsPerRow(ctx: GpuContext): number {
  return ctx.kernels.gemv === "rows" ? 1 : 16;
}

/** GEMV with a workgroup reduction: `TPR` threads per row stride over K (GPU adapters). */
function gemvReduceCode(v: MatmulVariant, tpr: number, rowsPerWg: number): string {
  return matmulDecls(v) + `
const TPR = ${tpr}u;
const ROWS = ${rowsPerWg}u;
var<workgroup> red: array<f32, ${tpr * rowsPerWg}>;
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
  red[li] = (acc.x + acc.y) + (acc.z + acc.w);
  workgroupBarrier();
  for (var w = TPR / 2u; w > 0u; w >>= 1u) {
    if (t < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  if (t == 0u && r < p.rows) { store(0u, r, red[li]); }
}
`;
}

/**
 * Rows per thread of the CPU GEMV: each x load is reused by 8 rows (llvmpipe, 2048² bf16:
 * 1 row 5.8 ms, 2 rows 4.2, 4 rows 3.4, 8 rows 3.0).
 */
export const GEMV_ROWS_PER_THREAD = 8;
/** Threads per workgroup of the CPU GEMV (16: more, smaller workgroups balance 2 cores). */
export const GEMV_WG = 16;

/**
 * GEMV without a reduction (CPU adapters): each thread owns `RPT` rows, so each x vec4 loaded
 * serves `RPT` rows of W; K is unrolled by `U` vec4s.
 */
function gemvRowCode(v: MatmulVariant, RPT: number, WG: number): string {
  const dtype = v.dtype;
  const block = isBlockInt8(dtype);
  return matmulDecls(v) + (block ? I8X4_WGSL : "") + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let r0 = ((wid.x + wid.y * nwg.x) * ${WG}u + li) * ${RPT}u;
${
    gemvRowsWgsl({
      rpt: RPT,
      w4: "W4",
      x4: (k) => `x4(0u, ${k})`,
      rows: "p.rows",
      kStride4: "p.kStride4",
      K: "p.K",
      block: isBlockInt8(dtype) ? { array: "W", words: blockElements(dtype) / 4 } : undefined,
    })
  }
${each(RPT, (j) => `  if (r0 + ${j}u < p.rows) { store(0u, r0 + ${j}u, s${j}); }`)}
}
`;
}

/** What {@link gemvRowsWgsl} reads. */
export interface GemvRowsSpec {
  /** Rows per thread. */
  rpt: number;
  /** WGSL function loading 4 weights at a vec4 index, e.g. `W4`. */
  w4: string;
  /** WGSL expression of the 4 inputs at vec4 index `k` (uniform across the workgroup). */
  x4: (k: string) => string;
  /** WGSL expressions: rows of W, its row stride in vec4s, K. */
  rows: string;
  /** Row stride of W in vec4s. */
  kStride4: string;
  /** Input length. */
  K: string;
  /**
   * Block-int8 weights (`wgslDtype.ts`): the u32 array bound for W and its code words per block
   * (`S/4`). The body then walks whole blocks: per row and block it loads the code words once and
   * the scale and min once, `y += scale·Σ code·x + min·Σx` (the per-vec4 loader re-reads both
   * for every four codes; on llvmpipe every load is a gather). K must be whole blocks.
   */
  block?: { array: string; words: number };
}

/**
 * WGSL statements of the CPU GEMV body: with `r0` in scope, declares `s0 … s{rpt−1}`, the dot
 * products of W rows `r0 + j` (clamped) with the input; each input vec4 is loaded once for all
 * rows, K unrolled by 2. A thread whose rows all lie past the last returns at once.
 */
export function gemvRowsWgsl(o: GemvRowsSpec): string {
  // past the last row: no work (see gemmCode)
  const exit = `  if (r0 >= ${o.rows}) { return; }\n`;
  if (o.block) return exit + gemvBlockRowsWgsl(o, o.block);
  const U = 2, R = o.rpt;
  return exit + `  let K4 = (${o.K} + 3u) / 4u;
${each(R, (j) => `  let base${j} = min(r0 + ${j}u, ${o.rows} - 1u) * ${o.kStride4};`)}
${each(R, (j) => each(U, (u) => `  var a${j}_${u} = vec4<f32>(0.0);`))}
  var k4 = 0u;
  for (; k4 + ${U - 1}u < K4; k4 += ${U}u) {
${
    each(U, (u) =>
      `    { let x = ${o.x4(`k4 + ${u}u`)};
${each(R, (j) => `      a${j}_${u} += ${o.w4}(base${j} + k4 + ${u}u) * x;`)} }`)
  }
  }
  if (k4 < K4) {
    let x = ${o.x4("k4")};
${each(R, (j) => `    a${j}_0 += ${o.w4}(base${j} + k4) * x;`)}
  }
${
    each(R, (j) =>
      `  let t${j} = ${each(U, (u) => `a${j}_${u}`, " + ")};
  let s${j} = (t${j}.x + t${j}.y) + (t${j}.z + t${j}.w);`)
  }`;
}

/** {@link gemvRowsWgsl} over block-int8 weights, block by block (needs {@link I8X4_WGSL}). */
function gemvBlockRowsWgsl(o: GemvRowsSpec, b: { array: string; words: number }): string {
  const R = o.rpt, Q = b.words, W = b.array;
  return `  let blocks = (${o.K}) / ${4 * Q}u;
${each(R, (j) => `  let base${j} = min(r0 + ${j}u, ${o.rows} - 1u) * blocks * ${Q + 2}u;`)}
${each(R, (j) => `  var s${j} = 0.0;`)}
  for (var blk = 0u; blk < blocks; blk++) {
    let k4 = blk * ${Q}u;
${each(Q, (q) => `    let bx${q} = ${o.x4(`k4 + ${q}u`)};`)}
    let xsum = ${each(Q, (q) => `bx${q}`, " + ")};
    let bsum = (xsum.x + xsum.y) + (xsum.z + xsum.w);
    let at = blk * ${Q + 2}u;
${
    each(R, (j) =>
      `    { let a = base${j} + at;
      let d = ${each(Q, (q) => `i8x4(${W}[a + ${q}u]) * bx${q}`, " + ")};
      s${j} += bitcast<f32>(${W}[a + ${Q}u]) * ((d.x + d.y) + (d.z + d.w)) +
        bitcast<f32>(${W}[a + ${Q + 1}u]) * bsum; }`)
  }
  }`;
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
  const path = a.path ??
    (m === 1 ? "gemv" : ctx.kernels.gemm === "register" ? "gemm" : ctx.kernels.gemm);
  const v: MatmulVariant = {
    dtype: weightStorage(ctx, w.dtype),
    xVec: K % 4 === 0 && ldx % 4 === 0,
    bias: a.bias ? weightStorage(ctx, a.bias.dtype) : null,
    accumulate: a.accumulate ?? false,
    half: path !== "gemv" && (a.math ?? ctx.kernels.math) === "f16",
  };
  if (v.half && !ctx.features.shaderF16) {
    throw new Error("matmul: f16 arithmetic needs the shader-f16 feature, which this device lacks");
  }
  const vkey = `${v.dtype}:${v.xVec}:${v.bias}:${v.accumulate}${v.half ? ":f16math" : ""}`;
  const [TM, TN] = a.tile ?? gemmTile(m);
  if (!(TM >= 1 && TM <= 32 && TN >= 1 && TN <= 8)) {
    throw new RangeError(`matmul: GEMM tile ${TM}×${TN} outside 32×8`);
  }
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
      const rowsPerWg = tpr === 1 ? GEMV_ROWS_PER_THREAD * GEMV_WG : Math.max(1, 64 / tpr);
      const pipeline = ctx.pipeline(
        `gemv:${vkey}:${tpr}`,
        () =>
          tpr === 1
            ? gemvRowCode(v, GEMV_ROWS_PER_THREAD, GEMV_WG)
            : gemvReduceCode(v, tpr, rowsPerWg),
      );
      const wgs = grid2d(Math.ceil(seg.rows / rowsPerWg));
      return dispatchOp(ctx, { label, pipeline, params, buffers, workgroups: wgs });
    }
    if (path === "tiled" || path === "tiled128") {
      const shape = TILED_SHAPES[path];
      return dispatchOp(ctx, {
        label,
        pipeline: ctx.pipeline(`gemmTiled:${path}:${vkey}`, () => tiledGemmCode(v, shape)),
        params,
        buffers,
        workgroups: [Math.ceil(seg.rows / shape.block), Math.ceil(m / shape.block)],
      });
    }
    // threads per workgroup: 64, or the power of two ≥ 8 that covers a short segment
    const wg = Math.min(64, Math.max(8, 2 ** Math.ceil(Math.log2(Math.ceil(seg.rows / TN)))));
    const blocked = isBlockInt8(v.dtype) && !v.half;
    const pipeline = ctx.pipeline(
      `gemm:${vkey}:${TM}:${TN}:${wg}`,
      () => blocked ? gemmBlockCode(v, TM, TN, wg) : gemmCode(v, TM, TN, wg),
    );
    return dispatchOp(ctx, {
      label,
      pipeline,
      params,
      buffers,
      workgroups: [Math.ceil(seg.rows / (wg * TN)), Math.ceil(m / TM)],
    });
  });
  return ops.length === 1 ? ops[0] : sequenceOp(`matmul(${w.name})`, ops);
}
