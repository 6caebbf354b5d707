/**
 * Block-int8 weights (GGUF's quantized matrices on the GPU, `src/model/blockInt8.ts`) through
 * every kernel that reads weights: GEMV and GEMM (register, tiled, tiled128; rows and reduce
 * GEMVs), over weights split across bindings, and the embedding lookup — against float64 over
 * the values the CPU decodes from the same bytes.
 */
import assert from "node:assert/strict";
import type { KernelChoice } from "../../src/gpu/kernelChoice.ts";
import { embedding } from "../../src/gpu/kernels/embedding.ts";
import { matmul } from "../../src/gpu/kernels/matmul.ts";
import { uploadMatrix } from "../../src/gpu/weights.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, encodeBlocks, randomF32, refMatmul, rng } from "./_reference.ts";

const VARIANTS: Partial<KernelChoice>[] = [
  {},
  { gemm: "tiled", gemv: "reduce" },
  { gemm: "tiled128", fusion: "separate" },
];

for (const dtype of ["I8x32", "I8x16"] as const) {
  for (const kernels of VARIANTS) {
    gpuTest(
      `block-int8 ${dtype} weights, ${JSON.stringify(kernels)}: GEMV and GEMM, split bindings`,
      async (ctx) => {
        const rand = rng(dtype === "I8x32" ? 41 : 42);
        const cases: [number, number, number, boolean][] = [
          [1, 37, 96, false],
          [5, 70, 64, false],
          [33, 45, 32, true],
        ];
        for (const [m, n, k, split] of cases) {
          const w = encodeBlocks(randomF32(rand, n * k), dtype);
          const rowBytes = w.bytes.length / n;
          const W = uploadMatrix(
            ctx,
            { dtype, shape: [n, k], data: w.bytes, name: "w" },
            split ? { maxBindingBytes: 6 * rowBytes + 3 } : {},
          );
          if (split) assert.ok(W.segments.length >= 7, `${W.segments.length} segments`);
          const x = randomF32(rand, m * k);
          const Y = ctx.createBuffer(m * n * 4);
          runAndFree(ctx, [matmul(ctx, { x: ctx.upload(x), w: W, y: Y, m })]);
          const want = refMatmul(x, w.values, m, n, k);
          assertClose(await ctx.readF32(Y), want, 1e-5 * k, 1e-5, `[${m},${n},${k}]`);
        }
      },
      { kernels },
    );
  }

  gpuTest(`block-int8 ${dtype} embedding table, split over bindings`, async (ctx) => {
    const rand = rng(43);
    const [V, H] = [53, 64];
    const t = encodeBlocks(randomF32(rand, V * H), dtype);
    for (const maxBindingBytes of [undefined, 5 * (t.bytes.length / V)]) {
      const table = uploadMatrix(ctx, { dtype, shape: [V, H], data: t.bytes, name: "emb" }, {
        maxBindingBytes,
      });
      const ids = [0, 52, 7, 7, 31, 16, 1];
      const out = ctx.createBuffer(ids.length * H * 4);
      runAndFree(ctx, [
        embedding(ctx, { table, ids: ctx.upload(new Uint32Array(ids)), m: ids.length, out }),
      ]);
      const want = ids.flatMap((id) => Array.from(t.values.subarray(id * H, id * H + H)));
      // scale · code + min may be fused on the GPU: within one rounding of the CPU's value
      assertClose(await ctx.readF32(out), want, 1e-7, 1e-6, "embedding");
    }
  });
}
