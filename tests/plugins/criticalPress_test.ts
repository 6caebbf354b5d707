/**
 * CriticalKV (kvpress `criticalkv_press.py`): the scorer's best int(k·first) pinned, the rest by
 * (score + eps)·‖v·W_o‖₁.
 */
import assert from "node:assert/strict";
import { selectCritical } from "../../src/plugins/criticalPress.ts";

const f64 = (xs: number[]) => Float64Array.from(xs);

Deno.test("critical: hand-computed two-stage selection", () => {
  // One head, N = 6. Scores and value weights w:
  const scores = [f64([0.9, 0.1, 0.5, 0.3, 0.05, 0.2])];
  const w = f64([1, 10, 1, 2, 30, 1]);
  const input = { promptLength: 6, projectedValueNorms: () => w };
  // k = 4, first = 0.5: pin the top 2 by score (0, 2); rescaled (eps 0): [.9, 1, .5, .6, 1.5, .2]
  // → the best two of the rest: 4 (1.5) and 1 (1.0).
  assert.deepEqual(selectCritical(input, scores, { tokens: 4 }, 0, 0.5), [[0, 1, 2, 4]]);
  // first = 1: the scorer's own top 4.
  assert.deepEqual(selectCritical(input, scores, { tokens: 4 }, 0, 1), [[0, 2, 3, 5]]);
  // first = 0: the rescaled ranking alone: 4, 1, 0, 3.
  assert.deepEqual(selectCritical(input, scores, { tokens: 4 }, 0, 0), [[0, 1, 3, 4]]);
  // eps lifts small scores: with eps = 1, rescaled = (s + 1)·w → 4 (31.5), 1 (11), 3 (2.6), …
  assert.deepEqual(selectCritical(input, scores, { tokens: 3 }, 1, 0), [[1, 3, 4]]);
  // A fraction pins int(f·N·first): 50 % of 6 keeps 3 and pins int(1.5) = 1 (position 0).
  assert.deepEqual(selectCritical(input, scores, { fraction: 0.5 }, 0, 0.5), [[0, 1, 4]]);
  // k ≥ N keeps everything.
  assert.deepEqual(selectCritical(input, scores, { tokens: 6 }, 0, 0.5), [[0, 1, 2, 3, 4, 5]]);
});

Deno.test("critical: per head, against the formula on random scores and weights", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  for (let trial = 0; trial < 20; trial++) {
    const n = 30 + trial, heads = 3;
    const scores = Array.from({ length: heads }, () => Float64Array.from({ length: n }, rand));
    const w = Array.from(
      { length: heads },
      () => Float64Array.from({ length: n }, () => 5 * rand()),
    );
    const k = 1 + (trial % n), eps = 1e-4, first = 0.5;
    const got = selectCritical(
      { promptLength: n, projectedValueNorms: (h) => w[h] },
      scores,
      { tokens: k },
      eps,
      first,
    );
    scores.forEach((s, h) => {
      const order = (xs: number[]) =>
        xs.map((x, i) => [x, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      const pinned = order([...s]).slice(0, Math.floor(k * first)).map(([, i]) => i);
      const rest = order([...s].map((x, i) => (x + eps) * w[h][i]))
        .filter(([, i]) => !pinned.includes(i))
        .slice(0, k - pinned.length)
        .map(([, i]) => i);
      assert.deepEqual(
        got[h],
        [...pinned, ...rest].sort((a, b) => a - b),
        `trial ${trial} head ${h}`,
      );
    });
  }
});
