/** Ada-KV: head budgets from a global competition with a floor, then per-head SnapKV top. */
import assert from "node:assert/strict";
import { adakvHeadBudgets, selectAdakv } from "../../src/plugins/adakvPress.ts";
import { randomLayer, range, referenceSnapScores, referenceTop } from "./_inputs.ts";

Deno.test("adakv: head budgets, hand-computed", () => {
  const strong = [9, 8, 7, 6], weak = [1, 2, 3, 0.5];
  // Global top 4 all in head 0: ideal [4·0.8 + 0.4, 0.4] = [3.6, 0.4] → [4, 0].
  assert.deepEqual(adakvHeadBudgets([strong, weak], 2, 0.2), [4, 0]);
  // floor 0.5: ideal [3, 1].
  assert.deepEqual(adakvHeadBudgets([strong, weak], 2, 0.5), [3, 1]);
  // floor 1: uniform.
  assert.deepEqual(adakvHeadBudgets([strong, weak], 2, 1), [2, 2]);
  // Interleaved: top 4 = 9, 8 (h0), 7.5 (h1), 7 (h0) → counts [3, 1]; floor 0 → [3, 1].
  assert.deepEqual(adakvHeadBudgets([[9, 8, 7, 1], [7.5, 0, 0, 0]], 2, 0), [3, 1]);
  // Ties between heads go to the lower head.
  assert.deepEqual(adakvHeadBudgets([[1, 1], [1, 1]], 1, 0), [2, 0]);
  // Three heads, remainders: counts [3, 2, 1] of 6 (budget 2), floor 0.25 → ideal
  // [2.75, 2, 1.25] → floors [2, 2, 1], one unit left → head 0 (.75).
  assert.deepEqual(adakvHeadBudgets([[9, 8, 7], [6, 5, 0], [4, 0, 0]], 2, 0.25), [3, 2, 1]);
});

Deno.test("adakv: selection matches a reference and the layer total is exact", () => {
  for (const groupSize of [1, 2, 4]) {
    for (const seed of [1, 2, 3]) {
      const n = 36;
      const layer = randomLayer({
        promptLength: n,
        numKvHeads: 4,
        groupSize,
        seed: seed + 100 * groupSize,
        sharpness: 5,
      });
      const params = { k: { tokens: 10 }, floor: 0.2, window: 4, pool: 3 };
      const got = selectAdakv(layer.input, params);
      const scores = range(0, 4).map((kv) => referenceSnapScores(layer, kv, 4, 3, "max"));
      // Reference competition: repeated argmax over (head, position) pairs.
      const counts = [0, 0, 0, 0];
      const taken = scores.map((s) => s.map(() => false));
      for (let slot = 0; slot < 4 * 6; slot++) {
        let best: [number, number] | null = null;
        for (let kv = 0; kv < 4; kv++) {
          for (let j = 0; j < n - 4; j++) {
            if (taken[kv][j]) continue;
            if (best === null || scores[kv][j] > scores[best[0]][best[1]]) best = [kv, j];
          }
        }
        taken[best![0]][best![1]] = true;
        counts[best![0]]++;
      }
      const ideal = counts.map((c) => c * 0.8 + 0.2 * 6);
      let total = 0;
      for (let kv = 0; kv < 4; kv++) {
        const budget = got[kv].length - 4;
        assert.ok(Math.abs(budget - ideal[kv]) < 1, `budget ${budget} vs ideal ${ideal[kv]}`);
        assert.deepEqual(got[kv], [...referenceTop(scores[kv], budget), ...range(n - 4, n)]);
        total += got[kv].length;
      }
      assert.equal(total, 4 * 10);
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
  const half = selectAdakv(input, { ...base, k: { fraction: 0.5 } });
  assert.equal(half[0].length + half[1].length, 10);
});
