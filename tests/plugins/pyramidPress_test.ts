/** PyramidKV: per-layer budgets (official integer arithmetic) and SnapKV selection with them. */
import assert from "node:assert/strict";
import {
  pyramidPrefixBudget,
  pyramidPress,
  type PyramidSchedule,
  selectPyramid,
} from "../../src/plugins/pyramidPress.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import { compilePolicy } from "../../src/plan/compile.ts";
import { lcg, randomLayer, range, referenceSnapScores, referenceTop } from "./_inputs.ts";

const budgets = (
  k: number,
  w: number,
  beta: number,
  layers: number,
  n: number,
  schedule?: PyramidSchedule,
) => range(0, layers).map((l) => pyramidPrefixBudget(k, w, beta, l, layers, n, schedule));

/**
 * A layer whose only observation is random window votes (what the runtime hands PyramidKV):
 * cheap at N = 1000, where a {@link randomLayer} would compute N² probabilities.
 */
function votesLayer(n: number, layer: number, numLayers: number, seed: number): LayerScoresInput {
  const rand = lcg(seed);
  const votes = [0, 1, 2, 3].map(() => Float32Array.from({ length: n }, () => rand()));
  return {
    layer,
    numLayers,
    promptLength: n,
    numKvHeads: 2,
    groupSize: 2,
    headDim: 1,
    windowAttention() {
      throw new Error("not used");
    },
    windowVotes: () => votes,
    attentionColumnSums() {
      throw new Error("not used");
    },
    keys() {
      throw new Error("not used");
    },
  };
}

/** Entries each KV head of each of `numLayers` layers keeps for a prompt of `n` tokens. */
function keptCounts(
  n: number,
  numLayers: number,
  params: { k: number; beta: number; window: number; schedule?: PyramidSchedule },
): number[][] {
  return range(0, numLayers).map((l) =>
    selectPyramid(votesLayer(n, l, numLayers, 7 + l), {
      k: { tokens: params.k },
      beta: params.beta,
      window: params.window,
      pool: 7,
      schedule: params.schedule,
    }).map((positions) => positions.length)
  );
}

// Every expected number below is worked out by hand from KVCache-Factory
// `pyramidkv/pyramidkv_utils.py` (`PyramidKVCluster.update_kv`), with C = max_capacity_prompt = k,
// W = window_size, L = num_hidden_layers and `//` floor division:
//   min_num = (C − W) // beta;  max_num = (C − W)·2 − min_num
//   if max_num >= q_len − W: max_num = q_len − W; min_num = (C − W)·2 − max_num
//   steps = (max_num − min_num) // (L − 1);  layer i keeps the top (max_num − i·steps) past tokens
//   + the W window tokens; q_len < C keeps everything; q_len < 2(C − W) keeps the top C − W + W.

Deno.test("pyramid (official): L = 4, k = 128, w = 32, beta = 20 — the three regimes by hand", () => {
  // q_len = 1000 (normal schedule): C − W = 96; min = 96 // 20 = 4; max = 192 − 4 = 188;
  // 188 ≥ 1000 − 32 = 968? no. steps = (188 − 4) // 3 = 184 // 3 = 61.
  // Prefix budgets 188, 188 − 61 = 127, 188 − 122 = 66, 188 − 183 = 5.
  assert.deepEqual(budgets(128, 32, 20, 4, 1000), [188, 127, 66, 5]);
  // Kept per head, window included: 188 + 32 = 220, 127 + 32 = 159, 66 + 32 = 98, 5 + 32 = 37.
  assert.deepEqual(keptCounts(1000, 4, { k: 128, beta: 20, window: 32 }), [
    [220, 220],
    [159, 159],
    [98, 98],
    [37, 37],
  ]);

  // q_len = 200 (max clipped by the prompt): 200 ≥ 2·96 = 192, so the pyramid branch runs;
  // max = 188 ≥ 200 − 32 = 168 → max = 168, min = 192 − 168 = 24; steps = (168 − 24) // 3 = 48.
  // Prefix budgets 168, 120, 72, 24; kept 200 (all), 152, 104, 56.
  assert.deepEqual(budgets(128, 32, 20, 4, 200), [168, 120, 72, 24]);
  assert.deepEqual(keptCounts(200, 4, { k: 128, beta: 20, window: 32 }), [
    [200, 200],
    [152, 152],
    [104, 104],
    [56, 56],
  ]);

  // q_len = 150: 128 ≤ 150 < 192 → uniform branch: top 96 past + 32 window = 128 every layer.
  assert.deepEqual(budgets(128, 32, 20, 4, 150), [96, 96, 96, 96]);
  assert.deepEqual(keptCounts(150, 4, { k: 128, beta: 20, window: 32 }), [
    [128, 128],
    [128, 128],
    [128, 128],
    [128, 128],
  ]);

  // q_len = 100 < 128 → returned uncompressed: all 100 entries (68 past + 32 window).
  assert.deepEqual(budgets(128, 32, 20, 4, 100), [68, 68, 68, 68]);
  assert.deepEqual(keptCounts(100, 4, { k: 128, beta: 20, window: 32 }), [
    [100, 100],
    [100, 100],
    [100, 100],
    [100, 100],
  ]);
});

Deno.test("pyramid (official): the issue's example, k = 128 on a 32-layer model keeps 33 at the bottom", () => {
  // C − W = 96; min = 96 // 20 = 4; max = 188 (< 4096 − 32, no clip);
  // steps = (188 − 4) // 31 = 184 // 31 = 5 (31·5 = 155 ≤ 184 < 186 = 31·6).
  // Layer 0: 188; layer 31: 188 − 31·5 = 33 past tokens (65 with the window). The real-valued
  // schedule gives min = 96/20 = 4.8 → 5 there.
  const official = budgets(128, 32, 20, 32, 4096);
  assert.equal(official[0], 188);
  assert.equal(official[1], 183);
  assert.equal(official[31], 33);
  // Σ (188 − 5l), l = 0..31 = 32·188 − 5·496 = 6016 − 2480 = 3536 → mean 110.5, not 96.
  assert.equal(official.reduce((a, b) => a + b, 0), 3536);
  assert.equal(budgets(128, 32, 20, 32, 4096, "linear")[31], 5);
});

Deno.test("pyramid (official): small integer cases, and the schema default is official", () => {
  // k = 20, w = 4, beta = 3, L = 4, N = 100: C − W = 16; min = 16 // 3 = 5; max = 32 − 5 = 27;
  // steps = 22 // 3 = 7 → 27, 20, 13, 6 (linear: 26.67, 19.56, 12.44, 5.33 → 27, 20, 12, 5).
  assert.deepEqual(budgets(20, 4, 3, 4, 100), [27, 20, 13, 6]);
  // β = 20, N = 34: min = 16 // 20 = 0; max = 32 ≥ 30 → max = 30, min = 2; steps = 28 // 2 = 14
  // → 30, 16, 2.
  assert.deepEqual(budgets(20, 4, 20, 3, 34), [30, 16, 2]);
  // N = 20 = k: not < k, and 20 < 2·16 → uniform 16 (= all 16 past tokens).
  assert.deepEqual(budgets(20, 4, 4, 3, 20), [16, 16, 16]);
  // N = 19 < k: keep everything (15 past tokens).
  assert.deepEqual(budgets(20, 4, 4, 3, 19), [15, 15, 15]);
  // One layer: uniform (the official step would divide by zero).
  assert.deepEqual(budgets(20, 4, 4, 1, 100), [16]);
  const schedule = pyramidPress.params.find((p) => p.name === "schedule");
  assert.equal(schedule?.default, "official");
  assert.deepEqual(schedule?.type, { kind: "enum", values: ["official", "linear"] });
  assert.ok(schedule?.doc.includes("KVCache-Factory"));
  // Through the policy language: the default is filled in, `linear` is accepted, others not.
  const plain = compilePolicy("else -> pyramid(k=128);");
  assert.equal(plain.plan?.rules[0].pipeline[0].params.schedule, "official");
  const linear = compilePolicy("else -> pyramid(k=128, schedule=linear);");
  assert.deepEqual(linear.diagnostics, []);
  assert.equal(linear.plan?.rules[0].pipeline[0].params.schedule, "linear");
  assert.equal(compilePolicy("else -> pyramid(k=128, schedule=cubic);").plan, null);
  // The press's own select() uses the default when the runtime passes the compiled params.
  const input = votesLayer(1000, 3, 4, 10);
  const params = plain.plan!.rules[0].pipeline[0].params;
  assert.deepEqual(pyramidPress.select!(input, params).map((p) => p.length), [37, 37]);
});

Deno.test("pyramid (linear): the earlier real-valued schedule is unchanged", () => {
  // B = 16, min = 16/4 = 4, max = 28, step = 24/4 = 6.
  assert.deepEqual(budgets(20, 4, 4, 5, 100, "linear"), [28, 22, 16, 10, 4]);
  // β = 20: min = 0.8, max = 31.2 ≥ N − w = 30 → max = 30, min = 2, step = 14.
  assert.deepEqual(budgets(20, 4, 20, 3, 34, "linear"), [30, 16, 2]);
  // N < 2B: uniform (even below k: the selection keeps everything before asking).
  assert.deepEqual(budgets(20, 4, 4, 3, 31, "linear"), [16, 16, 16]);
  assert.deepEqual(budgets(20, 4, 4, 3, 19, "linear"), [16, 16, 16]);
  // One layer: uniform.
  assert.deepEqual(budgets(20, 4, 4, 1, 100, "linear"), [16]);
  // β = 3, B = 16: min = 5.33, max = 26.67, step = 7.11 → 26.67, 19.56, 12.44, 5.33.
  assert.deepEqual(budgets(20, 4, 3, 4, 100, "linear"), [27, 20, 12, 5]);
  // L = 4, k = 128, w = 32, N = 1000: min = 4.8, max = 187.2, step = 182.4/3 = 60.8 →
  // 187.2, 126.4, 65.6, 4.8 → 187, 126, 66, 5 (official: 188, 127, 66, 5).
  assert.deepEqual(budgets(128, 32, 20, 4, 1000, "linear"), [187, 126, 66, 5]);
  assert.deepEqual(keptCounts(1000, 4, { k: 128, beta: 20, window: 32, schedule: "linear" }), [
    [219, 219],
    [158, 158],
    [98, 98],
    [37, 37],
  ]);
  // Llama-like: k = 128, w = 32 → B = 96, min = 4.8, max = 187.2; the average stays B.
  const llama = budgets(128, 32, 20, 32, 4096, "linear");
  assert.equal(llama[0], 187);
  assert.equal(llama[31], 5);
  const mean = llama.reduce((a, b) => a + b, 0) / 32;
  assert.ok(Math.abs(mean - 96) <= 0.5, `mean ${mean}`);
  for (let l = 1; l < 32; l++) assert.ok(llama[l] <= llama[l - 1]);
});

Deno.test("pyramid: selection = SnapKV (max pooling) with the layer budget", () => {
  for (const schedule of ["official", "linear"] as const) {
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
        const params = { k: { tokens: 12 }, beta: 4, window: 4, pool: 3, schedule };
        // C − W = 8; official: min = 8 // 4 = 2, max = 14, steps = 12 // 2 = 6 → 14, 8, 2;
        // linear: min = 2, max = 14, step = 6 — the same.
        const budget = [14, 8, 2][layerIndex];
        assert.equal(pyramidPrefixBudget(12, 4, 4, layerIndex, 3, n, schedule), budget);
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
  }
});

Deno.test("pyramid: edge cases keep all / last k", () => {
  const { input } = randomLayer({ promptLength: 10, numKvHeads: 1, groupSize: 2, seed: 4 });
  const base = { beta: 20, window: 4, pool: 7 };
  assert.deepEqual(selectPyramid(input, { ...base, k: { tokens: 10 } }), [range(0, 10)]);
  assert.deepEqual(selectPyramid(input, { ...base, k: { tokens: 3 } }), [[7, 8, 9]]);
  assert.equal(selectPyramid(input, { ...base, k: { fraction: 0.6 } })[0].length, 6);
});
