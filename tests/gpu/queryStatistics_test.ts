/**
 * Expected Attention's query statistics on the GPU: post-RoPE queries rotated back by their
 * positions and summed (q and q·qᵀ per head), against float64 sums of the pre-RoPE queries.
 */
import assert from "node:assert/strict";
import { queryStatistics } from "../../src/gpu/kernels/queryStatistics.ts";
import { uploadInvFreq } from "../../src/gpu/kernels/rope.ts";
import { ropeInverseFrequencies } from "../../src/model/rope.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

/** rotate_half RoPE of one head's vector at `pos`, in float64. */
function rotate(x: Float32Array, pos: number, invFreq: Float64Array): Float32Array {
  const half = x.length / 2;
  const out = new Float32Array(x.length);
  for (let i = 0; i < half; i++) {
    const a = Math.fround(pos) * Math.fround(invFreq[i]);
    out[i] = x[i] * Math.cos(a) - x[i + half] * Math.sin(a);
    out[i + half] = x[i + half] * Math.cos(a) + x[i] * Math.sin(a);
  }
  return out;
}

for (
  const [H, D, rows, sink, first] of [[2, 8, 40, 4, 0], [3, 64, 17, 0, 100], [1, 4, 4200, 4, 0]]
) {
  gpuTest(
    `queryStatistics H${H} D${D}, ${rows} rows from position ${first}, sink ${sink}`,
    async (ctx) => {
      const invFreq = ropeInverseFrequencies(D, 10000, { kind: "none" });
      const pre = randomF32(rng(rows * D + H), rows * H * D, 2);
      const post = new Float32Array(pre.length);
      for (let r = 0; r < rows; r++) {
        for (let h = 0; h < H; h++) {
          const at = (r * H + h) * D;
          post.set(rotate(pre.subarray(at, at + D), first + r, invFreq), at);
        }
      }
      const q = ctx.upload(post);
      const positions = ctx.upload(Uint32Array.from({ length: rows + 2 }, (_, i) => first + i - 2));
      const freq = uploadInvFreq(ctx, invFreq);
      const sum = ctx.upload(new Float32Array(H * D));
      const sq = ctx.upload(new Float32Array(H * D * D));
      // Two passes over the same rows: the sums accumulate.
      for (let pass = 0; pass < 2; pass++) {
        runAndFree(ctx, [queryStatistics(ctx, {
          q,
          positions,
          positionsOffset: 2,
          invFreq: freq,
          sum,
          sq,
          m: rows,
          numHeads: H,
          headDim: D,
          sink,
        })]);
      }
      const gotSum = await ctx.readF32(sum), gotSq = await ctx.readF32(sq);
      for (let h = 0; h < H; h++) {
        for (let e = 0; e < D; e++) {
          let want = 0;
          const wantSq = new Float64Array(D);
          for (let r = 0; r < rows; r++) {
            if (first + r < sink) continue;
            const x = pre[(r * H + h) * D + e];
            want += 2 * x;
            for (let f = 0; f < D; f++) wantSq[f] += 2 * x * pre[(r * H + h) * D + f];
          }
          const tol = 2e-4 * rows;
          assert.ok(
            Math.abs(gotSum[h * D + e] - want) < tol,
            `sum ${h},${e}: ${gotSum[h * D + e]} vs ${want}`,
          );
          for (let f = 0; f < D; f++) {
            const got = gotSq[(h * D + e) * D + f];
            assert.ok(
              Math.abs(got - wantSq[f]) < 2 * tol,
              `sq ${h},${e},${f}: ${got} vs ${wantSq[f]}`,
            );
          }
        }
      }
      for (const b of [q, positions, freq, sum, sq]) ctx.release(b);
    },
  );
}
