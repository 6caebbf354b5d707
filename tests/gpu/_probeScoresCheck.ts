/**
 * The probeScores kernel against `retrievalQueryHeadScores` (float64) on random inputs: a
 * synthetic probe cached in chunks of unaligned lengths, two planted heads (one induction, one
 * echo) and random ones, f32 and f16 caches. Imported by probeScores_test.ts; run as a script
 * (with `DENO_WEBGPU_BACKEND`) it checks the default adapter and prints `probe-scores ok|FAIL`.
 *
 * @module
 */

import type { GpuContext } from "../../src/gpu/device.ts";
import { acquireDevice } from "../../src/gpu/device.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import {
  probePartialsBytes,
  probeScores,
  sumProbePartials,
} from "../../src/gpu/kernels/probeScores.ts";
import { createKvCacheLayer, type KvDType, releaseKvCacheLayer } from "../../src/gpu/kvCache.ts";
import {
  type RetrievalProbe,
  retrievalQueryHeadScores,
} from "../../src/plugins/retrievalDetector.ts";
import { runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

/** A query scale other than 1/√D (as Gemma 3's `query_pre_attn_scalar` may give): the kernel must use it. */
const SCALE = 1.25;

/** Probe shape of {@link checkProbeScores}: head dimension, block length, chunk lengths. */
export interface ProbeCheckShape {
  headDim: number;
  block: number;
  /** Chunk lengths of all but the last chunk (the last takes the rest of the probe). */
  chunks: number[];
}

/** Runs the check for one cache dtype; throws on a mismatch. Returns the GPU scores. */
export async function checkProbeScores(
  ctx: GpuContext,
  dtype: KvDType,
  shape: ProbeCheckShape = { headDim: 8, block: 37, chunks: [23, 64, 41] },
): Promise<{ echo: number[]; induction: number[] }> {
  const rand = rng(dtype === "f32" ? 7 : 8);
  const Hkv = 2, group = 2, H = Hkv * group, D = shape.headDim, B = shape.block, offset = 1;
  const N = offset + 4 * B; // 149 positions by default
  const probe: RetrievalProbe = { tokens: new Array(N).fill(0), block: B, offset, seed: 0 };
  const round = dtype === "f16" ? Math.f16round : (x: number) => x;
  const k = randomF32(rand, N * Hkv * D, 1.5).map(round);
  const keyOf = (kv: number, j: number) => k.subarray((j * Hkv + kv) * D, (j * Hkv + kv + 1) * D);
  // Heads 0 and 1 (KV head 0) point at the token after / at the previous occurrence.
  const q = randomF32(rand, N * H * D, 1.5);
  for (let i = offset + B; i < N; i++) {
    q.set(keyOf(0, i - B + 1).map((x) => 4 * x), (i * H + 0) * D);
    q.set(keyOf(0, i - B).map((x) => 4 * x), (i * H + 1) * D);
  }
  const cache = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: N, dtype });
  const partials = ctx.createBuffer(probePartialsBytes(N, H));
  try {
    let start = 0;
    const last = N - shape.chunks.reduce((a, b) => a + b, 0);
    for (const m of [...shape.chunks, last]) {
      const kChunk = k.slice(start * Hkv * D, (start + m) * Hkv * D);
      const qChunk = q.slice(start * H * D, (start + m) * H * D);
      runAndFree(ctx, [
        kvAppend(ctx, { cache, k: ctx.upload(kChunk), v: ctx.upload(kChunk), m }),
        probeScores(ctx, {
          cache,
          q: ctx.upload(qChunk),
          m,
          numHeads: H,
          scale: SCALE / Math.sqrt(D),
          block: B,
          offset,
          partials,
        }),
      ]);
      start += m;
    }
    const sums = sumProbePartials(await ctx.readF32(partials), H);
    const counted = N - offset - B;
    const got = {
      echo: sums.echo.map((s) => s / counted),
      induction: sums.induction.map((s) => s / counted),
    };
    const want = retrievalQueryHeadScores(probe, H, (h, i) => {
      const kv = Math.floor(h / group);
      const keys = Array.from({ length: i + 1 }, (_, j) => keyOf(kv, j));
      return refAttend(
        q.subarray((i * H + h) * D, (i * H + h + 1) * D),
        keys,
        keys,
        SCALE / Math.sqrt(D),
      )
        .probs;
    });
    assertClose(got.echo, want.echo, 1e-6, 1e-5, `${dtype} echo`);
    assertClose(got.induction, want.induction, 1e-6, 1e-5, `${dtype} induction`);
    return got;
  } finally {
    releaseKvCacheLayer(ctx, cache);
    ctx.release(partials);
  }
}

if (import.meta.main) {
  const ctx = await acquireDevice();
  let ok = true;
  try {
    for (const dtype of ["f32", "f16"] as const) await checkProbeScores(ctx, dtype);
  } catch (e) {
    ok = false;
    console.error(e);
  } finally {
    ctx.destroy();
  }
  const backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default";
  console.log(
    `probe-scores ${ok ? "ok" : "FAIL"} backend=${backend} adapter="${ctx.adapterDescription}"`,
  );
  Deno.exit(ok ? 0 : 1);
}
