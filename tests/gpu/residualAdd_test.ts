import { residualAdd } from "../../src/gpu/kernels/residualAdd.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, rng } from "./_reference.ts";

gpuTest("residualAdd: acc += x, odd length", async (ctx) => {
  const rand = rng(1);
  const n = 1001;
  const a = randomF32(rand, n), b = randomF32(rand, n);
  const A = ctx.upload(a), B = ctx.upload(b);
  runAndFree(ctx, [residualAdd(ctx, { acc: A, x: B, n })]);
  assertClose(await ctx.readF32(A, 0, n), Array.from(a, (v, i) => Math.fround(v + b[i])), 0);
});
