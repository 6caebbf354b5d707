import assert from "node:assert/strict";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { rope, uploadInvFreq } from "../../src/gpu/kernels/rope.ts";
import { createKvCacheLayer } from "../../src/gpu/kvCache.ts";
import { assertSameFloats, gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, randomF32, rng } from "./_reference.ts";

function refRope(x: Float32Array, pos: number[], heads: number, D: number, inv: Float32Array) {
  const out = Float64Array.from(x);
  const half = D / 2;
  pos.forEach((p, m) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const a = Math.fround(p * inv[i]);
        const j = (m * heads + h) * D + i;
        const x1 = x[j], x2 = x[j + half];
        out[j] = x1 * Math.cos(a) - x2 * Math.sin(a);
        out[j + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
  });
  return out;
}

for (const theta of [10000, 1e12]) {
  gpuTest(`rope: rotate_half, GQA, positions up to 8192, theta ${theta}`, async (ctx) => {
    const rand = rng(4);
    const [H, Hkv, D] = [4, 2, 18];
    const invF64 = Array.from({ length: D / 2 }, (_, i) => 1 / theta ** ((2 * i) / D));
    const inv = Float32Array.from(invF64);
    const pos = [0, 1, 7, 1023, 4097, 8191, 8192];
    const m = pos.length;
    const q = randomF32(rand, m * H * D), k = randomF32(rand, m * Hkv * D);
    const Q = ctx.upload(q), K = ctx.upload(k);
    const P = ctx.upload(new Uint32Array([5, ...pos]));
    const I = uploadInvFreq(ctx, invF64);
    runAndFree(ctx, [
      rope(ctx, {
        q: Q,
        k: K,
        positions: P,
        positionsOffset: 1,
        invFreq: I,
        m,
        numHeads: H,
        numKvHeads: Hkv,
        headDim: D,
      }),
    ]);
    assertClose(await ctx.readF32(Q, 0, q.length), refRope(q, pos, H, D, inv), 2e-6, 0, "q");
    assertClose(await ctx.readF32(K, 0, k.length), refRope(k, pos, Hkv, D, inv), 2e-6, 0, "k");
  });
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `kvAppend with rope = rope then kvAppend, bit for bit on CPU adapters (${dtype} cache)`,
    async (ctx) => {
      const rand = rng(9);
      for (const [H, Hkv, D, m, cap] of [[8, 2, 32, 1, 40], [6, 3, 16, 5, 7], [4, 4, 8, 3, 64]]) {
        const invF64 = Array.from({ length: D / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / D));
        const q = randomF32(rand, m * H * D), k = randomF32(rand, m * Hkv * D);
        const v = randomF32(rand, m * Hkv * D);
        const P = ctx.upload(
          new Uint32Array([3, ...Array.from({ length: m }, (_, i) => 4090 + i)]),
        );
        const I = uploadInvFreq(ctx, invF64);
        // Two caches holding the same 5 earlier rows (a ring from row 2, so cap 7 wraps).
        const layers = [0, 1].map(() =>
          createKvCacheLayer(ctx, {
            numKvHeads: Hkv,
            headDim: D,
            capacity: cap,
            dtype,
            lengths: Array(Hkv).fill(5),
            ringStart: Array(Hkv).fill(2),
          })
        );
        const [Q1, K1, V] = [ctx.upload(q), ctx.upload(k), ctx.upload(v)];
        const [Q2, K2] = [ctx.upload(q), ctx.upload(k)];
        const geometry = { m, numHeads: H, numKvHeads: Hkv, headDim: D };
        runAndFree(ctx, [
          rope(ctx, { q: Q1, k: K1, positions: P, positionsOffset: 1, invFreq: I, ...geometry }),
          kvAppend(ctx, { cache: layers[0], k: K1, v: V, m }),
          kvAppend(ctx, {
            cache: layers[1],
            k: K2,
            v: V,
            m,
            rope: { q: Q2, numHeads: H, positions: P, positionsOffset: 1, invFreq: I },
          }),
        ]);
        const what = `H ${H}/${Hkv}, D ${D}, m ${m}`;
        assertSameFloats(ctx, await ctx.readF32(Q2), await ctx.readF32(Q1), `q, ${what}`);
        assert.deepEqual(
          await ctx.readF32(K2),
          Float32Array.from(k),
          `source k untouched, ${what}`,
        );
        for (const part of ["k", "v", "meta"] as const) {
          const [a, b] = [await ctx.read(layers[0][part]), await ctx.read(layers[1][part])];
          if (part === "meta" || dtype !== "f32") {
            assert.deepEqual(new Uint32Array(b), new Uint32Array(a), `${part}, ${what}`);
          } else {assertSameFloats(
              ctx,
              new Float32Array(b),
              new Float32Array(a),
              `${part}, ${what}`,
            );}
        }
      }
    },
  );
}
