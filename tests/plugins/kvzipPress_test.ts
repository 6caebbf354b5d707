/**
 * KVzip (kvpress `kvzip_press.py`): the reconstruction chunks and repeat inputs, the chunk scores
 * (max attention weight over the repeat's queries, softmax over sink + chunk + repeat), and the
 * global and layer-wise cuts.
 */
import assert from "node:assert/strict";
import {
  kvzipChunks,
  kvzipChunkScores,
  kvzipRepeatIds,
  selectKvzip,
} from "../../src/plugins/kvzipPress.ts";
import { lcg } from "./_inputs.ts";

const PROMPTS = { first: [900, 901], later: [910], suffix: [920] };

Deno.test("kvzip: chunks and repeat inputs quote the previous chunk's last 8 tokens", () => {
  const context = Array.from({ length: 25 }, (_, i) => i);
  const chunks = kvzipChunks(25, 10);
  assert.deepEqual(chunks, [[0, 10], [10, 20], [20, 25]]);
  assert.deepEqual(kvzipRepeatIds(context, chunks, 0, PROMPTS), [
    900,
    901,
    920,
    ...context.slice(0, 10),
  ]);
  assert.deepEqual(kvzipRepeatIds(context, chunks, 2, PROMPTS), [
    910,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    920,
    20,
    21,
    22,
    23,
    24,
  ]);
});

Deno.test("kvzip: chunk scores follow the formula (sink + chunk + causal repeat; max over rows and group)", () => {
  const rand = lcg(9);
  const d = 4, n = 12, rows = 5, group = 2, start = 6, end = 10;
  const keys = Float32Array.from({ length: (n + rows) * d }, () => rand() * 4 - 2);
  const q = Array.from(
    { length: rows * group },
    () => Array.from({ length: d }, () => rand() * 4 - 2),
  );
  const scores = new Float64Array(n).fill(-1);
  kvzipChunkScores((r, h) => q[r * group + h], group, rows, keys, d, n, start, end, scores);
  for (let j = 0; j < n; j++) {
    if (j < start || j >= end) {
      assert.equal(scores[j], -1, "only the chunk is scored");
      continue;
    }
    let want = 0;
    for (let r = 0; r < rows; r++) {
      for (let h = 0; h < group; h++) {
        const visible = [
          0,
          1,
          2,
          3,
          ...Array.from({ length: end - start }, (_, i) => start + i),
          ...Array.from({ length: r + 1 }, (_, i) => n + i),
        ];
        const logit = (i: number) =>
          q[r * group + h].reduce((s, x, e) => s + x * keys[i * d + e], 0) / Math.sqrt(d);
        const z = visible.reduce((s, i) => s + Math.exp(logit(i)), 0);
        want = Math.max(want, Math.exp(logit(j)) / z);
      }
    }
    assert.ok(Math.abs(scores[j] - want) < 1e-12, `${j}: ${scores[j]} vs ${want}`);
  }
});

Deno.test("kvzip: the global cut varies per layer and head; layer-wise keeps each layer's share", () => {
  // Two layers × two heads × 4 positions.
  const all = [
    [Float64Array.from([0.9, 0.8, 0.7, 0.6]), Float64Array.from([0.5, 0.4, 0.3, 0.2])],
    [Float64Array.from([0.1, 0.05, 0.01, 0.02]), Float64Array.from([0.95, 0.03, 0.04, 0.06])],
  ];
  const input = (layer: number) => ({
    layer,
    promptLength: 4,
    numKvHeads: 2,
    reconstruction: () => all,
  });
  // Remove 50 % of 16: threshold = sorted[7] = 0.2; layer 0 loses its 0.2, layer 1 all but 0.95.
  const global = { k: { fraction: 0.5 }, chunk: 2048, layerwise: false };
  assert.deepEqual(selectKvzip(input(0), global), [[0, 1, 2, 3], [0, 1, 2]]);
  assert.deepEqual(selectKvzip(input(1), global), [[0], [0]]); // an emptied head keeps its best
  const layerwise = { ...global, layerwise: true };
  // Layer 0 loses its 4 lowest, all in head 1, which keeps its best.
  assert.deepEqual(selectKvzip(input(0), layerwise), [[0, 1, 2, 3], [0]]);
  assert.deepEqual(selectKvzip(input(1), layerwise), [[0, 1], [0, 3]]);
});
