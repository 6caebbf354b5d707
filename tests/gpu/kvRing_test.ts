import assert from "node:assert/strict";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { createKvCacheLayer, readKvLengths } from "../../src/gpu/kvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";

gpuTest(
  "kv ring: a full head with a ring start overwrites its oldest non-sink row",
  async (ctx) => {
    // Head 0: capacity 5, ring start 2 (2 sinks + 3 recent); head 1: capacity 5, no ring.
    const [Hkv, D] = [2, 4];
    const cache = createKvCacheLayer(ctx, {
      numKvHeads: Hkv,
      headDim: D,
      capacity: 5,
      ringStart: [2, undefined],
    });
    const k = ctx.createBuffer(Hkv * D * 4);
    const v = ctx.createBuffer(Hkv * D * 4);
    // Append tokens 0..8 one at a time; token t has k = v = t in every element.
    for (let t = 0; t < 9; t++) {
      ctx.device.queue.writeBuffer(k, 0, new Float32Array(Hkv * D).fill(t));
      ctx.device.queue.writeBuffer(v, 0, new Float32Array(Hkv * D).fill(t));
      runAndFree(ctx, [kvAppend(ctx, { cache, k, v, m: 1 })]);
    }
    const rows = await ctx.readF32(cache.k, 0, 10 * D);
    const head = (h: number) => Array.from({ length: 5 }, (_, r) => rows[(h * 5 + r) * D]);
    // Ring: sinks 0, 1 stay; rows 2..4 hold the last three tokens (6, 7, 8) in ring order.
    assert.deepEqual(head(0).slice(0, 2), [0, 1]);
    assert.deepEqual([...head(0).slice(2)].sort((a, b) => a - b), [6, 7, 8]);
    // No ring: the first five stay and later tokens are dropped.
    assert.deepEqual(head(1), [0, 1, 2, 3, 4]);
    const { lengths, dropped } = await readKvLengths(ctx, cache);
    assert.deepEqual(lengths, [5, 5]);
    assert.deepEqual(dropped, [4, 4]);
    assert.throws(
      () => createKvCacheLayer(ctx, { numKvHeads: 1, headDim: 4, capacity: 3, ringStart: [3] }),
      /ring start 3 outside head 0's capacity/,
    );
  },
);
