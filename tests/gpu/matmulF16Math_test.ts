/**
 * f16 arithmetic in the prefill GEMMs (`math=f16`, `shader-f16`): the register, tiled and tiled128
 * GEMMs, on every weight dtype, equal the float64 product of the f16-rounded operands within the
 * rounding of their f16 partial sums (4, 16 and 8 elements of K); they really add in f16 within a
 * partial and in f32 across partials (exact cases), and differ from the exact product by far more
 * than the f32 GEMM does. Ignored, with a message, on adapters without `shader-f16`.
 */
import assert from "node:assert/strict";
import type { DType } from "../../src/model/types.ts";
import { acquireDevice } from "../../src/gpu/device.ts";
import { matmul } from "../../src/gpu/kernels/matmul.ts";
import { uploadMatrix } from "../../src/gpu/weights.ts";
import { GPU_AVAILABLE, runAndFree } from "./_gpu.ts";
import { runGemmCase } from "./_gemmCase.ts";
import { encode, randomF32, refMatmul, rng } from "./_reference.ts";

const HAS_F16 = GPU_AVAILABLE &&
  ((await navigator.gpu.requestAdapter())?.features.has("shader-f16") ?? false);
if (GPU_AVAILABLE && !HAS_F16) {
  console.warn("SKIP: the adapter has no shader-f16; the math=f16 GEMM tests are ignored.");
}

/** f16's unit roundoff (2⁻¹¹). */
const U16 = 2 ** -11;

/** Elements of K summed in f16 before promotion to f32, per GEMM. */
const PARTIAL = { gemm: 4, tiled: 16, tiled128: 8 } as const;

/** `|x̂|·|ŵ|ᵀ` in float64: the scale of each output's rounding error. */
function absProducts(x: Float64Array, w: Float64Array, m: number, n: number, k: number) {
  return refMatmul(x.map(Math.abs), w.map(Math.abs), m, n, k);
}

for (const path of ["gemm", "tiled", "tiled128"] as const) {
  Deno.test({
    name: `matmul math=f16: the ${path} GEMM stays within f16 rounding of the f16 operands`,
    ignore: !HAS_F16,
    async fn() {
      const ctx = await acquireDevice();
      try {
        const rand = rng(41);
        const dtypes: DType[] = ["F32", "F16", "BF16"];
        for (const dtype of dtypes) {
          for (const [m, n, k] of [[5, 19, 33], [65, 130, 70], [33, 9, 3], [130, 9, 129]]) {
            const { w, bias, x, y0, y: got, yAcc: gotAcc } = await runGemmCase(ctx, rand, dtype, [
              m,
              n,
              k,
            ], { path, math: "f16" });
            const what = `${dtype} [${m},${n},${k}]`;
            // The operands as the kernel multiplies them: rounded to f16.
            const xh = Float64Array.from(x, Math.f16round);
            const wh = w.values.map(Math.f16round);
            const exact = refMatmul(xh, wh, m, n, k);
            const scale = absProducts(xh, wh, m, n, k);
            for (let i = 0; i < m * n; i++) {
              // Each partial of p products: p roundings of products and sums, each ≤ U16 of the
              // partial's Σ|x̂ŵ|; f32 promotion and the bias add are far below that.
              const tol = (PARTIAL[path] + 1) * U16 * scale[i] + 1e-5;
              const want = exact[i] + bias.values[i % n];
              assert.ok(Math.abs(got[i] - want) <= tol, `${what} y[${i}] ${got[i]} vs ${want}`);
              const wantAcc = exact[i] + y0[i];
              assert.ok(Math.abs(gotAcc[i] - wantAcc) <= tol, `${what} y+=[${i}]`);
            }
            // f16 really ran: against the unrounded product the error is f16-sized (the f32
            // GEMM stays below 1e-5 · k here, see matmul_test.ts).
            if (k >= 16) {
              const unrounded = refMatmul(x, w.values, m, n, k, bias.values);
              const worst = Math.max(...got.map((v, i) => Math.abs(v - unrounded[i])));
              assert.ok(worst > 20e-5, `${what}: max error ${worst} looks like f32 arithmetic`);
            }
          }
        }
        // Exact cases: 32·32 + 0.5·0.5 within one partial is 1024 in f16 (its spacing at 1024
        // is 1) but 1024.25 in f32; with the 0.25 sixteen elements later (another partial of
        // every GEMM) the f32 accumulator keeps it.
        {
          const [m, n, k] = [20, 8, 40];
          const x = new Float32Array(m * k), w = new Float32Array(n * k);
          for (let i = 0; i < m; i++) x.set([32, 0.5], i * k), x[i * k + 16] = 0.5;
          w.set([32, 0.5]), w.set([32], k), w[k + 16] = 0.5;
          const W = uploadMatrix(ctx, {
            dtype: "F32",
            shape: [n, k],
            data: encode(w, "F32").bytes,
          });
          const X = ctx.upload(x), Y = ctx.createBuffer(m * n * 4);
          runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m, path, math: "f16" })]);
          const y = await ctx.readF32(Y, 0, m * n);
          for (let i = 0; i < m; i++) {
            assert.deepEqual([y[i * n], y[i * n + 1]], [1024, 1024.25], `exact case, row ${i}`);
          }
        }
        // The pipelines that ran were the f16 ones.
        assert.ok(
          ctx.pipelineKeys().every((key) => key.includes(":f16math")),
          `${ctx.pipelineKeys()}`,
        );
        ctx.check();
      } finally {
        ctx.destroy();
      }
    },
  });
}

Deno.test({
  name: "matmul math=f16 leaves the GEMV in f32",
  ignore: !HAS_F16,
  async fn() {
    const ctx = await acquireDevice({ kernels: { math: "f16" } });
    try {
      const [n, k] = [24, 64];
      const rand = rng(5);
      const w = encode(randomF32(rand, n * k), "F32"), x = randomF32(rand, k);
      const W = uploadMatrix(ctx, { dtype: "F32", shape: [n, k], data: w.bytes, name: "w" });
      const X = ctx.upload(x), Y = ctx.createBuffer(n * 4);
      runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m: 1 })]);
      const want = refMatmul(x, w.values, 1, n, k);
      const got = await ctx.readF32(Y, 0, n);
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-5, `y[${i}] ${v} vs ${want[i]}`));
      assert.ok(!ctx.pipelineKeys().some((key) => key.includes(":f16math")));
    } finally {
      ctx.destroy();
    }
  },
});
