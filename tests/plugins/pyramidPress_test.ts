/** PyramidKV: per-layer budgets (official integer arithmetic) and SnapKV selection with them. */
import assert from "node:assert/strict";
import { pyramidPrefixBudget, selectPyramid } from "../../src/plugins/pyramidPress.ts";
import { randomLayer, range, referenceSnapScores, referenceTop } from "./_inputs.ts";

const budgets = (k: number, w: number, beta: number, layers: number, n: number) =>
  range(0, layers).map((l) => pyramidPrefixBudget(k, w, beta, l, layers, n));

Deno.test("pyramid: layer budgets decrease linearly from max to min", () => {
  // B = 16, min = 16/4 = 4, max = 28, step = 24/4 = 6.
  assert.deepEqual(budgets(20, 4, 4, 5, 100), [28, 22, 16, 10, 4]);
  // β = 20: min = 0.8, max = 31.2 ≥ N − w = 30 → max = 30, min = 2, step = 14.
  assert.deepEqual(budgets(20, 4, 20, 3, 34), [30, 16, 2]);
  // N < 2B: uniform.
  assert.deepEqual(budgets(20, 4, 4, 3, 31), [16, 16, 16]);
  // One layer: uniform.
  assert.deepEqual(budgets(20, 4, 4, 1, 100), [16]);
  // β = 3, B = 16: min = 5.33, max = 26.67, step = 7.11 → 26.67, 19.56, 12.44, 5.33.
  assert.deepEqual(budgets(20, 4, 3, 4, 100), [27, 20, 12, 5]);
  // Llama-like: k = 128, w = 32 → B = 96, min = 4.8, max = 187.2; the average stays B.
  const llama = budgets(128, 32, 20, 32, 4096);
  assert.equal(llama[0], 187);
  assert.equal(llama[31], 5);
  const mean = llama.reduce((a, b) => a + b, 0) / 32;
  assert.ok(Math.abs(mean - 96) <= 0.5, `mean ${mean}`);
  for (let l = 1; l < 32; l++) assert.ok(llama[l] <= llama[l - 1]);
});

Deno.test("pyramid: selection = SnapKV (max pooling) with the layer budget", () => {
  for (const seed of [1, 2, 3]) {
    for (let layerIndex = 0; layerIndex < 3; layerIndex++) {
      const n = 40;
      const layer = randomLayer({
        promptLength: n,
        numKvHeads: 2,
        groupSize: 2,
        seed: seed * 10 + layerIndex,
        layer: layerIndex,
        numLayers: 3,
      });
      const params = { k: { tokens: 12 }, beta: 4, window: 4, pool: 3 };
      const budget = pyramidPrefixBudget(12, 4, 4, layerIndex, 3, n); // 14, 8, 2 (min 2, max 14)
      assert.equal(budget, [14, 8, 2][layerIndex]);
      const got = selectPyramid(layer.input, params);
      for (let kv = 0; kv < 2; kv++) {
        const expected = [
          ...referenceTop(referenceSnapScores(layer, kv, 4, 3, "max"), budget),
          ...range(n - 4, n),
        ];
        assert.deepEqual(got[kv], expected);
      }
    }
  }
});

Deno.test("pyramid: edge cases keep all / last k", () => {
  const { input } = randomLayer({ promptLength: 10, numKvHeads: 1, groupSize: 2, seed: 4 });
  const base = { beta: 20, window: 4, pool: 7 };
  assert.deepEqual(selectPyramid(input, { ...base, k: { tokens: 10 } }), [range(0, 10)]);
  assert.deepEqual(selectPyramid(input, { ...base, k: { tokens: 3 } }), [[7, 8, 9]]);
  assert.equal(selectPyramid(input, { ...base, k: { fraction: 0.6 } })[0].length, 6);
});
