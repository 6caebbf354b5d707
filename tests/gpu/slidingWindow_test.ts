/**
 * The sliding window of the prefill attention kernels (Gemma 3's sliding layers, which also
 * decode through them): query row r sees only keys r − W + 1 … r. Every kernel, with several
 * block shapes and key ranges per dispatch, against the reference attention over exactly those
 * keys, observation-window probabilities included (zero outside the window); W = 0 is the plain
 * causal attention.
 */
import { flashPrefillAttention } from "../../src/gpu/kernels/flashPrefillAttention.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import {
  prefillAttention,
  type PrefillAttentionArgs,
} from "../../src/gpu/kernels/prefillAttention.ts";
import { workgroupPrefillAttention } from "../../src/gpu/kernels/workgroupPrefillAttention.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import type { GpuOp } from "../../src/gpu/op.ts";
import { createKvCacheLayer } from "../../src/gpu/kvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { RefKvCache } from "./_kvReference.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

type Kernel = (ctx: GpuContext, a: PrefillAttentionArgs) => GpuOp;

const KERNELS: Array<[string, Kernel]> = [
  ["thread", prefillAttention],
  ["workgroup", workgroupPrefillAttention],
  ["flash", flashPrefillAttention],
  [
    "flash 3×1 blocks, 16 keys per dispatch",
    (ctx, a) =>
      flashPrefillAttention(ctx, {
        ...a,
        queriesPerThread: 3,
        headsPerThread: 1,
        keysPerDispatch: 16,
      }),
  ],
  [
    "flash 1×2 blocks, 32 keys per dispatch",
    (ctx, a) =>
      flashPrefillAttention(ctx, {
        ...a,
        queriesPerThread: 1,
        headsPerThread: 2,
        keysPerDispatch: 32,
      }),
  ],
];

for (const [name, kernel] of KERNELS) {
  for (const W of [0, 5, 16, 40]) {
    gpuTest(`sliding window ${W}: prefill attention (${name}) over chunks`, async (ctx) => {
      const rand = rng(11 + W);
      const Hkv = 2, group = 2, H = Hkv * group, D = 16, scale = 0.3;
      const cap = 80;
      const cache = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: cap });
      const ref = new RefKvCache(Hkv, "f32");
      for (const [m, window] of [[23, 4], [17, 0], [1, 1], [30, 6]]) {
        const k = randomF32(rand, m * Hkv * D, 2), v = randomF32(rand, m * Hkv * D);
        const q = randomF32(rand, m * H * D, 2);
        const out = ctx.createBuffer(m * H * D * 4);
        const obsStride = cap;
        const obs = ctx.createBuffer(Math.max(1, H * window * obsStride) * 4);
        runAndFree(ctx, [
          kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m }),
          kernel(ctx, {
            cache,
            q: ctx.upload(q),
            out,
            m,
            numHeads: H,
            scale,
            window,
            obs: window ? obs : undefined,
            obsStride,
            slidingWindow: W,
          }),
        ]);
        ref.append(k, v, m, D, [cap, cap]);
        const got = await ctx.readF32(out, 0, m * H * D);
        const gotObs = await ctx.readF32(obs, 0, H * window * obsStride);
        for (let i = 0; i < m; i++) {
          for (let h = 0; h < H; h++) {
            const kvh = Math.floor(h / group), n = ref.k[kvh].length - m + i + 1;
            const lo = W > 0 ? Math.max(0, n - W) : 0;
            const at = (i * H + h) * D;
            const r = refAttend(
              q.subarray(at, at + D),
              ref.k[kvh].slice(lo, n),
              ref.v[kvh].slice(lo, n),
              scale,
            );
            assertClose(got.subarray(at, at + D), r.out, 2e-5, 1e-4, `m${m} q${i} h${h}`);
            if (i >= m - window) {
              const ob = (h * window + i - (m - window)) * obsStride;
              const want = [...Array(lo).fill(0), ...r.probs, ...Array(obsStride - n).fill(0)];
              assertClose(gotObs.subarray(ob, ob + obsStride), want, 1e-6, 1e-4, `obs ${i} ${h}`);
            }
          }
        }
      }
    });
  }
}
