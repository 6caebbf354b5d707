/** Knorm: the lowest-norm keys are kept. */
import assert from "node:assert/strict";
import { keyNorms, selectKnorm } from "../../src/plugins/knormPress.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import { randomLayer, range, referenceTop } from "./_inputs.ts";

function keysInput(rows: number[][][], headDim: number): LayerScoresInput {
  return {
    layer: 0,
    numLayers: 1,
    promptLength: rows[0].length,
    numKvHeads: rows.length,
    groupSize: 1,
    headDim,
    windowAttention: () => {
      throw new Error("not used");
    },
    attentionColumnSums: () => {
      throw new Error("not used");
    },
    keys: (kv) => Float32Array.from(rows[kv].flat()),
  };
}

Deno.test("knorm: hand-computed, lowest norm first, ties to the lower position", () => {
  // norms: 5, 1, 2, 1, 10, 0
  const head = [[3, 4], [1, 0], [0, 2], [0, -1], [6, 8], [0, 0]];
  const input = keysInput([head, [...head].reverse()], 2);
  assert.deepEqual(Array.from(keyNorms(Float32Array.from(head.flat()), 2)), [5, 1, 2, 1, 10, 0]);
  assert.deepEqual(selectKnorm(input, { k: { tokens: 1 } }), [[5], [0]]);
  assert.deepEqual(selectKnorm(input, { k: { tokens: 2 } }), [[1, 5], [0, 2]]);
  assert.deepEqual(selectKnorm(input, { k: { tokens: 3 } }), [[1, 3, 5], [0, 2, 4]]);
  assert.deepEqual(selectKnorm(input, { k: { tokens: 4 } }), [[1, 2, 3, 5], [0, 2, 3, 4]]);
  assert.deepEqual(selectKnorm(input, { k: { tokens: 6 } }), [range(0, 6), range(0, 6)]);
  assert.deepEqual(selectKnorm(input, { k: { fraction: 0.5 } })[0], [1, 3, 5]);
});

Deno.test("knorm: matches sorting by norm on random keys", () => {
  for (const seed of [1, 2, 3, 4]) {
    const { input, keyRows } = randomLayer({
      promptLength: 40,
      numKvHeads: 3,
      groupSize: 2,
      headDim: 8,
      seed,
    });
    for (const k of [1, 7, 20, 39]) {
      const got = selectKnorm(input, { k: { tokens: k } });
      keyRows.forEach((rows, kv) => {
        const negNorms = rows.map((key) => -Math.hypot(...key.map(Math.fround)));
        assert.deepEqual(got[kv], referenceTop(negNorms, k));
      });
    }
  }
});
