/**
 * GPU KIVI packing equals the CPU reference (`quantizeKeys` / `quantizeValues`): at prefill time
 * (`quantConvert` from a full-precision layer, ragged heads, a head left unquantised) and during
 * decode (`quantAppend` packing the oldest residual block every G appended tokens).
 */
import assert from "node:assert/strict";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { quantAppend } from "../../src/gpu/kernels/quantAppend.ts";
import { quantConvert } from "../../src/gpu/kernels/quantConvert.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { runOps } from "../../src/gpu/op.ts";
import { createQuantKvLayer, readQuantMeta } from "../../src/gpu/quantKvCache.ts";
import { quantizedTokenCount } from "../../src/plugins/quantPress.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { RefKvCache } from "./_kvReference.ts";
import { assertPackedEqual, readHeadPacked, refQuantStream } from "./_quantReference.ts";
import { randomF32, rng } from "./_reference.ts";

// [bits, group, residual, head_dim, dtype, prompt tokens]
const cases: Array<[number, number, number, number, KvDType, number]> = [
  [4, 32, 32, 36, "f32", 150],
  [2, 8, 5, 20, "f32", 61],
  [8, 5, 0, 12, "f16", 33],
  [4, 6, 3, 44, "f32", 40],
];

for (const [bits, group, residual, D, dtype, T0] of cases) {
  gpuTest(
    `quant pack b${bits} G${group} R${residual} D${D} ${dtype}: prefill conversion and decode blocks`,
    async (ctx) => {
      const rand = rng(bits * 100 + group + D);
      const p = { bits, group, residual };
      const Hkv = 3;
      // Ragged heads (head 1 holds fewer entries); head 2 stays unquantised.
      const caps = [T0, T0 - 11, T0];
      const src = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: caps, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      const k = randomF32(rand, T0 * Hkv * D, 3), v = randomF32(rand, T0 * Hkv * D);
      runAndFree(ctx, [kvAppend(ctx, { cache: src, k: ctx.upload(k), v: ctx.upload(v), m: T0 })]);
      ref.append(k, v, T0, D, caps);
      const steps = 2 * group + 3;
      const dst = createQuantKvLayer(ctx, {
        headDim: D,
        dtype,
        quant: { bits, group, residuals: [residual, residual, null] },
        maxEntries: caps.map((c) => c + steps),
      });
      runAndFree(ctx, [quantConvert(ctx, { src, dst })]);
      const check = async (when: string) => {
        const meta = await readQuantMeta(ctx, dst);
        for (let h = 0; h < Hkv; h++) {
          const T = ref.k[h].length;
          const Q = h === 2 ? 0 : quantizedTokenCount(T, p);
          assert.equal(meta[h].length, T, `${when} head ${h}: length`);
          assert.equal(meta[h].packed, Q, `${when} head ${h}: packed`);
          if (h === 2) continue;
          const want = { k: refQuantStream(ref.k[h], D, p), v: refQuantStream(ref.v[h], D, p) };
          const got = await readHeadPacked(ctx, dst, h, Q);
          // Bit for bit on CPU adapters; GPUs may round a boundary code the other way.
          const tol = ctx.isFallbackAdapter ? 0 : bits;
          assertPackedEqual(got.keys, want.k.keys, `${when} head ${h} keys`, tol);
          assertPackedEqual(got.values, want.v.values, `${when} head ${h} values`, tol);
        }
      };
      await check("prefill");
      assert.ok((await readQuantMeta(ctx, dst))[0].packed > 0, "the case packs something");
      // Decode: one token at a time, then three at once.
      const kn = ctx.createBuffer(3 * Hkv * D * 4), vn = ctx.createBuffer(3 * Hkv * D * 4);
      const one = quantAppend(ctx, { cache: dst, k: kn, v: vn, m: 1 });
      for (let s = 0; s < steps - 3; s++) {
        const ks = randomF32(rand, Hkv * D, 3), vs = randomF32(rand, Hkv * D);
        ctx.write(kn, 0, ks);
        ctx.write(vn, 0, vs);
        runOps(ctx, [one]);
        ref.append(ks, vs, 1, D, [1e9, 1e9, 1e9]);
      }
      one.destroy();
      const ks = randomF32(rand, 3 * Hkv * D, 3), vs = randomF32(rand, 3 * Hkv * D);
      ctx.write(kn, 0, ks);
      ctx.write(vn, 0, vs);
      runAndFree(ctx, [quantAppend(ctx, { cache: dst, k: kn, v: vn, m: 3 })]);
      ref.append(ks, vs, 3, D, [1e9, 1e9, 1e9]);
      await check("decode");
    },
  );
}
