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

Deno.test("kvzip: the first 4 positions stay; the global cut varies per layer and head; layer-wise keeps each layer's share", () => {
  // Two layers × two heads × 6 positions; the sinks score lowest of all and still stay.
  const sinks = [0, 0, 0, 0];
  const all = [
    [Float64Array.from([...sinks, 0.9, 0.1]), Float64Array.from([...sinks, 0.5, 0.2])],
    [Float64Array.from([...sinks, 0.05, 0.3]), Float64Array.from([...sinks, 0.04, 0.06])],
  ];
  const input = (layer: number) => ({
    layer,
    promptLength: 6,
    numKvHeads: 2,
    reconstruction: () => all,
  });
  // Remove 25 % of 24 = 6 entries over the whole model: the six scored ones below 0.5.
  const global = { k: { fraction: 0.75 }, chunk: 2048, layerwise: false };
  assert.deepEqual(selectKvzip(input(0), global), [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]);
  assert.deepEqual(selectKvzip(input(1), global), [[0, 1, 2, 3], [0, 1, 2, 3]]);
  // Layer-wise: 3 of each layer's 12.
  const layerwise = { ...global, layerwise: true };
  assert.deepEqual(selectKvzip(input(0), layerwise), [[0, 1, 2, 3, 4], [0, 1, 2, 3]]);
  assert.deepEqual(selectKvzip(input(1), layerwise), [[0, 1, 2, 3, 5], [0, 1, 2, 3]]);
  // Removing 90 % (21 of 24) reaches the sinks, later positions first; layer 1's head 1 loses
  // all six and, emptied, keeps its best entry.
  const deep = { ...global, k: { fraction: 0.1 } };
  assert.deepEqual(selectKvzip(input(0), deep), [[0], [0]]);
  assert.deepEqual(selectKvzip(input(1), deep), [[0], [0]]);
});
