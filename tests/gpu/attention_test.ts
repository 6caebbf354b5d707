import { decodeAttention } from "../../src/gpu/kernels/decodeAttention.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { kvCompact, uploadKvSelection } from "../../src/gpu/kernels/kvCompact.ts";
import {
  prefillAttention,
  type PrefillAttentionArgs,
} from "../../src/gpu/kernels/prefillAttention.ts";
import { workgroupPrefillAttention } from "../../src/gpu/kernels/workgroupPrefillAttention.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { runOps } from "../../src/gpu/op.ts";
import assert from "node:assert/strict";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomSubset, RefKvCache } from "./_kvReference.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

/** The prefill kernels compared here: the thread-per-row one and the workgroup-tiled GPU candidate. */
const PREFILL_KERNELS = [prefillAttention, workgroupPrefillAttention];

/**
 * Prepares every prefill kernel on the same inputs, each with its own output and observation
 * buffers (`obsFloats` f32 each); `before` runs first in the same submission.
 */
function prefillKernelOps(
  ctx: GpuContext,
  a: Omit<PrefillAttentionArgs, "out" | "obs">,
  obsFloats: number,
) {
  const outs = PREFILL_KERNELS.map(() => ctx.createBuffer(a.m * a.numHeads * a.cache.headDim * 4));
  const obss = PREFILL_KERNELS.map(() => ctx.createBuffer(Math.max(1, obsFloats) * 4));
  const ops = PREFILL_KERNELS.map((kernel, i) =>
    kernel(ctx, { ...a, out: outs[i], obs: a.window ? obss[i] : undefined })
  );
  return { kernels: PREFILL_KERNELS, outs, obss, ops };
}

const cases: Array<[KvDType, number, number]> = [["f32", 1, 20], ["f16", 2, 8], ["f32", 4, 16]];

for (const [dtype, group, D] of cases) {
  gpuTest(
    `attention ${dtype} GQA ${group} D ${D}: chunked prefill + window, compaction, split decode`,
    async (ctx) => {
      const rand = rng(31 + group);
      const Hkv = 2, H = Hkv * group, scale = 1 / Math.sqrt(D);
      const cap = 64;
      const cache = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: cap, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      const caps = [cap, cap];
      // chunked prefill: chunks of 23 and 18 tokens, observation window 5 on the last chunk
      let p0 = 0;
      for (const [m, window] of [[23, 0], [18, 5]]) {
        const k = randomF32(rand, m * Hkv * D, 2), v = randomF32(rand, m * Hkv * D);
        const q = randomF32(rand, m * H * D, 2);
        const Q = ctx.upload(q);
        const obsStride = 48;
        // The thread-per-row kernel and the workgroup-tiled one (GPU candidate), same contract.
        const { kernels, outs, obss, ops } = prefillKernelOps(
          ctx,
          { cache, q: Q, m, numHeads: H, window, obsStride },
          H * window * obsStride,
        );
        runAndFree(ctx, [kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m }), ...ops]);
        ref.append(k, v, m, D, caps);
        for (const [ki, kernel] of kernels.entries()) {
          const got = await ctx.readF32(outs[ki], 0, m * H * D);
          const gotObs = await ctx.readF32(obss[ki], 0, H * window * obsStride);
          for (let i = 0; i < m; i++) {
            for (let h = 0; h < H; h++) {
              const kvh = Math.floor(h / group), n = p0 + i + 1;
              const r = refAttend(
                q.subarray((i * H + h) * D, (i * H + h + 1) * D),
                ref.k[kvh].slice(0, n),
                ref.v[kvh].slice(0, n),
                scale,
              );
              const at = (i * H + h) * D;
              const what = `${kernel.name} q${i} h${h}`;
              assertClose(got.subarray(at, at + D), r.out, 2e-5, 1e-4, `prefill ${what}`);
              if (i >= m - window) {
                const w = i - (m - window), o = (h * window + w) * obsStride;
                const want = [...r.probs, ...Array(obsStride - n).fill(0)];
                assertClose(gotObs.subarray(o, o + obsStride), want, 1e-6, 1e-4, `obs ${what}`);
              }
            }
          }
        }
        p0 += m;
      }
      // compaction to ragged kept sets (one head keeps nothing), then decode steps
      const sel = [randomSubset(rand, p0, 13), randomSubset(rand, p0, group === 2 ? 0 : 30)];
      const dst = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: [sel[0].length + 3, sel[1].length + 3],
        dtype,
      });
      runAndFree(ctx, [
        kvCompact(ctx, { src: cache, dst, selection: uploadKvSelection(ctx, sel), maxCount: 30 }),
      ]);
      ref.compact(sel);
      const q = ctx.createBuffer(H * D * 4);
      // The thread-per-split pass with its default tile and two other unrollings; the
      // workgroup-per-split pass (GPUs) with splits of 8 and 3 keys and its default split.
      const variants = [
        { splitSize: 8 },
        { splitSize: 8, tile: 8 },
        { splitSize: 8, tile: 3 },
        { splitSize: 8, kernel: "workgroup" as const },
        { splitSize: 3, kernel: "workgroup" as const },
        { kernel: "workgroup" as const },
      ];
      const outs = variants.map(() => ctx.createBuffer(H * D * 4));
      const kNew = ctx.createBuffer(Hkv * D * 4), vNew = ctx.createBuffer(Hkv * D * 4);
      // prepared once, encoded every step (lengths live on the GPU)
      const ops = [
        kvAppend(ctx, { cache: dst, k: kNew, v: vNew, m: 1 }),
        ...variants.map((variant, i) =>
          decodeAttention(ctx, { cache: dst, q, out: outs[i], numHeads: H, ...variant })
        ),
      ];
      for (let step = 0; step < 2; step++) {
        const qs = randomF32(rand, H * D, 2);
        const k = randomF32(rand, Hkv * D, 2), v = randomF32(rand, Hkv * D);
        ctx.write(q, 0, qs);
        ctx.write(kNew, 0, k);
        ctx.write(vNew, 0, v);
        runOps(ctx, ops);
        ref.append(k, v, 1, D, dst.capacities);
        for (const [i, variant] of variants.entries()) {
          const got = await ctx.readF32(outs[i], 0, H * D);
          for (let h = 0; h < H; h++) {
            const kvh = Math.floor(h / group);
            const r = refAttend(qs.subarray(h * D, h * D + D), ref.k[kvh], ref.v[kvh], scale);
            const what = `decode ${step} h${h} ${JSON.stringify(variant)}`;
            assertClose(got.subarray(h * D, h * D + D), r.out, 2e-5, 1e-4, what);
          }
        }
      }
      for (const op of ops) op.destroy();
    },
  );
}

for (const kernel of ["thread", "workgroup"] as const) {
  gpuTest(
    `decodeAttention (${kernel}): empty heads give zeros, default split size`,
    async (ctx) => {
      const cache = createKvCacheLayer(ctx, { numKvHeads: 2, headDim: 4, capacity: 5 });
      const q = ctx.upload(new Float32Array(8).fill(1));
      const out = ctx.upload(new Float32Array(8).fill(7));
      runAndFree(ctx, [decodeAttention(ctx, { cache, q, out, numHeads: 2, kernel })]);
      assertClose(await ctx.readF32(out, 0, 8), Array(8).fill(0), 0);
    },
  );
}

// The two split passes on long ragged heads with logit-bias rows, against the reference: group 8
// (one workgroup per KV head holds all 8 heads), several default-size splits, an empty head.
for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `decodeAttention ${dtype}: thread and workgroup passes, bias rows, ragged heads`,
    async (ctx) => {
      const rand = rng(7);
      const [Hkv, group, D] = [3, 8, 32], H = Hkv * group;
      const lengths = [700, 0, 1300];
      const bias = [{ row: 5, value: 2.5 }, undefined, { row: 1299, value: -1.5 }];
      // Capacities = lengths: appending 1300 rows fills each head to its length (the rest drops).
      const cache = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: lengths,
        dtype,
        bias,
      });
      const k = randomF32(rand, 1300 * Hkv * D), v = randomF32(rand, 1300 * Hkv * D);
      const [K, V] = [ctx.upload(k), ctx.upload(v)];
      runAndFree(ctx, [kvAppend(ctx, { cache, k: K, v: V, m: 1300 })]);
      const ref = new RefKvCache(Hkv, dtype);
      ref.append(k, v, 1300, D, lengths);
      assert.deepEqual(ref.k.map((rows) => rows.length), lengths);
      const q = ctx.upload(randomF32(rand, H * D, 2));
      const qs = await ctx.readF32(q);
      const kernels = ["thread", "workgroup"] as const;
      const outs = kernels.map(() => ctx.createBuffer(H * D * 4));
      runAndFree(
        ctx,
        kernels.map((kernel, i) =>
          decodeAttention(ctx, { cache, q, out: outs[i], numHeads: H, kernel })
        ),
      );
      for (const [i, kernel] of kernels.entries()) {
        const got = await ctx.readF32(outs[i], 0, H * D);
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / group), n = lengths[kvh];
          const want = n === 0 ? Array(D).fill(0) : refAttend(
            qs.subarray(h * D, h * D + D),
            ref.k[kvh].slice(0, n),
            ref.v[kvh].slice(0, n),
            1 / Math.sqrt(D),
            bias[kvh],
          ).out;
          assertClose(got.subarray(h * D, h * D + D), want, 2e-5, 1e-4, `${kernel} h${h}`);
        }
      }
    },
  );
}

// The workgroup-tiled prefill kernel against the thread-per-row one (tested against the CPU
// reference above) on what the small cases miss: several query blocks and key tiles, ragged heads
// (one empty), logit-bias rows, GQA 8, head dims 80 (16-key tiles, as for any head_dim over 64;
// the kernel unrolls over the head dim, and at 128 llvmpipe takes 33 s to compile it) and 12.
for (const [group, D] of [[8, 80], [3, 12]]) {
  gpuTest(
    `workgroupPrefillAttention GQA ${group} D ${D}: ragged heads, bias rows, window`,
    async (ctx) => {
      const rand = rng(group * 100 + D);
      const Hkv = 3, H = Hkv * group, m = 100, window = 7, obsStride = 330;
      const lengths = [300, 0, 170]; // after the chunk's append: head 1 holds nothing
      const bias = [{ row: 3, value: 1.5 }, undefined, { row: 169, value: -2 }];
      const cache = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: lengths,
        bias,
      });
      const k = randomF32(rand, 300 * Hkv * D, 2), v = randomF32(rand, 300 * Hkv * D);
      runAndFree(ctx, [kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m: 300 })]);
      const Q = ctx.upload(randomF32(rand, m * H * D, 2));
      const { outs, obss, ops } = prefillKernelOps(
        ctx,
        { cache, q: Q, m, numHeads: H, window, obsStride },
        H * window * obsStride,
      );
      runAndFree(ctx, ops);
      const [want, got] = await Promise.all(outs.map((o) => ctx.readF32(o)));
      assertClose(got, want, 2e-5, 1e-4, "out");
      const [wantObs, gotObs] = await Promise.all(obss.map((o) => ctx.readF32(o)));
      assertClose(gotObs, wantObs, 1e-6, 1e-4, "obs");
      assert.ok(wantObs.some((x) => x > 0), "the window recorded something");
    },
  );
}
