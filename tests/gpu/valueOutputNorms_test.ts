/**
 * CriticalKV's value weights on the GPU (`projectedValueNorms`: a GEMM of the values against the
 * group's W_o slices, then the L1 norms): the mean over each KV head's query heads of
 * Σ_c |v_i · W_o^(h)[c]|, against a float64 reference of the formula.
 */
import assert from "node:assert/strict";
import { projectedValueNorms } from "../../src/runtime/projectedValueNorms.ts";
import { gpuTest } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

/** The formula in float64: `wo` is `[hidden][H·d]`, `values[kv]` is `[n][d]`. */
function reference(values: Float32Array[], wo: Float32Array, H: number, d: number, hidden: number) {
  const g = H / values.length;
  return values.map((v, kv) =>
    Array.from({ length: v.length / d }, (_, i) => {
      let total = 0;
      for (let h = kv * g; h < (kv + 1) * g; h++) {
        for (let c = 0; c < hidden; c++) {
          let dot = 0;
          for (let e = 0; e < d; e++) dot += v[i * d + e] * wo[c * H * d + h * d + e];
          total += Math.abs(dot);
        }
      }
      return total / g;
    })
  );
}

// SmolLM2's shape (9 query / 3 KV heads of 64, hidden 576), head_dim 80 and 256, a hidden size
// that is no multiple of 4 or 64, MHA; rows in one pass and in several (the last one short).
const CASES = [
  { n: 37, H: 9, Hkv: 3, d: 64, hidden: 576 },
  { n: 5, H: 2, Hkv: 1, d: 80, hidden: 100 },
  { n: 3, H: 2, Hkv: 2, d: 256, hidden: 130 },
  { n: 150, H: 4, Hkv: 2, d: 8, hidden: 33, rowsPerPass: 64 },
];
for (const { n, H, Hkv, d, hidden, rowsPerPass } of CASES) {
  const name = `projectedValueNorms ${n} rows, ${H}/${Hkv} heads of ${d}, hidden ${hidden}` +
    (rowsPerPass ? `, ${rowsPerPass} rows per pass` : "");
  gpuTest(name, async (ctx) => {
    const values = Array.from({ length: Hkv }, (_, kv) => randomF32(rng(n + d + kv), n * d));
    const wo = randomF32(rng(hidden * 7 + d), hidden * H * d);
    const config = { numHeads: H, numKvHeads: Hkv, headDim: d, hiddenSize: hidden };
    const got = await projectedValueNorms(ctx, config, values, wo, rowsPerPass);
    const want = reference(values, wo, H, d, hidden);
    assert.equal(got.length, Hkv);
    for (let kv = 0; kv < Hkv; kv++) {
      assert.equal(got[kv].length, n);
      for (let i = 0; i < n; i++) {
        assert.ok(
          Math.abs(got[kv][i] - want[kv][i]) <= 1e-4 * Math.max(1, want[kv][i]),
          `head ${kv} row ${i}: ${got[kv][i]} vs ${want[kv][i]}`,
        );
      }
    }
  });
}

gpuTest(
  "projectedValueNorms: refuses an o_proj of the wrong size and a pass not of 64 rows",
  async (ctx) => {
    const config = { numHeads: 2, numKvHeads: 1, headDim: 4, hiddenSize: 8 };
    const values = [new Float32Array(12)];
    await assert.rejects(
      projectedValueNorms(ctx, config, values, new Float32Array(63)),
      /o_proj must be 8×8, got 63 values/,
    );
    await assert.rejects(
      projectedValueNorms(ctx, config, values, new Float32Array(64), 32),
      /rowsPerPass 32: a multiple of 64/,
    );
  },
);
