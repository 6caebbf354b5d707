import assert from "node:assert/strict";
import type { DType } from "../../src/model/types.ts";
import { matmul } from "../../src/gpu/kernels/matmul.ts";
import { uploadMatrix, uploadVector } from "../../src/gpu/weights.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { runGemmCase } from "./_gemmCase.ts";
import { assertClose, encode, randomF32, refMatmul, rng } from "./_reference.ts";

const DTYPES: DType[] = ["F32", "F16", "BF16"];

for (const dtype of DTYPES) {
  gpuTest(`matmul ${dtype}: GEMV and GEMM, odd sizes, bias, accumulate`, async (ctx) => {
    const rand = rng(7);
    for (const [m, n, k] of [[1, 37, 29], [1, 64, 128], [5, 19, 33], [7, 70, 64], [33, 9, 3]]) {
      const w = encode(randomF32(rand, n * k), dtype);
      const bias = encode(randomF32(rand, n), dtype);
      const x = randomF32(rand, m * k);
      const y0 = randomF32(rand, m * n);
      const W = uploadMatrix(ctx, { dtype, shape: [n, k], data: w.bytes, name: "w" });
      const B = uploadVector(ctx, { dtype, shape: [n], data: bias.bytes, name: "b" });
      const X = ctx.upload(x);
      const Y = ctx.createBuffer(m * n * 4);
      const Yacc = ctx.upload(y0);
      runAndFree(ctx, [
        matmul(ctx, { x: X, w: W, y: Y, m, bias: B }),
        matmul(ctx, { x: X, w: W, y: Yacc, m, accumulate: true }),
      ]);
      const want = refMatmul(x, w.values, m, n, k, bias.values);
      const tol = 1e-5 * k;
      assertClose(await ctx.readF32(Y, 0, m * n), want, tol, 1e-5, `y[${m},${n},${k}]`);
      const wantAcc = refMatmul(x, w.values, m, n, k).map((v, i) => v + y0[i]);
      assertClose(await ctx.readF32(Yacc, 0, m * n), wantAcc, tol, 1e-5, "y+=");
    }
  });
}

gpuTest(
  "matmul F32/F16/BF16: weights split over several bindings (GEMV and GEMM agree with reference)",
  async (ctx) => {
    const rand = rng(11);
    for (const dtype of DTYPES) {
      const [n, k] = [45, 21];
      const w = encode(randomF32(rand, n * k), dtype);
      // 24-element rows, 7 rows per segment at most
      const W = uploadMatrix(ctx, { dtype, shape: [n, k], data: w.bytes, name: "w" }, {
        maxBindingBytes: 7 * 24 * (dtype === "F32" ? 4 : 2) + 3,
      });
      assert.ok(W.segments.length >= 7, `expected many segments, got ${W.segments.length}`);
      for (const s of W.segments) {
        assert.equal(
          s.offset % ctx.limits.minStorageBufferOffsetAlignment,
          0,
        );
      }
      for (const m of [1, 6]) {
        const x = randomF32(rand, m * k);
        const X = ctx.upload(x);
        const Y = ctx.createBuffer(m * n * 4);
        runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m })]);
        assertClose(await ctx.readF32(Y, 0, m * n), refMatmul(x, w.values, m, n, k), 1e-4, 1e-5);
      }
    }
  },
);

gpuTest("matmul: the GEMM path also handles m = 1 and row strides", async (ctx) => {
  const rand = rng(3);
  const [m, n, k] = [3, 10, 8];
  const w = encode(randomF32(rand, n * k), "BF16");
  const W = uploadMatrix(ctx, { dtype: "BF16", shape: [n, k], data: w.bytes });
  // x rows padded to 12, y rows padded to 16
  const x = randomF32(rand, m * 12);
  const X = ctx.upload(x);
  const Y = ctx.createBuffer(m * 16 * 4);
  runAndFree(ctx, [
    matmul(ctx, { x: X, w: W, y: Y, m, xRowStride: 12, yRowStride: 16, path: "gemm" }),
  ]);
  const y = await ctx.readF32(Y, 0, m * 16);
  const xs = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) xs[i * k + j] = x[i * 12 + j];
  const want = refMatmul(xs, w.values, m, n, k);
  for (let i = 0; i < m; i++) {
    assertClose(y.subarray(i * 16, i * 16 + n), want.subarray(i * n, i * n + n), 1e-5, 1e-5);
  }
});

gpuTest(
  "matmul F32/F16/BF16: GEMV with several threads per row (the GPU configuration)",
  async (ctx) => {
    const rand = rng(13);
    for (const dtype of DTYPES) {
      for (const threadsPerRow of [2, 16, 64]) {
        const [n, k] = [29, 203];
        const w = encode(randomF32(rand, n * k), dtype);
        const bias = encode(randomF32(rand, n), dtype);
        const W = uploadMatrix(ctx, { dtype, shape: [n, k], data: w.bytes });
        const B = uploadVector(ctx, { dtype, shape: [n], data: bias.bytes });
        const x = randomF32(rand, k);
        const X = ctx.upload(x), Y = ctx.createBuffer(n * 4);
        runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m: 1, bias: B, threadsPerRow })]);
        const want = refMatmul(x, w.values, 1, n, k, bias.values);
        assertClose(await ctx.readF32(Y, 0, n), want, 1e-4, 1e-5, `${dtype} tpr ${threadsPerRow}`);
      }
    }
  },
);

gpuTest("matmul: GEMM register tiles and GEMV threads per row, odd sizes", async (ctx) => {
  const rand = rng(23);
  for (const dtype of ["F32", "BF16"] as DType[]) {
    for (const [m, n, k] of [[37, 301, 45], [130, 70, 64], [2, 5, 7]]) {
      const w = encode(randomF32(rand, n * k), dtype);
      const x = randomF32(rand, m * k);
      const W = uploadMatrix(ctx, { dtype, shape: [n, k], data: w.bytes, name: "w" });
      const X = ctx.upload(x);
      const want = refMatmul(x, w.values, m, n, k);
      for (
        const tile of [[16, 8], [8, 8], [16, 4], [3, 5], [1, 1], [32, 2]] as [number, number][]
      ) {
        const Y = ctx.createBuffer(m * n * 4);
        runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m, tile, path: "gemm" })]);
        assertClose(await ctx.readF32(Y, 0, m * n), want, 1e-5 * k, 1e-5, `tile ${tile} ${m}`);
      }
      for (const threadsPerRow of [1, 8]) {
        const Y = ctx.createBuffer(n * 4);
        runAndFree(ctx, [matmul(ctx, { x: X, w: W, y: Y, m: 1, threadsPerRow })]);
        assertClose(await ctx.readF32(Y, 0, n), want.subarray(0, n), 1e-5 * k, 1e-5, "gemv");
      }
    }
  }
});

for (const path of ["tiled", "tiled128"] as const) {
  gpuTest(
    `matmul F32/F16/BF16: the ${path} GEMM (workgroup-memory tiles) on odd sizes, segments, bias, accumulate`,
    async (ctx) => {
      const rand = rng(29);
      for (const dtype of DTYPES) {
        // Sizes around both block sizes (64, 128) and the K slices (16, 8).
        for (
          const [m, n, k] of [[1, 5, 3], [65, 130, 70], [64, 64, 16], [3, 200, 33], [130, 9, 129], [
            129,
            257,
            24,
          ]]
        ) {
          const { w, bias, x, y0, y, yAcc, segments } = await runGemmCase(ctx, rand, dtype, [
            m,
            n,
            k,
          ], { path });
          const what = `${dtype} [${m},${n},${k}] (${segments} segments)`;
          const want = refMatmul(x, w.values, m, n, k, bias.values);
          assertClose(y, want, 1e-5 * k, 1e-5, what);
          const wantAcc = refMatmul(x, w.values, m, n, k).map((v, i) => v + y0[i]);
          assertClose(yAcc, wantAcc, 1e-5 * k, 1e-5, `${what} y+=`);
        }
      }
    },
  );
}
