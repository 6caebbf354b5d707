/** TOVA (kvpress `tova_press.py`): the last query's attention averaged over every query head. */
import assert from "node:assert/strict";
import { selectTova, tovaScores } from "../../src/plugins/tovaPress.ts";
import { randomLayer, referenceTop } from "./_inputs.ts";

Deno.test("tova: hand-computed, one set per layer, the last token always kept", () => {
  // Four query heads (two KV heads of two), five positions. Means over ALL four heads of
  // positions 0..3: [0.225, 0.2, 0.2, 0.25]; position 4 (the last query itself) is always kept.
  const rows = [
    [0.1, 0.2, 0.1, 0.4, 0.2],
    [0, 0.4, 0.1, 0.3, 0.2],
    [0.5, 0.1, 0.2, 0.1, 0.1],
    [0.3, 0.1, 0.4, 0.2, 0],
  ].map((r) => new Float32Array(r));
  const input = { promptLength: 5, numKvHeads: 2, windowAttention: () => rows };
  const scores = Array.from(tovaScores(input), (x) => Math.round(x * 1e6) / 1e6);
  assert.deepEqual(scores, [0.225, 0.2, 0.2, 0.25]);
  assert.deepEqual(selectTova(input, { k: { tokens: 1 } }), [[4], [4]]);
  assert.deepEqual(selectTova(input, { k: { tokens: 2 } }), [[3, 4], [3, 4]]);
  assert.deepEqual(selectTova(input, { k: { tokens: 3 } }), [[0, 3, 4], [0, 3, 4]]);
  // A tie between 1 and 2 (0.2 each) goes to the lower position.
  assert.deepEqual(selectTova(input, { k: { tokens: 4 } }), [[0, 1, 3, 4], [0, 1, 3, 4]]);
  assert.deepEqual(selectTova(input, { k: { tokens: 5 } })[0], [0, 1, 2, 3, 4]);
  // Fractions keep int(f·N), as kvpress's int(L·(1−r)): 50% of 5 is 2.
  assert.deepEqual(selectTova(input, { k: { fraction: 0.5 } })[0], [3, 4]);
  // The GPU's one-row votes are the same numbers.
  const votes = { ...input, windowVotes: (w: number) => (assert.equal(w, 1), rows) };
  assert.deepEqual(selectTova(votes, { k: { tokens: 3 } }), [[0, 3, 4], [0, 3, 4]]);
});

Deno.test("tova: matches the formula on random layers (softmax of the last query, mean over heads)", () => {
  for (const seed of [1, 2, 3]) {
    const n = 37, kvHeads = 2, group = 3;
    const { input, prob } = randomLayer({
      promptLength: n,
      numKvHeads: kvHeads,
      groupSize: group,
      seed,
    });
    const mean = Array.from({ length: n - 1 }, (_, j) => {
      let sum = 0;
      for (let h = 0; h < kvHeads * group; h++) sum += Math.fround(prob(h, n - 1, j));
      return sum / (kvHeads * group);
    });
    for (const k of [1, 2, 9, 36]) {
      const expected = [...referenceTop(mean, k - 1), n - 1];
      assert.deepEqual(selectTova(input, { k: { tokens: k } }), [expected, expected], `k=${k}`);
    }
  }
});
