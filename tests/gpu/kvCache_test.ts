import assert from "node:assert/strict";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { kvCompact, uploadKvSelection } from "../../src/gpu/kernels/kvCompact.ts";
import {
  createKvCacheLayer,
  kvCacheBytes,
  type KvDType,
  readKvLengths,
} from "../../src/gpu/kvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomSubset, RefKvCache } from "./_kvReference.ts";
import { assertClose, randomF32, rng } from "./_reference.ts";

async function readHead(
  ctx: Parameters<Parameters<typeof gpuTest>[1]>[0],
  buf: GPUBuffer,
  dtype: KvDType,
  row0: number,
  rows: number,
  D: number,
): Promise<number[][]> {
  const out: number[][] = [];
  if (rows === 0) return out;
  const eb = dtype === "f32" ? 4 : 2;
  const bytes = await ctx.read(buf, row0 * D * eb, rows * D * eb);
  const vals = dtype === "f32" ? new Float32Array(bytes) : new Float16Array(bytes);
  for (let r = 0; r < rows; r++) out.push(Array.from(vals.subarray(r * D, r * D + D)));
  return out;
}

for (const dtype of ["f32", "f16"] as KvDType[]) {
  gpuTest(
    `kv cache ${dtype}: append in chunks, overflow, compaction into ragged heads`,
    async (ctx) => {
      const rand = rng(21);
      const [Hkv, D] = [3, 12];
      const caps = [40, 25, 33];
      const cache = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: caps, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      for (const m of [17, 1, 14]) {
        const k = randomF32(rand, m * Hkv * D), v = randomF32(rand, m * Hkv * D);
        runAndFree(ctx, [kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m })]);
        ref.append(k, v, m, D, caps);
      }
      const { lengths, dropped } = await readKvLengths(ctx, cache);
      assert.deepEqual(lengths, [32, 25, 32]);
      assert.deepEqual(dropped, [0, 7, 0]);
      for (let h = 0; h < Hkv; h++) {
        const got = await readHead(ctx, cache.k, dtype, cache.bases[h], lengths[h], D);
        assertClose(got.flat(), ref.k[h].flat(), 0, 0, `k head ${h}`);
      }
      // compaction: ragged kept sets, destination sized to what is kept (+2 for decoding)
      const sel = [
        randomSubset(rand, 32, 9),
        randomSubset(rand, 25, 0),
        randomSubset(rand, 32, 32),
      ];
      const dst = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: sel.map((s) => s.length + 2),
        dtype,
      });
      assert.ok(kvCacheBytes(dst) < kvCacheBytes(cache));
      runAndFree(ctx, [
        kvCompact(ctx, { src: cache, dst, selection: uploadKvSelection(ctx, sel), maxCount: 32 }),
      ]);
      ref.compact(sel);
      assert.deepEqual((await readKvLengths(ctx, dst)).lengths, [9, 0, 32]);
      for (let h = 0; h < Hkv; h++) {
        const k = await readHead(ctx, dst.k, dtype, dst.bases[h], sel[h].length, D);
        const v = await readHead(ctx, dst.v, dtype, dst.bases[h], sel[h].length, D);
        assertClose(k.flat(), ref.k[h].flat(), 0, 0, `compacted k head ${h}`);
        assertClose(v.flat(), ref.v[h].flat(), 0, 0, `compacted v head ${h}`);
      }
    },
  );
}
