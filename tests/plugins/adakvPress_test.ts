/**
 * Ada-KV as KVCache-Factory runs it: normalised scores compete for the layer's slots, budgets
 * rounded with a floor, then per-head SnapKV top.
 */
import assert from "node:assert/strict";
import { adakvHeadBudgets, selectAdakv } from "../../src/plugins/adakvPress.ts";
import { randomLayer, range, referenceSnapScores, referenceTop } from "./_inputs.ts";

Deno.test("adakv: head budgets, hand-computed with KVCache-Factory's formula", () => {
  const strong = [9, 8, 7, 6], weak = [1, 2, 3, 0.5];
  const raw = (s: number[][], b: number, f: number) => adakvHeadBudgets(s, b, f, false);
  // Top 4 all in head 0: round(4·0.8 + int(2·0.2) = 0) = round(3.2) = 3; head 1 gets 0. The
  // official rounding leaves one of the 4 slots unused.
  assert.deepEqual(raw([strong, weak], 2, 0.2), [3, 0]);
  // floor 0.5: floor capacity int(1.0) = 1 → [4·0.5 + 1, 0 + 1] = [3, 1].
  assert.deepEqual(raw([strong, weak], 2, 0.5), [3, 1]);
  // floor 1: uniform.
  assert.deepEqual(raw([strong, weak], 2, 1), [2, 2]);
  // Interleaved: top 4 = 9, 8 (h0), 7.5 (h1), 7 (h0) → counts [3, 1]; floor 0 → [3, 1].
  assert.deepEqual(raw([[9, 8, 7, 1], [7.5, 0, 0, 0]], 2, 0), [3, 1]);
  // Ties between heads go to the lower head.
  assert.deepEqual(raw([[1, 1], [1, 1]], 1, 0), [2, 0]);
  // counts [3, 2, 1], floor 0.25: 2.25 → 2, 1.5 → 2 (half to even), 0.75 → 1.
  assert.deepEqual(raw([[9, 8, 7], [6, 5, 0], [4, 0, 0]], 2, 0.25), [2, 2, 1]);
  // counts [2, 0], floor 0.75 (capacity int(0.75) = 0): 2·0.25 = 0.5 → 0 (half to even).
  assert.deepEqual(raw([[5, 4], [1, 0]], 1, 0.75), [0, 0]);
});

Deno.test("adakv: normalize scales each head by its top-B share of score mass", () => {
  // budget 2. Raw top 4: 0.5, 0.5 (h0), 0.46 (h1), 0.45 (h0) → counts [3, 1].
  // Normalised: h0 × 1.0/1.45 → 0.3448, 0.3448, 0.3103; h1 × 0.78/0.78 = 1 → 0.46, 0.32, 0:
  // top 4 = 0.46, 0.3448, 0.3448, 0.32 → counts [2, 2].
  const scores = [[0.5, 0.5, 0.45], [0.46, 0.32, 0]];
  assert.deepEqual(adakvHeadBudgets(scores, 2, 0, false), [3, 1]);
  assert.deepEqual(adakvHeadBudgets(scores, 2, 0, true), [2, 2]);
  assert.deepEqual(adakvHeadBudgets(scores, 2, 0), [2, 2], "normalize is the default");
  // a head with no score mass gets weight 0, not NaN
  assert.deepEqual(adakvHeadBudgets([[0, 0, 0], [1, 2, 3]], 1, 0), [0, 2]);
});

Deno.test("adakv: selection matches a reference written from the official code", () => {
  for (const normalize of [true, false]) {
    for (const groupSize of [1, 2, 4]) {
      for (const seed of [1, 2, 3]) {
        const n = 36, window = 4, B = 6;
        const layer = randomLayer({
          promptLength: n,
          numKvHeads: 4,
          groupSize,
          seed: seed + 100 * groupSize,
          sharpness: 5,
        });
        const params = { k: { tokens: 10 }, floor: 0.2, window, pool: 3, normalize };
        const got = selectAdakv(layer.input, params);
        const scores = range(0, 4).map((kv) => referenceSnapScores(layer, kv, window, 3, "max"));
        // ratio_weight = sorted[:B].sum() / sorted.sum(), per head
        const weighted = scores.map((s) => {
          const sorted = [...s].sort((a, b) => b - a);
          const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
          const w = normalize ? sum(sorted.slice(0, B)) / sum(sorted) : 1;
          return s.map((x) => x * w);
        });
        // the global competition: repeated argmax over (head, position) pairs
        const counts = [0, 0, 0, 0];
        const taken = weighted.map((s) => s.map(() => false));
        for (let slot = 0; slot < 4 * B; slot++) {
          let best: [number, number] | null = null;
          for (let kv = 0; kv < 4; kv++) {
            for (let j = 0; j < n - window; j++) {
              if (taken[kv][j]) continue;
              if (best === null || weighted[kv][j] > weighted[best[0]][best[1]]) best = [kv, j];
            }
          }
          taken[best![0]][best![1]] = true;
          counts[best![0]]++;
        }
        // torch.round(count·(1 − 0.2) + int(6·0.2) = 1); no value here lands on a half
        const budgets = counts.map((c) => Math.round(Math.fround(c * Math.fround(0.8)) + 1));
        for (let kv = 0; kv < 4; kv++) {
          assert.equal(got[kv].length - window, budgets[kv], `normalize ${normalize} head ${kv}`);
          const want = [...referenceTop(scores[kv], budgets[kv]), ...range(n - window, n)];
          assert.deepEqual(got[kv], want);
        }
      }
    }
  }
});

Deno.test("adakv: edge cases keep all / last k", () => {
  const { input } = randomLayer({ promptLength: 10, numKvHeads: 2, groupSize: 2, seed: 4 });
  const base = { floor: 0.2, window: 4, pool: 7 };
  assert.deepEqual(selectAdakv(input, { ...base, k: { tokens: 11 } }), [
    range(0, 10),
    range(0, 10),
  ]);
  assert.deepEqual(selectAdakv(input, { ...base, k: { tokens: 2 } }), [[8, 9], [8, 9]]);
  // k = 5 of 10: B = 1 prefix slot per head, capacity round(count·0.8 + int(0.2) = 0)
  const half = selectAdakv(input, { ...base, k: { fraction: 0.5 } });
  assert.ok(half[0].length + half[1].length <= 10);
  assert.ok(half.every((h) => h.length >= 4 && h.slice(-4).join() === "6,7,8,9"));
});
