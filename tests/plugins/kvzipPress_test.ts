/**
 * KVzip (kvpress `kvzip_press.py`): the reconstruction chunks and repeat inputs, and the global
 * and layer-wise cuts (the scores are checked in tests/gpu/kvzipScores_test.ts and end to end in
 * tests/presses/kvzip_test.ts).
 */
import assert from "node:assert/strict";
import { kvzipChunks, kvzipRepeatIds, selectKvzip } from "../../src/plugins/kvzipPress.ts";

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
