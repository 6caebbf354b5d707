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
import { type GpuOp, runOps, sequenceOp } from "../src/gpu/op.ts";
import { rmsNorm } from "../src/gpu/kernels/rmsNorm.ts";
import { swiglu } from "../src/gpu/kernels/swiglu.ts";
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
  // One decode MLP block of the '1b' shape (hidden 2048, MLP 8192, bf16): RMSNorm, gate, up,
  // SwiGLU and down as five dispatches, or fused into two (`fusion=fused`, fusedGemv.ts).
  const [Hd, I] = [2048, 8192];
  const mat = (rows: number, cols: number) =>
    uploadMatrix(ctx, {
      dtype: "BF16",
      shape: [rows, cols],
      data: new Uint8Array(rows * cols * 2),
    });
  const [gate, up, down] = [mat(I, Hd), mat(I, Hd), mat(Hd, I)];
  const norm = uploadVector(ctx, { dtype: "BF16", shape: [Hd], data: new Uint8Array(Hd * 2) });
  const f32 = (n: number) => ctx.createBuffer(n * 4);
  const [x, xn, g, u, act] = [f32(Hd), f32(Hd), f32(I), f32(I), f32(I)];
  bench(
    "decode MLP 2048→8192→2048 bf16, separate (5 dispatches)",
    sequenceOp("mlp", [
      rmsNorm(ctx, { x, weight: norm, out: xn, m: 1, eps: 1e-5 }),
      matmul(ctx, { x: xn, w: gate, y: g, m: 1 }),
      matmul(ctx, { x: xn, w: up, y: u, m: 1 }),
      swiglu(ctx, { gate: g, up: u, out: act, m: 1, n: I }),
      matmul(ctx, { x: act, w: down, y: x, m: 1, accumulate: true }),
    ]),
  );
  bench(
    "decode MLP 2048→8192→2048 bf16, fused (2 dispatches)",
    sequenceOp("mlp", [
      fusedGemv(ctx, {
        x,
        input: { kind: "norm", weight: norm, eps: 1e-5 },
        outputs: [{ w: gate, y: g }, { w: up, y: u }],
      }),
      fusedGemv(ctx, {
        x: g,
        input: { kind: "swiglu", up: u },
        outputs: [{ w: down, y: x, accumulate: true }],
      }),
    ]),
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
    quant: { kbits: 4, vbits: 4, group: 32, residuals: Array(Hkv).fill(32) },
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
