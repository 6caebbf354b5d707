/** CriticalKV's value weights on the GPU: Σ_c |v_i · W_o^(h)[c]| against a float64 reference. */
import assert from "node:assert/strict";
import { valueOutputNorms } from "../../src/gpu/kernels/valueOutputNorms.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

function reference(v: Float32Array, w: Float32Array, rows: number, d: number, hidden: number) {
  return Array.from({ length: rows }, (_, i) => {
    let sum = 0;
    for (let c = 0; c < hidden; c++) {
      let dot = 0;
      for (let e = 0; e < d; e++) dot += v[i * d + e] * w[c * d + e];
      sum += Math.abs(dot);
    }
    return sum;
  });
}

// head_dim 64, 80, 256 and a hidden size that is no multiple of 64; the slice at an offset.
for (const [rows, d, hidden] of [[37, 64, 576], [5, 80, 100], [3, 256, 130], [70_000, 4, 3]]) {
  gpuTest(`valueOutputNorms ${rows} rows, head_dim ${d}, hidden ${hidden}`, async (ctx) => {
    const v = randomF32(rng(rows + d), rows * d);
    const w = randomF32(rng(hidden * 7 + d), 2 * hidden * d); // two slices; the second is used
    const vb = ctx.upload(v), wb = ctx.upload(w);
    const out = ctx.upload(new Float32Array(rows + 3).fill(-1));
    runAndFree(
      ctx,
      valueOutputNorms(ctx, {
        values: vb,
        w: wb,
        wOffset: hidden * d,
        out,
        outOffset: 3,
        rows,
        headDim: d,
        hidden,
      }),
    );
    const got = await ctx.readF32(out);
    assert.deepEqual(Array.from(got.subarray(0, 3)), [-1, -1, -1], "nothing before the offset");
    const want = reference(v, w.subarray(hidden * d), rows, d, hidden);
    const check = rows > 1000 ? [0, 1, 65_534, 65_535, 65_536, rows - 1] : want.map((_, i) => i);
    for (const i of check) {
      assert.ok(
        Math.abs(got[3 + i] - want[i]) <= 1e-4 * Math.max(1, want[i]),
        `row ${i}: ${got[3 + i]} vs ${want[i]}`,
      );
    }
  });
}
