import { swiglu } from "../../src/gpu/kernels/swiglu.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, rng } from "./_reference.ts";

gpuTest("swiglu: separate buffers and a fused gate/up buffer", async (ctx) => {
  const rand = rng(2);
  const [m, n] = [3, 37];
  const g = randomF32(rand, m * n, 8), u = randomF32(rand, m * n, 2);
  const want = Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]);
  const G = ctx.upload(g), U = ctx.upload(u), out = ctx.createBuffer(m * n * 4);
  // fused: row m = [gate(n) | up(n)]
  const fused = new Float32Array(m * 2 * n);
  for (let r = 0; r < m; r++) {
    fused.set(g.subarray(r * n, r * n + n), r * 2 * n);
    fused.set(u.subarray(r * n, r * n + n), r * 2 * n + n);
  }
  const F = ctx.upload(fused), out2 = ctx.createBuffer(m * n * 4);
  runAndFree(ctx, [
    swiglu(ctx, { gate: G, up: U, out, m, n }),
    swiglu(ctx, {
      gate: F,
      up: F,
      out: out2,
      m,
      n,
      upOffset: n,
      gateRowStride: 2 * n,
      upRowStride: 2 * n,
    }),
  ]);
  assertClose(await ctx.readF32(out, 0, m * n), want, 1e-5, 1e-5, "swiglu");
  assertClose(await ctx.readF32(out2, 0, m * n), want, 1e-5, 1e-5, "swiglu fused");
});
