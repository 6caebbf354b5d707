/**
 * One random GEMM case for the matmul tests: weights (in several segments when W has more than 64
 * rows), a bias, x and a prior y, run as `y = x·Wᵀ + b` and `y₀ += x·Wᵀ` with the given options.
 *
 * @module
 */

import type { DType } from "../../src/model/types.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import { matmul, type MatmulArgs } from "../../src/gpu/kernels/matmul.ts";
import { uploadMatrix, uploadVector } from "../../src/gpu/weights.ts";
import { runAndFree } from "./_gpu.ts";
import { encode, randomF32 } from "./_reference.ts";

/** Inputs (as the GPU sees them) and both outputs of {@link runGemmCase}. */
export interface GemmCase {
  /** W `[n, k]` encoded in the dtype, with its rounded values. */
  w: { values: Float64Array };
  /** Bias `[n]`, rounded to the dtype. */
  bias: { values: Float64Array };
  /** x `[m, k]`. */
  x: Float32Array;
  /** y before the accumulating run `[m, n]`. */
  y0: Float32Array;
  /** `x·Wᵀ + b`. */
  y: Float32Array;
  /** `y0 + x·Wᵀ`. */
  yAcc: Float32Array;
  /** Weight segments the matrix was split into. */
  segments: number;
}

/** Runs one random `[m, n, k]` case of `dtype` through `matmul` with `opts` (path, math, …). */
export async function runGemmCase(
  ctx: GpuContext,
  rand: () => number,
  dtype: DType,
  [m, n, k]: number[],
  opts: Pick<MatmulArgs, "path" | "math"> = {},
): Promise<GemmCase> {
  const w = encode(randomF32(rand, n * k), dtype);
  const bias = encode(randomF32(rand, n), dtype);
  const x = randomF32(rand, m * k), y0 = randomF32(rand, m * n);
  // Several weight segments for the larger shapes (rows of at most 40).
  const rowBytes = Math.ceil(k / 4) * 4 * (dtype === "F32" ? 4 : 2);
  const W = uploadMatrix(ctx, { dtype, shape: [n, k], data: w.bytes, name: "w" }, {
    maxBindingBytes: n > 64 ? 40 * rowBytes : undefined,
  });
  const B = uploadVector(ctx, { dtype, shape: [n], data: bias.bytes, name: "b" });
  const X = ctx.upload(x), Y = ctx.createBuffer(m * n * 4), Yacc = ctx.upload(y0);
  runAndFree(ctx, [
    matmul(ctx, { x: X, w: W, y: Y, m, bias: B, ...opts }),
    matmul(ctx, { x: X, w: W, y: Yacc, m, accumulate: true, ...opts }),
  ]);
  const y = await ctx.readF32(Y, 0, m * n), yAcc = await ctx.readF32(Yacc, 0, m * n);
  return { w, bias, x, y0, y, yAcc, segments: W.segments.length };
}
