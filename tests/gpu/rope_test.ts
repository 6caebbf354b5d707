import { rope, uploadInvFreq } from "../../src/gpu/kernels/rope.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
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
