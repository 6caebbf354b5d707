/**
 * KVzip's reconstruction scores on the GPU against a float64 brute force: each repeat row's softmax
 * over sink + chunk + the repeat up to itself, the chunk entry's highest weight over the rows.
 */
import assert from "node:assert/strict";
import { createKvCacheLayer, releaseKvCacheLayer } from "../../src/gpu/kvCache.ts";
import { kvzipScores } from "../../src/gpu/kernels/kvzipScores.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

// [D, n, rows, start, end, KV heads, group, keys or rows per dispatch]: groups of 2 (two heads
// per thread) and 3 (one), rows past one tile, and ranges split across dispatches.
const CASES: [number, number, number, number, number, number, number, number?][] = [
  [8, 30, 12, 10, 22, 2, 2],
  [64, 40, 9, 0, 40, 2, 2],
  [128, 20, 5, 2, 6, 2, 2],
  [16, 70, 37, 20, 61, 3, 3],
  [32, 90, 50, 8, 80, 1, 4, 16],
  [16, 64, 33, 30, 64, 3, 3, 32],
];
for (const [D, n, rows, start, end, Hkv, g, span] of CASES) {
  gpuTest(
    `kvzipScores D${D}, ${Hkv}×${g} heads: ${rows} repeat rows over chunk [${start}, ${end}) of ${n}` +
      (span ? `, ranges of ${span}` : ""),
    async (ctx) => {
      const H = Hkv * g, sink = Math.min(4, start);
      const rand = rng(D + n + rows);
      const cap = n + rows + 3;
      const layer = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: cap,
        lengths: Array(Hkv).fill(n + rows),
      });
      const keys = Array.from({ length: Hkv }, () => randomF32(rand, cap * D, 2));
      keys.forEach((k, h) => ctx.write(layer.k, layer.bases[h] * D * 4, k));
      const slot0 = n % rows;
      const scale = 0.6 / Math.sqrt(D); // not 1/√D: the kernel must use the model's
      const ring = randomF32(rand, rows * H * D, 2); // row r in slot (slot0 + r) % rows
      const queries = ctx.upload(ring);
      const out = ctx.upload(new Float32Array(H * (end - start)).fill(-1));
      runAndFree(ctx, [kvzipScores(ctx, {
        cache: layer,
        queries,
        slot0,
        rows,
        n,
        sink,
        start,
        end,
        numHeads: H,
        out,
        scale,
        spanPerDispatch: span,
      })]);
      const got = await ctx.readF32(out);
      for (let h = 0; h < H; h++) {
        const k = keys[Math.floor(h / g)];
        const logit = (r: number, row: number) => {
          let s = 0;
          for (let e = 0; e < D; e++) {
            s += ring[(((slot0 + r) % rows) * H + h) * D + e] * k[row * D + e];
          }
          return s * scale;
        };
        for (let j = start; j < end; j++) {
          let want = 0;
          for (let r = 0; r < rows; r++) {
            const visible = [
              ...Array.from({ length: sink }, (_, i) => i),
              ...Array.from({ length: end - start }, (_, i) => start + i),
              ...Array.from({ length: r + 1 }, (_, i) => n + i),
            ];
            const z = visible.reduce((s, row) => s + Math.exp(logit(r, row)), 0);
            want = Math.max(want, Math.exp(logit(r, j)) / z);
          }
          const x = got[h * (end - start) + j - start];
          assert.ok(
            Math.abs(x - want) <= 1e-5 * Math.max(1e-3, want),
            `h${h} j${j}: ${x} vs ${want}`,
          );
        }
      }
      releaseKvCacheLayer(ctx, layer);
      ctx.release(queries);
      ctx.release(out);
    },
  );
}
