import type { DType } from "../../src/model/types.ts";
import { rmsNorm } from "../../src/gpu/kernels/rmsNorm.ts";
import { uploadVector } from "../../src/gpu/weights.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, encode, randomF32, rng } from "./_reference.ts";

for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
  gpuTest(`rmsNorm ${dtype}: odd and large H`, async (ctx) => {
    const rand = rng(9);
    for (const [m, H] of [[1, 7], [3, 130], [2, 1000]]) {
      const x = randomF32(rand, m * H, 3);
      const w = encode(randomF32(rand, H, 2), dtype);
      const eps = 1e-5;
      const W = uploadVector(ctx, { dtype, shape: [H], data: w.bytes, name: "norm" });
      const X = ctx.upload(x);
      const out = ctx.createBuffer(m * H * 4);
      runAndFree(ctx, [rmsNorm(ctx, { x: X, weight: W, out, m, eps })]);
      const want = new Float64Array(m * H);
      for (let r = 0; r < m; r++) {
        let s = 0;
        for (let i = 0; i < H; i++) s += x[r * H + i] ** 2;
        const inv = 1 / Math.sqrt(s / H + eps);
        for (let i = 0; i < H; i++) want[r * H + i] = x[r * H + i] * inv * w.values[i];
      }
      assertClose(await ctx.readF32(out, 0, m * H), want, 1e-5, 1e-5, `rmsNorm[${m},${H}]`);
    }
  });
}
