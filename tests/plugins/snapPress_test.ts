/** SnapKV selection: hand-computed cases, GQA averaging, edge cases, a from-definition reference. */
import assert from "node:assert/strict";
import { poolScores, selectSnap, snapPrefixScores } from "../../src/plugins/snapPress.ts";
import {
  explicitWindowInput,
  randomLayer,
  range,
  referenceSnapScores,
  referenceTop,
} from "./_inputs.ts";

// N = 10, window = 2: the prefix is 0..7; summed votes are [.1, 0, 0, .5, 0, 0, 0, .3].
const ROWS_N10 = [
  [0.1, 0, 0, 0.2, 0, 0, 0, 0.1, 0.6, 0],
  [0, 0, 0, 0.3, 0, 0, 0, 0.2, 0.25, 0.25],
];

Deno.test("snap: N=10, window=2, pool=3, max pooling, hand-computed", () => {
  const input = explicitWindowInput(10, 1, 1, [ROWS_N10]);
  // pooled: [.1, .1, .5, .5, .5, 0, .3, .3]
  const params = { window: 2, pool: 3, reduce: "max" as const };
  assert.deepEqual(selectSnap(input, { ...params, k: { tokens: 5 } }), [[2, 3, 4, 8, 9]]);
  // Fourth prefix slot: a tie between 6 and 7 (both .3) goes to the lower position.
  assert.deepEqual(selectSnap(input, { ...params, k: { tokens: 6 } }), [[2, 3, 4, 6, 8, 9]]);
  assert.deepEqual(selectSnap(input, { ...params, k: { tokens: 7 } }), [[2, 3, 4, 6, 7, 8, 9]]);
  // Eighth: ties among 0 and 1 (.1) → 0.
  assert.deepEqual(selectSnap(input, { ...params, k: { tokens: 8 } }), [[0, 2, 3, 4, 6, 7, 8, 9]]);
});

Deno.test("snap: pool=1 ranks raw votes; avg pooling counts padding as zeros", () => {
  const input = explicitWindowInput(10, 1, 1, [ROWS_N10]);
  assert.deepEqual(
    selectSnap(input, { k: { tokens: 4 }, window: 2, pool: 1, reduce: "max" }),
    [[3, 7, 8, 9]],
  );
  const votes = [0.1, 0, 0, 0.5, 0, 0, 0, 0.3];
  const avg = Array.from(poolScores(votes, 3, "avg"));
  const expected = [0.1 / 3, 0.1 / 3, 0.5 / 3, 0.5 / 3, 0.5 / 3, 0, 0.3 / 3, 0.3 / 3];
  avg.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) < 1e-15, `avg[${i}]`));
  assert.deepEqual(Array.from(poolScores(votes, 3, "max")), [0.1, 0.1, 0.5, 0.5, 0.5, 0, 0.3, 0.3]);
  // Even kernel: output j covers j−2 … j+1 (PyTorch's first N outputs).
  assert.deepEqual(Array.from(poolScores([1, 0, 0, 0, 2], 4, "max")), [1, 1, 1, 2, 2]);
  assert.deepEqual(
    selectSnap(input, { k: { tokens: 4 }, window: 2, pool: 3, reduce: "avg" }),
    [[2, 3, 8, 9]],
  );
});

Deno.test("snap: GQA scores are the MEAN over the group's query heads", () => {
  // Head 0 loves position 1, head 1 position 5; position 3 is liked by both.
  const head0 = [[0, 0.6, 0, 0.45, 0, 0, 0, 0.05, 0, 0]];
  const head1 = [[0, 0, 0, 0.45, 0, 0.5, 0, 0.05, 0, 0]];
  const input = explicitWindowInput(10, 1, 2, [head0, head1]);
  const pick = (k: number) =>
    selectSnap(input, { k: { tokens: k }, window: 1, pool: 1, reduce: "max" });
  // means: 1 → .3, 3 → .45, 5 → .25; a max over the group would rank 1 first.
  assert.deepEqual(pick(2), [[3, 9]]);
  assert.deepEqual(pick(3), [[1, 3, 9]]);
  assert.deepEqual(pick(4), [[1, 3, 5, 9]]);
});

Deno.test("snap: edge cases (N ≤ k, k ≤ window, window ≥ N, fractions, never empty)", () => {
  const { input } = randomLayer({ promptLength: 12, numKvHeads: 2, groupSize: 2, seed: 1 });
  const base = { window: 4, pool: 3, reduce: "max" as const };
  assert.deepEqual(selectSnap(input, { ...base, k: { tokens: 12 } }), [range(0, 12), range(0, 12)]);
  assert.deepEqual(selectSnap(input, { ...base, k: { tokens: 50 } })[1], range(0, 12));
  assert.deepEqual(selectSnap(input, { ...base, k: { tokens: 4 } }), [range(8, 12), range(8, 12)]);
  assert.deepEqual(selectSnap(input, { ...base, k: { tokens: 3 } }), [range(9, 12), range(9, 12)]);
  assert.deepEqual(selectSnap(input, { ...base, k: { fraction: 0 } }), [[11], [11]]);
  assert.deepEqual(selectSnap(input, { ...base, window: 40, k: { tokens: 5 } })[0], range(7, 12));
  // 0.5 · 12 = 6 entries: 2 prefix + 4 window.
  const half = selectSnap(input, { ...base, k: { fraction: 0.5 } });
  for (const kept of half) {
    assert.equal(kept.length, 6);
    assert.deepEqual(kept.slice(2), range(8, 12));
  }
  const one = randomLayer({ promptLength: 1, numKvHeads: 1, groupSize: 1, seed: 2 }).input;
  assert.deepEqual(selectSnap(one, { ...base, k: { tokens: 1 } }), [[0]]);
});

Deno.test("snap: matches a from-definition reference on random layers (GQA 1/2/4)", () => {
  let cases = 0;
  for (const groupSize of [1, 2, 4]) {
    for (const seed of [1, 2, 3, 4, 5]) {
      const n = 20 + seed * 7;
      const layer = randomLayer({
        promptLength: n,
        numKvHeads: 2,
        groupSize,
        seed: seed * 31 + groupSize,
      });
      for (
        const [window, pool, reduce] of [
          [4, 3, "max"],
          [8, 7, "max"],
          [5, 5, "avg"],
          [1, 1, "max"],
          [6, 4, "avg"],
        ] as const
      ) {
        for (const k of [window + 1, Math.floor(n / 2), n - 1]) {
          if (k <= window) continue;
          const got = selectSnap(layer.input, { k: { tokens: k }, window, pool, reduce });
          for (let kv = 0; kv < 2; kv++) {
            const scores = referenceSnapScores(layer, kv, window, pool, reduce);
            const expected = [...referenceTop(scores, k - window), ...range(n - window, n)];
            assert.deepEqual(got[kv], expected, `g=${groupSize} seed=${seed} w=${window} k=${k}`);
            cases++;
          }
        }
      }
    }
  }
  assert.ok(cases > 100);
});

Deno.test("snap: scores equal the reference within float rounding", () => {
  const layer = randomLayer({ promptLength: 30, numKvHeads: 2, groupSize: 4, seed: 9 });
  const scores = snapPrefixScores(layer.input, 6, 5, "avg");
  for (let kv = 0; kv < 2; kv++) {
    const expected = referenceSnapScores(layer, kv, 6, 5, "avg");
    assert.equal(scores[kv].length, 24);
    expected.forEach((x, j) => assert.ok(Math.abs(scores[kv][j] - x) < 1e-12));
  }
});
