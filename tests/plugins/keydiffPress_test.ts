/**
 * KeyDiff (kvpress `keydiff_press.py`, and `block_press.py` for the block-wise iteration): keep
 * the keys least similar (cosine) to the mean unit key.
 */
import assert from "node:assert/strict";
import { keydiffScores, selectKeydiff } from "../../src/plugins/keydiffPress.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import { randomLayer, referenceTop } from "./_inputs.ts";

function keysInput(rows: number[][][]): Pick<
  LayerScoresInput,
  "promptLength" | "numKvHeads" | "headDim" | "keys"
> {
  return {
    promptLength: rows[0].length,
    numKvHeads: rows.length,
    headDim: rows[0][0].length,
    keys: (kv) => Float32Array.from(rows[kv].flat()),
  };
}

Deno.test("keydiff: hand-computed scores and selection", () => {
  // Unit keys e1, (3, 1)/√10, e2, (1, 1)/√2: the anchor is their mean.
  const head = [[1, 0], [3, 1], [0, 2], [2, 2]];
  const a = [
    (1 + 3 / Math.sqrt(10) + Math.SQRT1_2) / 4,
    (1 / Math.sqrt(10) + 1 + Math.SQRT1_2) / 4,
  ];
  const norm = Math.hypot(a[0], a[1]);
  const expected = head.map((k) => -(k[0] * a[0] + k[1] * a[1]) / (Math.hypot(k[0], k[1]) * norm));
  const got = keydiffScores(Float32Array.from(head.flat()), 2, [0, 1, 2, 3]);
  got.forEach((s, i) => assert.ok(Math.abs(s - expected[i]) < 1e-12, `${s} vs ${expected[i]}`));
  // Cosines to the anchor: 0.796, 0.946, 0.606, 0.991: e2 is the most distinctive, then e1.
  const input = keysInput([head]);
  assert.deepEqual(selectKeydiff(input, { k: { tokens: 1 }, block: 0 }), [[2]]);
  assert.deepEqual(selectKeydiff(input, { k: { tokens: 2 }, block: 0 }), [[0, 2]]);
  assert.deepEqual(selectKeydiff(input, { k: { tokens: 3 }, block: 0 }), [[0, 1, 2]]);
  assert.deepEqual(selectKeydiff(input, { k: { fraction: 0.6 }, block: 0 }), [[0, 2]]); // int(2.4)
});

/** kvpress's BlockPress loop over KeyDiff, written out with explicit sets. */
function blockReference(keys: number[][], k: number, block: number): number[] {
  const n = keys.length;
  let kept = Array.from({ length: k }, (_, i) => i);
  for (let start = k; start < n; start += block) {
    const candidates = [...kept];
    for (let i = start; i < Math.min(n, start + block); i++) candidates.push(i);
    const units = candidates.map((i) => keys[i].map((x) => x / Math.hypot(...keys[i])));
    const anchor = units[0].map((_, d) => units.reduce((s, u) => s + u[d], 0) / units.length);
    const cos = units.map((u) =>
      u.reduce((s, x, d) => s + x * anchor[d], 0) / Math.hypot(...anchor)
    );
    kept = referenceTop(cos.map((c) => -c), k).map((i) => candidates[i]);
  }
  return kept.sort((x, y) => x - y);
}

Deno.test("keydiff: one-shot and block-wise match the reference on random keys", () => {
  for (const seed of [1, 2, 3]) {
    const { input, keyRows } = randomLayer({
      promptLength: 50,
      numKvHeads: 2,
      groupSize: 2,
      headDim: 6,
      seed,
    });
    const f32 = keyRows.map((rows) => rows.map((key) => key.map(Math.fround)));
    // Block sizes where no block ends with a single new key: two candidates are always an exact
    // tie (both equally far from their mean), which float rounding alone would decide.
    for (const [k, block] of [[1, 7], [2, 8], [7, 8], [20, 8], [49, 8]]) {
      const oneShot = selectKeydiff(input, { k: { tokens: k }, block: 0 });
      const blocks = selectKeydiff(input, { k: { tokens: k }, block });
      f32.forEach((keys, kv) => {
        assert.deepEqual(oneShot[kv], blockReference(keys, k, 50), `one-shot k=${k}`);
        assert.deepEqual(blocks[kv], blockReference(keys, k, block), `blocks k=${k}`);
      });
    }
    // Blocks change the answer (else the test could not tell them apart).
    const a = selectKeydiff(input, { k: { tokens: 10 }, block: 0 });
    const b = selectKeydiff(input, { k: { tokens: 10 }, block: 8 });
    assert.notDeepEqual(a, b);
  }
});
