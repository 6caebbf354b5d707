/**
 * H2O's prefill column sums (`h2oColumnSums.ts`) against float64 column sums of the causal softmax:
 * GQA groups that block one, two and four heads per thread, chunks that are not multiples of the
 * kernels' tiles, KV heads at different offsets of the cache, keys past `stride` left alone, an f16
 * cache, and key and query ranges split across dispatches.
 */
import type { GpuContext } from "../../src/gpu/device.ts";
import { createKvCacheLayer, type KvDType, releaseKvCacheLayer } from "../../src/gpu/kvCache.ts";
import { h2oColumnSums } from "../../src/gpu/kernels/h2oColumnSums.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

interface Shape {
  Hkv: number;
  H: number;
  D: number;
  chunks: number[];
  /** Keys per head in the sums (the prompt length unless smaller). */
  stride?: number;
  dtype?: KvDType;
  keysPerDispatch?: number;
  queriesPerDispatch?: number;
}

/** Σ over the queries i ≥ j of softmax_i(j), per query head, `[H][stride]`, in float64. */
function referenceSums(q: Float32Array, k: Float32Array, s: Shape, N: number, scale: number) {
  const { H, Hkv, D } = s, group = H / Hkv, stride = s.stride ?? N;
  const row = (x: Float32Array, heads: number, j: number, h: number) =>
    x.subarray((j * heads + h) * D, (j * heads + h + 1) * D);
  const want = new Float64Array(H * stride);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < N; i++) {
      const keys = Array.from({ length: i + 1 }, (_, j) => row(k, Hkv, j, Math.floor(h / group)));
      const { probs } = refAttend(row(q, H, i, h), keys, keys, scale);
      probs.forEach((p, j) => j < stride && (want[h * stride + j] += p));
    }
  }
  return want;
}

async function check(ctx: GpuContext, s: Shape, seed: number): Promise<void> {
  const { Hkv, H, D } = s;
  const N = s.chunks.reduce((a, b) => a + b, 0), stride = s.stride ?? N;
  const scale = 0.8 / Math.sqrt(D);
  const rand = rng(seed);
  const k = randomF32(rand, N * Hkv * D, 0.5);
  const q = randomF32(rand, N * H * D, 0.5);
  const keysSeen = s.dtype === "f16" ? k.map(Math.f16round) : k;
  const want = referenceSums(q, keysSeen, s, N, scale);
  {
    // KV head h holds N + 3h rows, so the heads start at different offsets of the buffers.
    const capacity = Array.from({ length: Hkv }, (_, h) => N + 3 * h);
    const cache = createKvCacheLayer(ctx, {
      numKvHeads: Hkv,
      headDim: D,
      capacity,
      dtype: s.dtype,
    });
    const sums = ctx.createBuffer(H * stride * 4);
    try {
      let start = 0;
      for (const m of s.chunks) {
        const kc = k.slice(start * Hkv * D, (start + m) * Hkv * D);
        runAndFree(ctx, [
          kvAppend(ctx, { cache, k: ctx.upload(kc), v: ctx.upload(kc), m }),
          h2oColumnSums(ctx, {
            cache,
            q: ctx.upload(q.slice(start * H * D, (start + m) * H * D)),
            m,
            numHeads: H,
            scale,
            sums,
            stride,
            keysPerDispatch: s.keysPerDispatch,
            queriesPerDispatch: s.queriesPerDispatch,
          }),
        ]);
        start += m;
      }
      assertClose(await ctx.readF32(sums), want, 2e-5, 2e-4, JSON.stringify(s));
    } finally {
      releaseKvCacheLayer(ctx, cache);
      ctx.release(sums);
    }
  }
}

gpuTest("h2oColumnSums: GQA groups of 3, 4 and 2 heads, chunks off the tiles", async (ctx) => {
  // 9 query / 3 KV heads (SmolLM2's group: one head per thread, 8 queries), 8 / 2 (four heads,
  // two queries), 4 / 2 (two heads, four queries); the first chunk leaves most tiles partial.
  await check(ctx, { Hkv: 3, H: 9, D: 16, chunks: [37, 20, 1] }, 1);
  await check(ctx, { Hkv: 2, H: 8, D: 32, chunks: [50, 33] }, 2);
  await check(ctx, { Hkv: 2, H: 4, D: 64, chunks: [16, 48, 7] }, 3);
});

gpuTest(
  "h2oColumnSums: keys past the stride, an f16 cache, ranges split across dispatches",
  async (ctx) => {
    await check(ctx, { Hkv: 1, H: 2, D: 16, chunks: [40, 30], stride: 51 }, 4);
    await check(ctx, { Hkv: 2, H: 4, D: 32, chunks: [45, 40], dtype: "f16" }, 5);
    // Stats over key ranges of 16 and 32, accumulation over query ranges of 16.
    await check(ctx, {
      Hkv: 3,
      H: 9,
      D: 16,
      chunks: [70, 35],
      keysPerDispatch: 16,
      queriesPerDispatch: 16,
    }, 6);
    await check(ctx, {
      Hkv: 2,
      H: 8,
      D: 32,
      chunks: [64, 41],
      keysPerDispatch: 32,
      queriesPerDispatch: 32,
    }, 7);
  },
);

gpuTest(
  "h2oColumnSums at head_dim 256 over 1,100 keys, in one key range and in ranges of 256",
  async (ctx) => {
    await check(ctx, { Hkv: 1, H: 2, D: 256, chunks: [600, 500] }, 31);
    await check(ctx, { Hkv: 1, H: 2, D: 256, chunks: [600, 500], keysPerDispatch: 256 }, 31);
  },
);
