import type { DType } from "../../src/model/types.ts";
import { fusedGemv } from "../../src/gpu/kernels/fusedGemv.ts";
import { uploadMatrix, uploadVector } from "../../src/gpu/weights.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, encode, encodeBlocks, randomF32, refMatmul, rng } from "./_reference.ts";

for (const dtype of ["F32", "F16", "BF16", "I8x32", "I8x16"] as DType[]) {
  gpuTest(
    `fusedGemv ${dtype}: rmsnorm / swiglu / plain input, 1–3 projections, odd rows, 1, 16 or 64 threads per row`,
    async (ctx) => {
      for (const threadsPerRow of [1, 16, 64]) await check(ctx, dtype, threadsPerRow);
    },
  );
}

/** Every input kind and output count at two K, for one dtype and GEMV body. */
async function check(ctx: GpuContext, dtype: DType, threadsPerRow: number) {
  const rand = rng(41);
  const blocks = dtype === "I8x32" || dtype === "I8x16" ? dtype : null;
  for (const K of blocks ? [64, 256] : [36, 260]) {
    const rows = [37, 5, 130];
    const ws = rows.map((n) =>
      blocks ? encodeBlocks(randomF32(rand, n * K), blocks) : encode(randomF32(rand, n * K), dtype)
    );
    const W = ws.map((w, i) =>
      uploadMatrix(ctx, { dtype, shape: [rows[i], K], data: w.bytes, name: `w${i}` })
    );
    // norm weights stay float (GGUF keeps 1-D tensors in F32)
    const gDtype = blocks ? "F32" : dtype;
    const g = encode(randomF32(rand, K, 2), gDtype);
    const G = uploadVector(ctx, { dtype: gDtype, shape: [K], data: g.bytes, name: "g" });
    const x = randomF32(rand, K, 3), up = randomF32(rand, K, 2);
    const X = ctx.upload(x), U = ctx.upload(up);
    const y0 = rows.map((n) => randomF32(rand, n));
    const eps = 1e-5;
    // float64 references of the three input steps
    const rms = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / K + eps);
    const inputs = {
      norm: Array.from(x, (v, i) => v * rms * g.values[i]),
      swiglu: Array.from(x, (v, i) => (v / (1 + Math.exp(-v))) * up[i]),
      plain: Array.from(x),
    };
    for (const kind of ["norm", "swiglu", "plain"] as const) {
      for (const n of [3, 2, 1]) {
        const Y = y0.slice(0, n).map((y) => ctx.upload(y));
        const accumulate = n === 1;
        const input = kind === "norm"
          ? { kind, weight: G, eps }
          : kind === "swiglu"
          ? { kind, up: U }
          : { kind };
        runAndFree(ctx, [fusedGemv(ctx, {
          x: X,
          input,
          outputs: Y.map((y, i) => ({ w: W[i], y, accumulate })),
          threadsPerRow,
        })]);
        for (let i = 0; i < n; i++) {
          const want = refMatmul(inputs[kind], ws[i].values, 1, rows[i], K)
            .map((v, r) => v + (accumulate ? y0[i][r] : 0));
          const got = await ctx.readF32(Y[i], 0, rows[i]);
          assertClose(
            got,
            want,
            2e-5 * K,
            1e-4,
            `${kind} K${K} n${n} out ${i}, ${threadsPerRow} threads per row`,
          );
        }
      }
    }
  }
}
