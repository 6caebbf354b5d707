import { flashPrefillAttention } from "../../src/gpu/kernels/flashPrefillAttention.ts";
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { kvCompact, uploadKvSelection } from "../../src/gpu/kernels/kvCompact.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomSubset, RefKvCache } from "./_kvReference.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

/** {@link refAttend} with `bias` added to the scaled logit of key `row` (−1: none). */
function refAttendBiased(
  q: ArrayLike<number>,
  keys: ArrayLike<number>[],
  values: ArrayLike<number>[],
  scale: number,
  row: number,
  bias: number,
) {
  if (row < 0) return refAttend(q, keys, values, scale);
  // the bias as an extra key dimension: q gets a 1 (unscaled: bias / scale), key `row` the bias
  const qb = [...Array.from(q), 1 / scale];
  const kb = keys.map((k, j) => [...Array.from(k), j === row ? bias : 0]);
  return refAttend(qb, kb, values, scale);
}

// [dtype, GQA group, head dim, queries per thread, heads per thread, keys per dispatch]
const cases: Array<[KvDType, number, number, number?, number?, number?]> = [
  ["f32", 4, 16],
  ["f16", 2, 8],
  ["f32", 3, 20],
  ["f32", 1, 4, 3, 1],
  ["f32", 4, 12, 1, 2],
  ["f16", 4, 32],
  ["f32", 2, 16, undefined, undefined, 16],
  ["f16", 3, 8, 2, 1, 32],
];

for (const [dtype, group, D, qt, ht, span] of cases) {
  gpuTest(
    `flashPrefillAttention ${dtype} GQA ${group} D ${D} block ${qt ?? "-"}×${ht ?? "-"}` +
      `${span ? `, ${span} keys per dispatch` : ""}: chunks, ragged heads, window, strides`,
    async (ctx) => {
      const rand = rng(7 + group * 13 + D);
      const Hkv = 2, H = Hkv * group, scale = 1 / Math.sqrt(D);
      const src = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: 40, dtype });
      const ref = new RefKvCache(Hkv, dtype);
      // a first chunk, then a compaction to ragged lengths, so later chunks see len − m + i
      const k0 = randomF32(rand, 19 * Hkv * D, 2), v0 = randomF32(rand, 19 * Hkv * D);
      runAndFree(ctx, [kvAppend(ctx, { cache: src, k: ctx.upload(k0), v: ctx.upload(v0), m: 19 })]);
      ref.append(k0, v0, 19, D, [40, 40]);
      const sel = [randomSubset(rand, 19, 11), randomSubset(rand, 19, 4)];
      const cache = createKvCacheLayer(ctx, {
        numKvHeads: Hkv,
        headDim: D,
        capacity: [60, 60],
        dtype,
        bias: [{ row: 3, value: 0.75 }, undefined],
      });
      runAndFree(ctx, [
        kvCompact(ctx, { src, dst: cache, selection: uploadKvSelection(ctx, sel), maxCount: 11 }),
      ]);
      ref.compact(sel);
      for (const [m, window, pad] of [[1, 0, 0], [23, 0, 4], [17, 5, 8]]) {
        const k = randomF32(rand, m * Hkv * D, 2), v = randomF32(rand, m * Hkv * D);
        // q rows with `pad` extra elements and a 4-element offset (a fused qkv buffer)
        const ldq = H * D + pad, ldo = H * D + pad;
        const q = randomF32(rand, 4 + m * ldq, 2);
        const out = ctx.createBuffer((m * ldo + 4) * 4);
        const obsStride = 64;
        const obs = ctx.createBuffer(Math.max(1, H * window * obsStride) * 4);
        runAndFree(ctx, [
          kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m }),
          flashPrefillAttention(ctx, {
            cache,
            q: ctx.upload(q),
            qOffset: 4,
            qRowStride: ldq,
            out,
            outRowStride: ldo,
            m,
            numHeads: H,
            window,
            obs: window ? obs : undefined,
            obsStride,
            queriesPerThread: qt,
            headsPerThread: ht,
            keysPerDispatch: span,
          }),
        ]);
        ref.append(k, v, m, D, [60, 60]);
        const got = await ctx.readF32(out, 0, m * ldo);
        const gotObs = await ctx.readF32(obs, 0, H * window * obsStride);
        for (let i = 0; i < m; i++) {
          for (let h = 0; h < H; h++) {
            const kvh = Math.floor(h / group), n = ref.k[kvh].length - m + i + 1;
            const at = 4 + i * ldq + h * D;
            const r = refAttendBiased(
              q.subarray(at, at + D),
              ref.k[kvh].slice(0, n),
              ref.v[kvh].slice(0, n),
              scale,
              kvh === 0 && n > 3 ? 3 : -1,
              0.75,
            );
            const o = i * ldo + h * D;
            assertClose(got.subarray(o, o + D), r.out, 2e-5, 1e-4, `m${m} q${i} h${h}`);
            if (i >= m - window) {
              const w = i - (m - window), ob = (h * window + w) * obsStride;
              const want = [...r.probs, ...Array(obsStride - n).fill(0)];
              assertClose(gotObs.subarray(ob, ob + obsStride), want, 1e-6, 1e-4, `obs ${i} ${h}`);
            }
          }
        }
      }
    },
  );
}

// llvmpipe ends every loop of an invocation after 65535 iterations in all: at head_dim 128 a
// single dispatch over 20,000 keys would stop early and return garbage (it did, before the key
// ranges). Checked against the CPU reference, observation window included.
gpuTest(
  "flashPrefillAttention: 20,000 keys at head_dim 128 (past llvmpipe's loop budget)",
  async (ctx) => {
    const rand = rng(20000);
    const D = 128, L = 20000, m = 16, window = 4, scale = 1 / Math.sqrt(D);
    const cache = createKvCacheLayer(ctx, { numKvHeads: 1, headDim: D, capacity: L });
    const k = randomF32(rand, L * D, 2), v = randomF32(rand, L * D), q = randomF32(rand, m * D, 2);
    const out = ctx.createBuffer(m * D * 4), obs = ctx.createBuffer(window * L * 4);
    runAndFree(ctx, [
      kvAppend(ctx, { cache, k: ctx.upload(k), v: ctx.upload(v), m: L }),
      flashPrefillAttention(ctx, {
        cache,
        q: ctx.upload(q),
        out,
        m,
        numHeads: 1,
        window,
        obs,
        obsStride: L,
      }),
    ]);
    const got = await ctx.readF32(out), gotObs = await ctx.readF32(obs);
    const keys = Array.from({ length: L }, (_, j) => k.subarray(j * D, (j + 1) * D));
    const values = Array.from({ length: L }, (_, j) => v.subarray(j * D, (j + 1) * D));
    for (let i = 0; i < m; i++) {
      const n = L - m + i + 1;
      const r = refAttend(
        q.subarray(i * D, (i + 1) * D),
        keys.slice(0, n),
        values.slice(0, n),
        scale,
      );
      assertClose(got.subarray(i * D, (i + 1) * D), r.out, 2e-5, 1e-4, `q${i}`);
      if (i >= m - window) {
        const at = (i - (m - window)) * L;
        const want = [...r.probs, ...Array(L - n).fill(0)];
        assertClose(gotObs.subarray(at, at + L), want, 1e-6, 1e-3, `obs ${i}`);
      }
    }
  },
);
