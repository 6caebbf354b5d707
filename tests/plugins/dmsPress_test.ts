/** DMS-style threshold (kvpress `dms_press.py`, dense prefill): evict below a threshold. */
import assert from "node:assert/strict";
import { selectAboveThreshold } from "../../src/plugins/dmsPress.ts";
import { knormPress } from "../../src/plugins/knormPress.ts";
import { dmsPress } from "../../src/plugins/dmsPress.ts";
import { rescoreSelect } from "../../src/plugins/press.ts";
import { randomLayer } from "./_inputs.ts";

const f64 = (xs: number[]) => Float64Array.from(xs);
const ALL = { fraction: 1 };

Deno.test("dms: a threshold outside the protected window, per head", () => {
  const scores = [f64([5, -1, 3, 0, -2, 9]), f64([-5, -5, -5, -5, -5, -5])];
  // window 2 protects positions 4 and 5; older ones stay iff score ≥ 0 (strictly below evicts).
  assert.deepEqual(selectAboveThreshold(scores, ALL, 0, 2), [[0, 2, 3, 4, 5], [4, 5]]);
  assert.deepEqual(selectAboveThreshold(scores, ALL, 3, 2), [[0, 2, 4, 5], [4, 5]]);
  // No window: a head with nothing above the threshold keeps its last position.
  assert.deepEqual(selectAboveThreshold(scores, ALL, 0, 0), [[0, 2, 3, 5], [5]]);
  // The scorer's k caps a head: the window first, then the best scores above the threshold.
  assert.deepEqual(selectAboveThreshold(scores, { tokens: 3 }, 0, 2), [[0, 4, 5], [4, 5]]);
  assert.deepEqual(selectAboveThreshold(scores, { tokens: 1 }, 0, 2), [[5], [5]]);
  // A window longer than the prompt protects everything.
  assert.deepEqual(selectAboveThreshold(scores, ALL, 100, 128)[1], [0, 1, 2, 3, 4, 5]);
});

Deno.test("knorm + dms: keeps exactly the keys with norm ≤ −threshold, and the window", () => {
  const { input, keyRows } = randomLayer({
    promptLength: 60,
    numKvHeads: 3,
    groupSize: 1,
    headDim: 4,
    seed: 5,
  });
  const threshold = -3.5, window = 10;
  const kept = rescoreSelect(input, knormPress, { k: ALL }, dmsPress, { threshold, window });
  keyRows.forEach((rows, kv) => {
    const expected = rows.flatMap((key, j) =>
      j >= 50 || -Math.hypot(...key.map(Math.fround)) >= threshold ? [j] : []
    );
    assert.deepEqual(kept[kv], expected, `head ${kv}`);
  });
  // Budgets differ per head: the point of a threshold.
  assert.ok(new Set(kept.map((k) => k.length)).size > 1, JSON.stringify(kept.map((k) => k.length)));
});
