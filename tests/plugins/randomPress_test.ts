/** Random press: seeded, per-(layer, head) streams, uniform, sorted and well-formed. */
import assert from "node:assert/strict";
import { selectRandom } from "../../src/plugins/randomPress.ts";
import { range } from "./_inputs.ts";

Deno.test("random: deterministic, sorted, distinct, k per head", () => {
  const input = { layer: 3, promptLength: 50, numKvHeads: 4 };
  const a = selectRandom(input, { k: { tokens: 10 }, seed: 7 });
  const b = selectRandom(input, { k: { tokens: 10 }, seed: 7 });
  assert.deepEqual(a, b);
  for (const kept of a) {
    assert.equal(kept.length, 10);
    assert.equal(new Set(kept).size, 10);
    assert.deepEqual(kept, [...kept].sort((x, y) => x - y));
    for (const p of kept) assert.ok(Number.isInteger(p) && p >= 0 && p < 50);
  }
  // Heads, layers and seeds get different draws.
  assert.notDeepEqual(a[0], a[1]);
  assert.notDeepEqual(a, selectRandom({ ...input, layer: 4 }, { k: { tokens: 10 }, seed: 7 }));
  assert.notDeepEqual(a, selectRandom(input, { k: { tokens: 10 }, seed: 8 }));
});

Deno.test("random: N ≤ k keeps all, fractions resolve, never empty", () => {
  const input = { layer: 0, promptLength: 6, numKvHeads: 2 };
  assert.deepEqual(selectRandom(input, { k: { tokens: 6 }, seed: 0 }), [range(0, 6), range(0, 6)]);
  assert.equal(selectRandom(input, { k: { fraction: 0.5 }, seed: 0 })[0].length, 3);
  assert.equal(selectRandom(input, { k: { fraction: 0.01 }, seed: 0 })[1].length, 1);
});

Deno.test("random: every position is kept with frequency ≈ k/N", () => {
  const n = 20, k = 5, trials = 4000;
  const counts = new Array(n).fill(0);
  for (let seed = 0; seed < trials; seed++) {
    for (
      const p of selectRandom({ layer: 0, promptLength: n, numKvHeads: 1 }, {
        k: { tokens: k },
        seed,
      })[0]
    ) {
      counts[p]++;
    }
  }
  const expected = (trials * k) / n; // 1000, sd ≈ 27
  for (const c of counts) assert.ok(Math.abs(c - expected) < 130, `count ${c} vs ${expected}`);
});
