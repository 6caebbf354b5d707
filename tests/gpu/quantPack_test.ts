/**
 * GPU KIVI packing equals the CPU reference (`quantizeKeys` / `quantizeValues`) under KIVI's own
 * residual semantics (`KiviStream`, a step-by-step model of jy-yuan/KIVI's cache): at prefill
 * time (`quantConvert` from a full-precision layer, ragged heads, a head left unquantised) and
 * during decode — after each append (the state attention sees: 1 … R full keys, up to R + 1 full
 * values) and after each settle (keys packed R at a time, values one token at a time).
 */
import assert from "node:assert/strict";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { quantAppend, quantSettle } from "../../src/gpu/kernels/quantAppend.ts";
import { quantConvert } from "../../src/gpu/kernels/quantConvert.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { runOps } from "../../src/gpu/op.ts";
import { createQuantKvLayer, readQuantMeta } from "../../src/gpu/quantKvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { RefKvCache } from "./_kvReference.ts";
import {
  assertPackedEqual,
  KiviStream,
  readHeadPacked,
  refQuantStream,
} from "./_quantReference.ts";
import { randomF32, rng } from "./_reference.ts";

// [key bits, value bits, group, residual, head_dim, dtype, prompt tokens]
const cases: Array<[number, number, number, number, number, KvDType, number]> = [
  [4, 4, 32, 32, 36, "f32", 150],
  [2, 2, 8, 16, 20, "f16", 61],
  [8, 8, 5, 5, 12, "f16", 33],
  [4, 4, 6, 12, 44, "f32", 40],
  // KIVI's separate key / value bits.
  [2, 4, 4, 8, 16, "f32", 27],
  [8, 2, 8, 24, 28, "f16", 48],
];

for (const [kbits, vbits, group, residual, D, dtype, T0] of cases) {
  gpuTest(
    `quant pack K${kbits}V${vbits} G${group} R${residual} D${D} ${dtype}: prefill and decode as KIVI`,
    async (ctx) => {
      const rand = rng(kbits * 100 + vbits * 7 + group + D);
      const p = { kbits, vbits, group, residual };
      const Hkv = 3;
      // Ragged heads (head 1 holds fewer entries); head 2 stays unquantised.
      const caps = [T0, T0 - 11, T0];
      const src = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: caps, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      const k = randomF32(rand, T0 * Hkv * D, 3), v = randomF32(rand, T0 * Hkv * D);
      runAndFree(ctx, [kvAppend(ctx, { cache: src, k: ctx.upload(k), v: ctx.upload(v), m: T0 })]);
      ref.append(k, v, T0, D, caps);
      const kivi = caps.map(() => new KiviStream(residual));
      kivi.forEach((s, h) => s.prefill(caps[h]));
      const steps = 2 * residual + 3;
      const dst = createQuantKvLayer(ctx, {
        headDim: D,
        dtype,
        quant: { kbits, vbits, group, residuals: [residual, residual, null] },
        maxEntries: caps.map((c) => c + steps),
      });
      runAndFree(ctx, [quantConvert(ctx, { src, dst })]);
      let packedSomething = false;
      const check = async (when: string) => {
        const meta = await readQuantMeta(ctx, dst);
        for (let h = 0; h < Hkv; h++) {
          const T = ref.k[h].length;
          const want = h === 2
            ? { keys: 0, values: 0 }
            : { keys: kivi[h].keysPacked, values: kivi[h].valuesPacked };
          assert.equal(meta[h].length, T, `${when} head ${h}: length`);
          assert.equal(meta[h].packedKeys, want.keys, `${when} head ${h}: packed keys`);
          assert.equal(meta[h].packedValues, want.values, `${when} head ${h}: packed values`);
          if (h === 2) continue;
          packedSomething ||= want.values > 0;
          const wk = refQuantStream(ref.k[h], D, p, want),
            wv = refQuantStream(ref.v[h], D, p, want);
          const got = await readHeadPacked(ctx, dst, h, want.keys, want.values);
          // Bit for bit on CPU adapters; GPUs may round a boundary code the other way.
          const tol = (bits: number) => ctx.isFallbackAdapter ? 0 : bits;
          assertPackedEqual(got.keys, wk.keys, `${when} head ${h} keys`, tol(kbits));
          assertPackedEqual(got.values, wv.values, `${when} head ${h} values`, tol(vbits));
        }
      };
      await check("prefill");
      // Decode: one token at a time (append, check what attention would see, settle, check).
      const kn = ctx.createBuffer(3 * Hkv * D * 4), vn = ctx.createBuffer(3 * Hkv * D * 4);
      const one = quantAppend(ctx, { cache: dst, k: kn, v: vn, m: 1 });
      const settle = quantSettle(ctx, dst);
      for (let s = 0; s < steps - 3; s++) {
        const ks = randomF32(rand, Hkv * D, 3), vs = randomF32(rand, Hkv * D);
        ctx.write(kn, 0, ks);
        ctx.write(vn, 0, vs);
        runOps(ctx, [one]);
        ref.append(ks, vs, 1, D, [1e9, 1e9, 1e9]);
        kivi.forEach((k) => k.append());
        if (s % 7 === 0 || s === residual - 1) await check(`step ${s} before settling`);
        runOps(ctx, [settle]);
        kivi.forEach((k) => k.settle());
        await check(`step ${s}`);
      }
      one.destroy();
      // Three tokens in one append: each settles what the one before left, as three steps would.
      const ks = randomF32(rand, 3 * Hkv * D, 3), vs = randomF32(rand, 3 * Hkv * D);
      ctx.write(kn, 0, ks);
      ctx.write(vn, 0, vs);
      runAndFree(ctx, [quantAppend(ctx, { cache: dst, k: kn, v: vn, m: 3 }), settle]);
      ref.append(ks, vs, 3, D, [1e9, 1e9, 1e9]);
      for (let i = 0; i < 3; i++) kivi.forEach((k) => (k.append(), k.settle()));
      await check("three at once");
      assert.ok(packedSomething, "the case packs values");
    },
  );
}

gpuTest("quant: a head at its capacity drops appends and counts them", async (ctx) => {
  const D = 8, dtype = "f32", group = 4, residual = 4;
  const src = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: D, capacity: [6], dtype });
  const rand = rng(5);
  runAndFree(ctx, [kvAppend(ctx, {
    cache: src,
    k: ctx.upload(randomF32(rand, 6 * D)),
    v: ctx.upload(randomF32(rand, 6 * D)),
    m: 6,
  })]);
  const dst = createQuantKvLayer(ctx, {
    headDim: D,
    dtype,
    quant: { kbits: 4, vbits: 4, group, residuals: [residual] },
    maxEntries: [8],
  });
  runAndFree(ctx, [quantConvert(ctx, { src, dst })]);
  const kn = ctx.upload(randomF32(rand, 3 * D)), vn = ctx.upload(randomF32(rand, 3 * D));
  runAndFree(ctx, [quantAppend(ctx, { cache: dst, k: kn, v: vn, m: 3 }), quantSettle(ctx, dst)]);
  const [head] = await readQuantMeta(ctx, dst);
  // 6 + 3 appends into room for 8: one dropped; settled at T = 8 (R = 4): keys 8, values 4.
  assert.deepEqual(head, { length: 8, packedKeys: 8, packedValues: 4, dropped: 1 });
});
