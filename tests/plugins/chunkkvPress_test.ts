/**
 * ChunkKV (kvpress `chunkkv_press.py` over `snapkv_press.py`): the scorer's per-head scores summed
 * over heads, averaged per chunk, the best chunks kept whole.
 */
import assert from "node:assert/strict";
import { chunksKept, selectChunks } from "../../src/plugins/chunkkvPress.ts";
import { rescoreSelect } from "../../src/plugins/press.ts";
import { snapPress, snapScores } from "../../src/plugins/snapPress.ts";
import { chunkkvPress } from "../../src/plugins/chunkkvPress.ts";
import { randomLayer, referenceTop } from "./_inputs.ts";

const f64 = (xs: number[]) => Float64Array.from(xs);

Deno.test("chunkkv: hand-computed chunks, a partial last chunk, ties to the lower chunk", () => {
  // Two heads, N = 7, chunks of 3: [0,1,2] [3,4,5] [6]. Summed over heads:
  // [1, 1, 1, 5, 0, 1, 2] → means 1, 2, 2 (the partial chunk is averaged over its one position).
  const scores = [f64([1, 0, 1, 2, 0, 0, 1]), f64([0, 1, 0, 3, 0, 1, 1])];
  assert.deepEqual(selectChunks(scores, { tokens: 3 }, 3), [[3, 4, 5], [3, 4, 5]]); // 1 of 3
  assert.deepEqual(selectChunks(scores, { tokens: 5 }, 3)[0], [3, 4, 5, 6]); // 2 chunks (tie: 1 < 2)
  assert.deepEqual(selectChunks(scores, { tokens: 7 }, 3)[0], [0, 1, 2, 3, 4, 5, 6]);
  // Fractions keep int(C·f) chunks of C = 3: 50 % → 1; 70 % → 2; 10 % → at least 1.
  assert.equal(chunksKept({ fraction: 0.5 }, 3, 7), 1);
  assert.equal(chunksKept({ fraction: 0.7 }, 3, 7), 2);
  assert.equal(chunksKept({ fraction: 0.1 }, 3, 7), 1);
  // Shorter than one chunk: the scorer's own per-head top-k (here 2 of 7 per head).
  assert.deepEqual(selectChunks(scores, { tokens: 2 }, 8), [[0, 3], [1, 3]]);
});

/**
 * kvpress's SnapKV scores, written from `snapkv_press.py`: the window queries' softmax averaged
 * over the window, avg-pooled per query head (kernel 5, padding 2, zeros counted), averaged per
 * group, the window padded with the maximum.
 */
function kvpressSnapScores(
  prob: (h: number, i: number, j: number) => number,
  n: number,
  kvHeads: number,
  group: number,
  window: number,
  kernel: number,
): number[][] {
  const prefix = n - window, half = Math.floor(kernel / 2);
  const perHead = Array.from({ length: kvHeads * group }, (_, h) => {
    const mean = Array.from({ length: prefix }, (_, j) => {
      let s = 0;
      for (let i = n - window; i < n; i++) s += Math.fround(prob(h, i, j));
      return s / window;
    });
    return mean.map((_, j) => {
      let s = 0;
      for (let t = j - half; t <= j + half; t++) if (t >= 0 && t < prefix) s += mean[t];
      return s / kernel;
    });
  });
  const grouped = Array.from({ length: kvHeads }, (_, kv) =>
    perHead[0].map((_, j) => {
      let s = 0;
      for (let g = 0; g < group; g++) s += perHead[kv * group + g][j];
      return s / group;
    }));
  const max = Math.max(...grouped.flat());
  return grouped.map((g) => [...g, ...Array(window).fill(max + 1)]);
}

Deno.test("snap + chunkkv: kvpress's registry default (SnapKV window 64, avg kernel 5, chunks of 20)", () => {
  for (const seed of [1, 2]) {
    const n = 173, kvHeads = 2, group = 2, window = 64;
    const { input, prob } = randomLayer({
      promptLength: n,
      numKvHeads: kvHeads,
      groupSize: group,
      seed,
    });
    const params = { k: { fraction: 0.6 }, window, pool: 5, reduce: "avg" };
    // The scores, against kvpress's formula.
    const ours = snapScores(input, params as never);
    const theirs = kvpressSnapScores(prob, n, kvHeads, group, window, 5);
    ours.forEach((head, kv) =>
      head.forEach((s, j) => assert.ok(Math.abs(s - theirs[kv][j]) < 1e-9, `score ${kv},${j}`))
    );
    // ChunkKV on kvpress's scores: 9 chunks (8 of 20 and one of 13); int(9 · 0.6) = 5 kept: the
    // three inside the window (their means tie, up to rounding) and the best two others.
    const sums = theirs[0].map((_, j) => theirs[0][j] + theirs[1][j]);
    const means = Array.from({ length: 9 }, (_, c) => {
      const part = sums.slice(c * 20, Math.min(n, c * 20 + 20));
      return part.reduce((a, b) => a + b, 0) / part.length;
    });
    const expected = referenceTop(means, 5).flatMap((c) =>
      Array.from({ length: Math.min(n, c * 20 + 20) - c * 20 }, (_, i) => c * 20 + i)
    );
    const kept = rescoreSelect(input, snapPress, params as never, chunkkvPress, { chunk: 20 });
    assert.deepEqual(kept, [expected, expected]);
    for (let p = 120; p < n; p++) assert.ok(kept[0].includes(p), `window chunk position ${p}`);
  }
});
