/**
 * Decode attention over a quantised layer equals attention computed on the CPU over the
 * reference's dequantised entries plus the full-precision residual — with GQA, ragged heads, an
 * unquantised head in the same layer, and blocks packed between decode steps.
 */
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { quantAppend } from "../../src/gpu/kernels/quantAppend.ts";
import { quantConvert } from "../../src/gpu/kernels/quantConvert.ts";
import { quantDecodeAttention } from "../../src/gpu/kernels/quantDecodeAttention.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { runOps } from "../../src/gpu/op.ts";
import { createQuantKvLayer } from "../../src/gpu/quantKvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { RefKvCache } from "./_kvReference.ts";
import { refQuantStream } from "./_quantReference.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

// [bits, group, residual, head_dim, GQA group, dtype, split size]
const cases: Array<[number, number, number, number, number, KvDType, number | undefined]> = [
  [4, 32, 32, 36, 2, "f32", 16],
  [2, 8, 5, 20, 3, "f16", 8],
  [8, 6, 4, 12, 1, "f32", undefined],
];

for (const [bits, group, residual, D, gqa, dtype, splitSize] of cases) {
  gpuTest(
    `quant attention b${bits} G${group} R${residual} D${D} GQA${gqa} ${dtype}: packed + residual`,
    async (ctx) => {
      const rand = rng(7 * bits + D);
      const p = { bits, group, residual };
      const Hkv = 3, H = Hkv * gqa, T0 = 97, steps = 2 * group + 1, scale = 1 / Math.sqrt(D);
      const caps = [T0, T0 - 20, T0 - 40];
      const src = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: caps, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      const k = randomF32(rand, T0 * Hkv * D, 2), v = randomF32(rand, T0 * Hkv * D);
      runAndFree(ctx, [kvAppend(ctx, { cache: src, k: ctx.upload(k), v: ctx.upload(v), m: T0 })]);
      ref.append(k, v, T0, D, caps);
      const residuals = [residual, residual, null];
      const cache = createQuantKvLayer(ctx, {
        headDim: D,
        dtype,
        quant: { bits, group, residuals },
        maxEntries: caps.map((c) => c + steps),
      });
      runAndFree(ctx, [quantConvert(ctx, { src, dst: cache })]);
      const q = ctx.createBuffer(H * D * 4), out = ctx.createBuffer(H * D * 4);
      const kn = ctx.createBuffer(Hkv * D * 4), vn = ctx.createBuffer(Hkv * D * 4);
      const ops = [
        quantAppend(ctx, { cache, k: kn, v: vn, m: 1 }),
        quantDecodeAttention(ctx, { cache, q, out, numHeads: H, splitSize }),
      ];
      for (let step = 0; step < steps; step++) {
        const qs = randomF32(rand, H * D, 2);
        const ks = randomF32(rand, Hkv * D, 2), vs = randomF32(rand, Hkv * D);
        ctx.write(q, 0, qs);
        ctx.write(kn, 0, ks);
        ctx.write(vn, 0, vs);
        runOps(ctx, ops);
        ref.append(ks, vs, 1, D, [1e9, 1e9, 1e9]);
        const got = await ctx.readF32(out, 0, H * D);
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / gqa);
          const quantised = residuals[kvh] !== null;
          const keys = quantised ? refQuantStream(ref.k[kvh], D, p).attendKeys : ref.k[kvh];
          const values = quantised ? refQuantStream(ref.v[kvh], D, p).attendValues : ref.v[kvh];
          const r = refAttend(qs.subarray(h * D, h * D + D), keys, values, scale);
          assertClose(got.subarray(h * D, h * D + D), r.out, 1e-4, 0, `step ${step} head ${h}`);
        }
      }
      for (const op of ops) op.destroy();
    },
  );
}
