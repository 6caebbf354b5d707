/**
 * The reduce pass of split-KV decoding, both forms (serial for CPU adapters, parallel for GPUs),
 * against the merge computed in float64 from the same partials: more splits than the parallel
 * pass has threads, empty splits (`l = 0`) between full ones, a head with no entries at all, and
 * head dimensions whose vec4 count is below, at and above the workgroup size.
 */
import { decodeReduce } from "../../src/gpu/kernels/decodeAttention.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, rng } from "./_reference.ts";

const NEG = -3.0e38;

/** Random partials `[H][splits][D/4 + 1]` vec4; head `emptyHead` has only empty splits. */
function partials(rand: () => number, H: number, splits: number, D: number, emptyHead: number) {
  const D4 = D / 4, data = new Float32Array(H * splits * (D4 + 1) * 4);
  for (let h = 0; h < H; h++) {
    for (let s = 0; s < splits; s++) {
      const at = (h * splits + s) * (D4 + 1) * 4;
      const empty = h === emptyHead || s % 7 === 3;
      for (let i = 0; i < D; i++) data[at + i] = empty ? 0 : 4 * rand() - 2;
      data[at + D] = empty ? NEG : 6 * rand() - 3; // m
      data[at + D + 1] = empty ? 0 : 0.5 + 3 * rand(); // l
    }
  }
  return data;
}

/** `Σ O_s·e^{m_s−M} / Σ l_s·e^{m_s−M}` per head, zeros for a head without entries. */
function merge(data: Float32Array, H: number, splits: number, D: number): Float64Array {
  const D4 = D / 4, out = new Float64Array(H * D);
  for (let h = 0; h < H; h++) {
    const at = (s: number) => (h * splits + s) * (D4 + 1) * 4;
    let M = -Infinity, total = 0;
    for (let s = 0; s < splits; s++) if (data[at(s) + D + 1] > 0) M = Math.max(M, data[at(s) + D]);
    for (let s = 0; s < splits; s++) {
      const l = data[at(s) + D + 1];
      if (l === 0) continue;
      const w = Math.exp(data[at(s) + D] - M);
      total += l * w;
      for (let i = 0; i < D; i++) out[h * D + i] += data[at(s) + i] * w;
    }
    for (let i = 0; i < D; i++) out[h * D + i] = total > 0 ? out[h * D + i] / total : 0;
  }
  return out;
}

// [heads, splits, head dim]: D/4 of 2 (32 split slices per vec4), 16, 64 (= the workgroup) and 66.
const cases: Array<[number, number, number]> = [[3, 150, 8], [4, 65, 64], [2, 200, 256], [
  2,
  9,
  264,
]];

for (const [H, splits, D] of cases) {
  gpuTest(`decodeReduce H${H} splits ${splits} D${D}: serial and parallel passes`, async (ctx) => {
    const data = partials(rng(H * splits + D), H, splits, D, 1);
    const scratch = ctx.upload(data);
    const want = merge(data, H, splits, D);
    for (const kernel of ["thread", "workgroup"] as const) {
      const out = ctx.createBuffer(H * D * 4);
      runAndFree(ctx, [
        decodeReduce(ctx, { scratch, out, numHeads: H, headDim: D, splits, kernel }),
      ]);
      const got = await ctx.readF32(out, 0, H * D);
      assertClose(got, want, 1e-5, 1e-5, `${kernel} reduce`);
      ctx.release(out);
    }
    ctx.release(scratch);
  });
}
