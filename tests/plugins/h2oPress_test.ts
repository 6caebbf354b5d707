/** H2O: prefill heavy hitters + recent, and per-step accumulate-and-evict while decoding. */
import assert from "node:assert/strict";
import { h2oBudget, h2oDecodeStep, h2oPrefill, selectH2o } from "../../src/plugins/h2oPress.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import { lcg, randomLayer, range, referenceTop } from "./_inputs.ts";

function sumsInput(perQueryHead: number[][], numKvHeads: number): LayerScoresInput {
  return {
    layer: 0,
    numLayers: 1,
    promptLength: perQueryHead[0].length,
    numKvHeads,
    groupSize: perQueryHead.length / numKvHeads,
    headDim: 1,
    windowAttention: () => {
      throw new Error("not used");
    },
    attentionColumnSums: () => perQueryHead.map((s) => Float32Array.from(s)),
    keys: () => {
      throw new Error("not used");
    },
  };
}

Deno.test("h2o: prefill keeps top heavy non-recent + last recent (hand-computed, GQA mean)", () => {
  // Two query heads over one KV head: means = [2, 0.5, 3, 1, 1, 0, 0, 0].
  const input = sumsInput([[4, 0, 2, 1, 2, 0, 0, 0], [0, 1, 4, 1, 0, 0, 0, 0]], 1);
  assert.deepEqual(selectH2o(input, { heavy: { tokens: 2 }, recent: { tokens: 2 } }), [[
    0,
    2,
    6,
    7,
  ]]);
  // Tie between 3 and 4 (both 1) → 3.
  assert.deepEqual(selectH2o(input, { heavy: { tokens: 3 }, recent: { tokens: 2 } }), [[
    0,
    2,
    3,
    6,
    7,
  ]]);
  assert.deepEqual(selectH2o(input, { heavy: { tokens: 4 }, recent: { tokens: 4 } }), [
    range(0, 8),
  ]);
  // 25 % of 8 = 2 each.
  assert.deepEqual(selectH2o(input, { heavy: { fraction: 0.25 }, recent: { fraction: 0.25 } }), [[
    0,
    2,
    6,
    7,
  ]]);
  const [state] = h2oPrefill(input, { heavy: { tokens: 2 }, recent: { tokens: 2 } });
  assert.deepEqual(state, { positions: [0, 2, 6, 7], scores: [2, 3, 0, 0], heavy: 2, recent: 2 });
});

Deno.test("h2o: fractional budgets are floored like the official int(ratio * seq_len)", () => {
  // FMInference/H2O h2o_hf/utils_hh/modify_llama.py, at the first forward (the prompt):
  //   heavy_budget = int(heavy_budget_ratio * N); recent_budget = int(recent_budget_ratio * N).
  // Means over the group = [2, 0.5, 3, 1, 1, 0, 0, 0] (N = 8), as in the test above.
  const input = sumsInput([[4, 0, 2, 1, 2, 0, 0, 0], [0, 1, 4, 1, 0, 0, 0, 0]], 1);
  // heavy 35 %: int(0.35·8) = int(2.8) = 2 (rounding would give 3); recent 20 %: int(1.6) = 1
  // (rounding: 2). Recent = {7}; top 2 of positions 0..6 by score: 2 (3), 0 (2) → [0, 2, 7].
  const params = { heavy: { fraction: 0.35 }, recent: { fraction: 0.2 } };
  assert.deepEqual(selectH2o(input, params), [[0, 2, 7]]);
  const [state] = h2oPrefill(input, params);
  assert.equal(state.heavy, 2);
  assert.equal(state.recent, 1);
  // The float product is floored as Python's int() does: 0.29·100 = 28.999999999999996 → 28;
  // 0.1·30 = 3.0000000000000004 → 3; 0.7·10 = 7.000000000000001 → 7.
  assert.equal(h2oBudget({ fraction: 0.29 }, 100), 28);
  assert.equal(h2oBudget({ fraction: 0.1 }, 30), 3);
  assert.equal(h2oBudget({ fraction: 0.7 }, 10), 7);
  // The paper's 10 % of a 1,000-token prompt: int(100.0) = 100; of 1,009: int(100.9) = 100.
  assert.equal(h2oBudget({ fraction: 0.1 }, 1000), 100);
  assert.equal(h2oBudget({ fraction: 0.1 }, 1009), 100);
  // Token budgets are taken as given.
  assert.equal(h2oBudget({ tokens: 64 }, 1009), 64);
  // Where int() gives 0 (10 % of 9 tokens) we keep 1: never an empty cache (a stated difference).
  assert.equal(h2oBudget({ fraction: 0.1 }, 9), 1);
});

Deno.test("h2o: random prefill matches the reference on full causal attention", () => {
  for (const groupSize of [1, 2, 4]) {
    const n = 30;
    const layer = randomLayer({ promptLength: n, numKvHeads: 2, groupSize, seed: 40 + groupSize });
    const got = selectH2o(layer.input, { heavy: { tokens: 5 }, recent: { tokens: 4 } });
    for (let kv = 0; kv < 2; kv++) {
      const scores = range(0, n - 4).map((j) => {
        let total = 0;
        for (let h = kv * groupSize; h < (kv + 1) * groupSize; h++) {
          let column = 0;
          for (let i = 0; i < n; i++) column += layer.prob(h, i, j);
          total += Math.fround(column);
        }
        return total / groupSize;
      });
      assert.deepEqual(got[kv], [...referenceTop(scores, 5), ...range(n - 4, n)]);
    }
  }
});

Deno.test("h2o: decode steps accumulate and evict the weakest non-recent entry", () => {
  const state = { positions: [0, 1, 2, 3], scores: [5, 1, 2, 0], heavy: 2, recent: 2 };
  // New token 4; group of two query heads; mean attention = [0, .5, 0, .25, .25].
  const evicted = h2oDecodeStep(state, [[0, 1, 0, 0, 0], [0, 0, 0, 0.5, 0.5]], 4);
  // scores [5, 1.5, 2, .25, .25]; recent = {3, 4}; lowest of {0, 1, 2} is 1 (1.5).
  assert.equal(evicted, 1);
  assert.deepEqual(state.positions, [0, 2, 3, 4]);
  assert.deepEqual(state.scores, [5, 2, 0.25, 0.25]);
  // Next: position 3 leaves the recent band and is the weakest → evicted.
  assert.equal(h2oDecodeStep(state, [[0.25, 0.25, 0.25, 0, 0.25]], 5), 2);
  assert.deepEqual(state.positions, [0, 2, 4, 5]);
  // Below capacity nothing is evicted.
  const small = { positions: [0], scores: [1], heavy: 2, recent: 1 };
  assert.equal(h2oDecodeStep(small, [[0.5, 0.5]], 1), null);
  assert.throws(() => h2oDecodeStep(small, [[1, 0]], 2), /3 entries/);
});

Deno.test("h2o: long decode stays bounded, keeps the recent band, evicts the reference choice", () => {
  const rand = lcg(3);
  const state = {
    positions: range(0, 6),
    scores: range(0, 6).map(() => rand()),
    heavy: 3,
    recent: 3,
  };
  for (let next = 6; next < 40; next++) {
    const size = state.positions.length + 1;
    const attention = [0, 1].map(() => {
      const raw = range(0, size).map(() => rand());
      const total = raw.reduce((a, b) => a + b, 0);
      return raw.map((x) => x / total);
    });
    const after = state.scores.concat(0).map((s, i) => s + (attention[0][i] + attention[1][i]) / 2);
    const positions = state.positions.concat(next);
    const recentCut = [...positions].sort((a, b) => b - a)[2];
    let expected = -1;
    positions.forEach((p, i) => {
      if (p >= recentCut) return;
      if (expected < 0 || after[i] < after[expected]) expected = i;
    });
    assert.equal(h2oDecodeStep(state, attention, next), expected);
    assert.equal(state.positions.length, 6);
    assert.ok([next - 2, next - 1, next].every((p) => state.positions.includes(p)));
  }
});
