import assert from "node:assert/strict";
import { topPositions } from "../../src/plugins/press.ts";

/** The definition: sort indices by score (descending), ties by index, keep `count`, ascending. */
function byIndexSort(scores: number[], count: number): number[] {
  const order = scores.map((_, i) => i);
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  return order.slice(0, Math.max(0, Math.min(count, scores.length))).sort((a, b) => a - b);
}

Deno.test("topPositions equals the index sort on random scores with many ties", () => {
  let state = 7;
  const rand = () => (state = (state * 1103515245 + 12345) >>> 0) / 4294967296;
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(rand() * 60);
    const levels = 1 + Math.floor(rand() * 6); // few distinct values: ties at the threshold
    const scores = Array.from(
      { length: n },
      () => Math.floor(rand() * levels) - 2 + (trial % 3 ? 0 : rand()),
    );
    for (const count of [0, 1, Math.floor(n / 3), n - 1, n, n + 5, -1]) {
      assert.deepEqual(
        topPositions(scores, count),
        byIndexSort(scores, count),
        `${scores} ${count}`,
      );
    }
  }
  assert.deepEqual(topPositions(Float32Array.of(0, -0, 0), 2), [0, 1]);
  assert.deepEqual(topPositions([3, 1, 3, 2, 3], 2), [0, 2]);
});

Deno.test("topPositions equals the index sort on long, sorted, reversed, constant and organ-pipe inputs", () => {
  let state = 11;
  const rand = () => (state = (state * 1103515245 + 12345) >>> 0) / 4294967296;
  const n = 3000;
  const inputs: Record<string, number[]> = {
    random: Array.from({ length: n }, rand),
    ascending: Array.from({ length: n }, (_, i) => i),
    descending: Array.from({ length: n }, (_, i) => n - i),
    constant: Array(n).fill(0.5),
    organPipe: Array.from({ length: n }, (_, i) => Math.min(i, n - 1 - i)),
    fewLevels: Array.from({ length: n }, () => Math.floor(rand() * 3)),
  };
  for (const [name, scores] of Object.entries(inputs)) {
    for (const count of [1, 7, 992, 1500, n - 1]) {
      assert.deepEqual(topPositions(scores, count), byIndexSort(scores, count), `${name} ${count}`);
    }
  }
});
