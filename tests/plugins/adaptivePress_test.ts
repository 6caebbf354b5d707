/**
 * `adaptive` (kvpress `adakv_press.py`, `AdaKVPress`): each head pins its top int(k·safeguard),
 * then the layer keeps its H_kv·k best entries over all heads, so the heads' budgets differ.
 */
import assert from "node:assert/strict";
import { adaptivePress, selectAdaptive } from "../../src/plugins/adaptivePress.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";

const f64 = (xs: number[]) => Float64Array.from(xs);

Deno.test("adaptive: hand-computed budgets, the safeguard, ties to the lower position and head", () => {
  // Two heads, N = 6, k = 3 per head: 6 entries over the layer. Head 0 scores high everywhere.
  const scores = [f64([9, 8, 7, 6, 5, 0]), f64([1, 4, 0, 0, 2, 0])];
  // safeguard 0.4: int(3·0.4) = 1 pinned per head (head 1: position 1); then the best 6 over both
  // heads: head 1's pin (∞) and head 0's 9, 8, 7, 6, 5 → budgets 5 and 1.
  assert.deepEqual(selectAdaptive(scores, { tokens: 3 }, 0.4), [[0, 1, 2, 3, 4], [1]]);
  // safeguard 0.7: int(3·0.7) = 2 pinned per head (head 1: 1 and 4) → head 0 keeps 9, 8, 7, 6.
  assert.deepEqual(selectAdaptive(scores, { tokens: 3 }, 0.7), [[0, 1, 2, 3], [1, 4]]);
  // safeguard 1: every head keeps its own top k, as without Ada-KV.
  assert.deepEqual(selectAdaptive(scores, { tokens: 3 }, 1), [[0, 1, 2], [0, 1, 4]]);
  // safeguard 0 still leaves each head one entry (kvpress would pin none).
  assert.deepEqual(selectAdaptive(scores, { tokens: 3 }, 0), [[0, 1, 2, 3, 4], [1]]);
  // Ties: equal scores across heads go to the lower head, then the lower position.
  const flat = [f64([1, 1, 1, 1]), f64([1, 1, 1, 1])];
  assert.deepEqual(selectAdaptive(flat, { tokens: 2 }, 0.5), [[0, 1, 2], [0]]);
  // Fractions: k = max(1, int(N·f)) = int(6·0.5) = 3 (kvpress's compute_n_kept).
  assert.deepEqual(
    selectAdaptive(scores, { fraction: 0.5 }, 0.4),
    selectAdaptive(scores, { tokens: 3 }, 0.4),
  );
  // A budget of the whole prompt keeps everything.
  assert.deepEqual(selectAdaptive(scores, { tokens: 6 }, 0.2)[1], [0, 1, 2, 3, 4, 5]);
});

Deno.test("adaptive: H_kv·k kept over the layer, every head at least its pins, as kvpress counts", () => {
  let state = 7;
  const rand = () => (state = (state * 48271) % 2147483647) / 2147483647;
  for (const [heads, n, k, safeguard] of [[3, 50, 12, 0.2], [4, 33, 5, 0.5], [2, 10, 9, 0.2]]) {
    const scores = Array.from({ length: heads }, () => Float64Array.from({ length: n }, rand));
    const kept = selectAdaptive(scores, { tokens: k }, safeguard);
    assert.equal(kept.flat().length, heads * k);
    const pins = Math.max(1, Math.floor(k * safeguard));
    kept.forEach((positions, h) => {
      assert.ok(positions.length >= pins, `head ${h}: ${positions.length} < ${pins}`);
      assert.deepEqual(positions, [...positions].sort((a, b) => a - b));
      // The head's own top `pins` are among them.
      const order = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
        scores[h][b] - scores[h][a]
      );
      for (const i of order.slice(0, pins)) assert.ok(positions.includes(i), `head ${h} pin ${i}`);
    });
    // Every entry left out scores no higher than the lowest unpinned entry kept.
    const pinned = (h: number, i: number) =>
      Array.from({ length: n }, (_, j) => j).sort((a, b) => scores[h][b] - scores[h][a])
        .slice(0, pins).includes(i);
    let lowestKept = Infinity, highestDropped = -Infinity;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < n; i++) {
        if (kept[h].includes(i)) {
          if (!pinned(h, i)) lowestKept = Math.min(lowestKept, scores[h][i]);
        } else highestDropped = Math.max(highestDropped, scores[h][i]);
      }
    }
    assert.ok(highestDropped <= lowestKept, `${highestDropped} > ${lowestKept}`);
  }
});

Deno.test("adaptive: a rescoring press after any scorer, default safeguard 0.2", () => {
  assert.equal(adaptivePress.role, "rescore");
  const plan = compileOrThrow("else -> expected(k=25%, eps=0.01) + adaptive;");
  const pipeline = plan.rules[0].pipeline;
  assert.deepEqual(pipeline.map((p) => p.name), ["expected", "adaptive"]);
  assert.equal(pipeline[1].params.safeguard, 0.2);
});
