/**
 * CriticalKV (kvpress `criticalkv_press.py`): the scorer's best int(k·first) pinned, the rest by
 * (score + eps)·‖v·W_o‖₁.
 */
import assert from "node:assert/strict";
import { selectCritical, selectCriticalAdaptive } from "../../src/plugins/criticalPress.ts";

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

Deno.test("critical(adaptive): kvpress's CriticalAdaKV budgets, by hand and against the steps", () => {
  // Two heads, N = 6, k = 3 (50 %): H·k = 6 entries over the layer.
  const scores = [f64([0.9, 0.8, 0.7, 0.6, 0.05, 0.01]), f64([0.3, 0.02, 0.03, 0.04, 0.5, 0.06])];
  const w = [f64([1, 1, 1, 1, 1, 1]), f64([1, 1, 50, 1, 1, 1])];
  const input = { promptLength: 6, projectedValueNorms: (h: number) => w[h] };
  // safeguard 0.34: int(3·0.34) = 1 pinned per head (0 and 4); the layer's 6 best: head 0's
  // 0 (pinned), 1, 2, 3 and head 1's 4 (pinned), 0 → budgets 4 and 2.
  // Head 0: stage 1 pins int(4·0.5) = 2 (0, 1), rescaled ranks 2, 3 next → [0, 1, 2, 3].
  // Head 1: stage 1 pins int(2·0.5) = 1 (4); rescaled: 2 (0.03 + 1e-4)·50 = 1.505 beats 0 (0.3).
  assert.deepEqual(
    selectCriticalAdaptive(input, scores, { fraction: 0.5 }, 1e-4, 0.5, 0.34),
    [[0, 1, 2, 3], [2, 4]],
  );
  // Budgets always sum to H·k, every head keeps at least its safeguard.
  let seed = 11;
  const rand = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  for (let trial = 0; trial < 20; trial++) {
    const n = 40, heads = 4, k = 5 + trial;
    const s = Array.from(
      { length: heads },
      () => Float64Array.from({ length: n }, () => rand() ** 4),
    );
    const ww = Array.from({ length: heads }, () => Float64Array.from({ length: n }, () => rand()));
    const kept = selectCriticalAdaptive(
      { promptLength: n, projectedValueNorms: (h) => ww[h] },
      s,
      { tokens: k },
      1e-4,
      0.5,
      0.2,
    );
    assert.equal(kept.reduce((a, x) => a + x.length, 0), heads * k, `trial ${trial}`);
    kept.forEach((x, h) => {
      const safe = [...s[h]].map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1])
        .slice(0, Math.floor(k * 0.2)).map(([, i]) => i);
      for (const i of safe) {
        assert.ok(x.includes(i), `trial ${trial} head ${h} keeps its safeguard`);
      }
    });
  }
});
