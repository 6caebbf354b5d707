/**
 * Kernel micro-benchmarks: `deno bench --allow-read --allow-env bench/kernels_bench.ts`.
 * Each iteration encodes `REPS` dispatches into one pass and waits once, so the ≈ 10 ms
 * completion floor of Deno is amortised; divide the reported time by `REPS` (10 on CPU adapters,
 * 200 on GPUs, where ten dispatches took less than the floor itself).
 *
 * @module
 */

import { acquireDevice } from "../src/gpu/device.ts";
import { decodeAttention } from "../src/gpu/kernels/decodeAttention.ts";
import { flashPrefillAttention } from "../src/gpu/kernels/flashPrefillAttention.ts";
import { fusedGemv } from "../src/gpu/kernels/fusedGemv.ts";
import { matmul } from "../src/gpu/kernels/matmul.ts";
import { prefillAttention } from "../src/gpu/kernels/prefillAttention.ts";
import { quantConvert } from "../src/gpu/kernels/quantConvert.ts";
import { quantDecodeAttention } from "../src/gpu/kernels/quantDecodeAttention.ts";
import { createQuantKvLayer } from "../src/gpu/quantKvCache.ts";
import { workgroupPrefillAttention } from "../src/gpu/kernels/workgroupPrefillAttention.ts";
import { createKvCacheLayer } from "../src/gpu/kvCache.ts";
import { type GpuOp, runOps } from "../src/gpu/op.ts";
import { uploadMatrix, uploadVector } from "../src/gpu/weights.ts";

const ctx = await acquireDevice();
const REPS = ctx.isFallbackAdapter ? 10 : 200;

function bench(name: string, op: GpuOp): void {
  Deno.bench({
    name: `${name} ×${REPS}`,
    async fn() {
      runOps(ctx, Array(REPS).fill(op));
      await ctx.sync();
    },
  });
}

for (const dtype of ["F32", "F16", "BF16"] as const) {
  const [N, K] = [2048, 2048];
  const w = uploadMatrix(ctx, {
    dtype,
    shape: [N, K],
    data: new Uint8Array(N * K * (dtype === "F32" ? 4 : 2)),
  });
  const x = ctx.createBuffer(64 * K * 4), y = ctx.createBuffer(64 * N * 4);
  bench(`gemv ${dtype} 2048×2048`, matmul(ctx, { x, w, y, m: 1 }));
  bench(`gemm ${dtype} 64×2048×2048`, matmul(ctx, { x, w, y, m: 64 }));
  for (const path of ["tiled", "tiled128"] as const) {
    bench(`gemm (${path}) ${dtype} 64×2048×2048`, matmul(ctx, { x, w, y, m: 64, path }));
  }
  bench(
    `fusedGemv(rmsnorm) ${dtype} 2048×2048`,
    fusedGemv(ctx, {
      x,
      input: {
        kind: "norm",
        weight: uploadVector(ctx, { dtype: "F32", shape: [K], data: new Uint8Array(K * 4) }),
        eps: 1e-5,
      },
      outputs: [{ w, y }],
    }),
  );
}

{
  const [Hkv, H, D, L] = [8, 32, 64, 4096];
  const cache = createKvCacheLayer(ctx, {
    numKvHeads: Hkv,
    headDim: D,
    capacity: L,
    lengths: Array(Hkv).fill(L),
  });
  const q = ctx.createBuffer(128 * H * D * 4), out = ctx.createBuffer(128 * H * D * 4);
  for (const kernel of ["thread", "workgroup"] as const) {
    bench(
      `decodeAttention (${kernel}) H32/KV8 D64 L4096`,
      decodeAttention(ctx, { cache, q, out, numHeads: H, kernel }),
    );
  }
  // The same cache quantised to 4 bits (groups of 32, a residual of 32): the `quant` press's layout.
  const quant = createQuantKvLayer(ctx, {
    headDim: D,
    dtype: "f32",
    quant: { bits: 4, group: 32, residuals: Array(Hkv).fill(32) },
    maxEntries: Array(Hkv).fill(L),
  });
  runOps(ctx, [quantConvert(ctx, { src: cache, dst: quant })]);
  for (const kernel of ["thread", "workgroup"] as const) {
    bench(
      `quantDecodeAttention (${kernel}) 4-bit H32/KV8 D64 L4096`,
      quantDecodeAttention(ctx, { cache: quant, q, out, numHeads: H, kernel }),
    );
  }
  bench(
    `prefillAttention 128 queries H32/KV8 D64 L4096`,
    prefillAttention(ctx, { cache, q, out, m: 128, numHeads: H }),
  );
  bench(
    `workgroupPrefillAttention 128 queries H32/KV8 D64 L4096`,
    workgroupPrefillAttention(ctx, { cache, q, out, m: 128, numHeads: H }),
  );
  bench(
    `flashPrefillAttention 128 queries H32/KV8 D64 L4096`,
    flashPrefillAttention(ctx, { cache, q, out, m: 128, numHeads: H }),
  );
}

globalThis.addEventListener("unload", () => ctx.destroy());
