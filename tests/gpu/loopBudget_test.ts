/**
 * Kernels against float64 references at shapes that spend more than llvmpipe's loop budget
 * (65535 loop iterations per shader invocation, `src/gpu/loopBudget.ts`) when their head-dimension
 * loops are not unrolled (head_dim 256) or when a loop grows with the prompt: H2O's decode step
 * (its prefill column sums: `h2oColumnSums_test.ts`), RazorAttention's compensation token over 70,000 dropped rows, the
 * thread-per-row prefill kernel (`prefill=thread`), and the clear refusal where a shape cannot fit. Each comparison failed on llvmpipe before the fix.
 */
import assert from "node:assert/strict";
import { type GpuContext, GpuUnavailableError } from "../../src/gpu/device.ts";
import type { GpuOp } from "../../src/gpu/op.ts";
import { h2oEvict } from "../../src/gpu/kernels/h2oEvict.ts";
import { encodeCompensation, kvCompensate } from "../../src/gpu/kernels/kvCompensate.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { prefillAttention } from "../../src/gpu/kernels/prefillAttention.ts";
import { probePartialsBytes, probeScores } from "../../src/gpu/kernels/probeScores.ts";
import { createKvCacheLayer, releaseKvCacheLayer } from "../../src/gpu/kvCache.ts";
import { quantAppend } from "../../src/gpu/kernels/quantAppend.ts";
import { createQuantKvLayer, releaseQuantKvLayer } from "../../src/gpu/quantKvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

/** Row `j` of KV head `kv` (or query head) of a `[n][heads·D]` array. */
function rowOf(x: Float32Array, heads: number, D: number, j: number, h: number): Float32Array {
  return x.subarray((j * heads + h) * D, (j * heads + h + 1) * D);
}

/**
 * On a software adapter `make` must throw the loop-budget refusal matching `message`; on a GPU
 * the same op is prepared (and freed) without complaint.
 */
function assertRefusedOnSoftware(ctx: GpuContext, make: () => GpuOp, message: RegExp): void {
  if (!ctx.isFallbackAdapter) return make().destroy();
  assert.throws(make, (e) => e instanceof GpuUnavailableError && message.test(e.message));
}

gpuTest("h2oEvict at head_dim 256 over 11,000 rows: scores and victim as defined", async (ctx) => {
  const rand = rng(32);
  const Hkv = 1, group = 2, H = 2, D = 256, N = 11_000, recent = 16;
  const k = randomF32(rand, N * Hkv * D, 0.25);
  const q = randomF32(rand, H * D, 0.25);
  const before = Float32Array.from({ length: N }, () => rand());
  // The new token is the last row; positions 0..N-1 in row order.
  const want = Float64Array.from(before);
  want[N - 1] = 0;
  const keys = Array.from({ length: N }, (_, j) => rowOf(k, Hkv, D, j, 0));
  for (let h = 0; h < H; h++) {
    refAttend(q.subarray(h * D, (h + 1) * D), keys, keys, 0.7 / Math.sqrt(D)).probs
      .forEach((p, j) => want[j] += p / group);
  }
  // Victim: the lowest score among rows outside the `recent` newest positions.
  let victim = 0;
  for (let j = 1; j + recent <= N - 1; j++) if (want[j] < want[victim]) victim = j;
  const cache = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: N });
  const state = new Uint32Array(2 * Hkv + N);
  state[0] = N - 1; // limit: one row over it, so the step evicts one
  state[1] = recent;
  state.set(Array.from({ length: N }, (_, j) => j), 2);
  const scores = ctx.upload(before);
  const stateBuf = ctx.upload(state);
  try {
    runAndFree(ctx, [
      kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(k), m: N }),
      h2oEvict(ctx, {
        cache,
        q: ctx.upload(q),
        numHeads: H,
        scale: 0.7 / Math.sqrt(D),
        positions: ctx.upload(Uint32Array.of(N - 1)),
        positionsOffset: 0,
        scores,
        state: stateBuf,
      }),
    ]);
    const got = await ctx.readF32(scores);
    const posGot = await ctx.readU32(stateBuf, 2, N);
    // The last row moved into the victim's row; every other row kept its score.
    const moved = Float64Array.from(want);
    moved[victim] = want[N - 1];
    assertClose(got.subarray(0, N - 1), moved.subarray(0, N - 1), 1e-7, 1e-4, "scores");
    assert.equal(posGot[victim], N - 1, `victim row ${victim} now holds the new token`);
  } finally {
    releaseKvCacheLayer(ctx, cache);
    ctx.release(scores);
    ctx.release(stateBuf);
  }
});

gpuTest("kvCompensate averages 70,000 dropped rows (past 65,535 loop iterations)", async (ctx) => {
  const rand = rng(33);
  const D = 8, N = 70_001, dropped = Array.from({ length: N - 1 }, (_, j) => j + 1);
  const k = Float32Array.from({ length: N * D }, () => 0.5 + rand());
  const v = Float32Array.from({ length: N * D }, () => 0.5 + rand());
  const src = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: D, capacity: N });
  const dst = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: D, capacity: 2, lengths: [2] });
  try {
    runAndFree(ctx, [
      kvAppend(ctx, { cache: src, k: ctx.upload(k), v: ctx.upload(v), m: N }),
      kvCompensate(ctx, {
        src,
        dst,
        list: ctx.upload(encodeCompensation([{ dropped, row: 1 }])),
      }),
    ]);
    for (const [name, x, buf] of [["keys", k, dst.k], ["values", v, dst.v]] as const) {
      const mean = new Float64Array(D);
      for (const j of dropped) for (let d = 0; d < D; d++) mean[d] += x[j * D + d] / dropped.length;
      assertClose((await ctx.readF32(buf)).subarray(D, 2 * D), mean, 1e-5, 1e-4, name);
    }
  } finally {
    releaseKvCacheLayer(ctx, src);
    releaseKvCacheLayer(ctx, dst);
  }
});

gpuTest("a probe too long for llvmpipe's loop budget is refused before any work", (ctx) => {
  const cache = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: 64, capacity: 70_000 });
  const partials = ctx.createBuffer(probePartialsBytes(70_000, 1));
  const q = ctx.createBuffer(64 * 4);
  try {
    const make = () =>
      probeScores(ctx, {
        cache,
        q,
        m: 1,
        numHeads: 1,
        scale: 1,
        block: 17_500,
        offset: 0,
        partials,
      });
    assertRefusedOnSoftware(
      ctx,
      make,
      /probe \(probeScores\) is too long for this software adapter.*65535/,
    );
  } finally {
    releaseKvCacheLayer(ctx, cache);
    ctx.release(partials);
    ctx.release(q);
  }
});

gpuTest("prefill=thread at head_dim 256 over 1,000 keys equals float64 attention", async (ctx) => {
  const rand = rng(34);
  const D = 256, L = 1000, m = 8, window = 4, scale = 1 / Math.sqrt(D);
  const cache = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: D, capacity: L });
  const k = randomF32(rand, L * D, 0.5),
    v = randomF32(rand, L * D),
    q = randomF32(rand, m * D, 0.5);
  const out = ctx.createBuffer(m * D * 4), obs = ctx.createBuffer(window * L * 4);
  try {
    runAndFree(ctx, [
      kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m: L }),
      prefillAttention(ctx, {
        cache,
        q: ctx.upload(q),
        out,
        m,
        numHeads: 1,
        window,
        obs,
        obsStride: L,
      }),
    ]);
    const got = await ctx.readF32(out), gotObs = await ctx.readF32(obs);
    const keys = Array.from({ length: L }, (_, j) => rowOf(k, 1, D, j, 0));
    const values = Array.from({ length: L }, (_, j) => rowOf(v, 1, D, j, 0));
    for (let i = 0; i < m; i++) {
      const n = L - m + i + 1;
      const r = refAttend(rowOf(q, 1, D, i, 0), keys.slice(0, n), values.slice(0, n), scale);
      assertClose(got.subarray(i * D, (i + 1) * D), r.out, 2e-5, 1e-4, `q${i}`);
      if (i >= m - window) {
        const at = (i - (m - window)) * L;
        assertClose(gotObs.subarray(at, at + n), r.probs, 1e-6, 1e-3, `obs ${i}`);
      }
    }
  } finally {
    releaseKvCacheLayer(ctx, cache);
    ctx.release(out);
    ctx.release(obs);
  }
});

gpuTest("prefill=thread over 40,000 keys is refused on a software adapter", (ctx) => {
  const cache = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: 64, capacity: 40_000 });
  const q = ctx.createBuffer(64 * 4), out = ctx.createBuffer(64 * 4);
  try {
    const make = () => prefillAttention(ctx, { cache, q, out, m: 1, numHeads: 1 });
    assertRefusedOnSoftware(
      ctx,
      make,
      /prefill attention \(prefill=thread\) over 40000 keys is too long/,
    );
  } finally {
    releaseKvCacheLayer(ctx, cache);
    ctx.release(q);
    ctx.release(out);
  }
});

gpuTest("a quantised prefill chunk too long for llvmpipe's loop budget is refused", (ctx) => {
  const m = 30_000;
  const cache = createQuantKvLayer(ctx, {
    headDim: 256,
    dtype: "f32",
    quant: { kbits: 4, vbits: 4, group: 32, residuals: [32] },
    maxEntries: [m],
  });
  const k = ctx.createBuffer(256 * 4);
  try {
    const make = (n: number) => quantAppend(ctx, { cache, k, v: k, m: n });
    make(512).destroy(); // the default chunk fits
    assertRefusedOnSoftware(
      ctx,
      () => make(m),
      /quantised prefill chunk of 30000 tokens \(quantAppend\) is too long/,
    );
  } finally {
    releaseQuantKvLayer(ctx, cache);
    ctx.release(k);
  }
});
