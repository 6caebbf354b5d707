import type { DType } from "../../src/model/types.ts";
import { embedding } from "../../src/gpu/kernels/embedding.ts";
import { uploadMatrix } from "../../src/gpu/weights.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { assertClose, encode, randomF32, rng } from "./_reference.ts";

for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
  gpuTest(`embedding ${dtype}: ids from a GPU buffer, odd H, split table`, async (ctx) => {
    const rand = rng(5);
    const [V, H] = [53, 13];
    const t = encode(randomF32(rand, V * H), dtype);
    for (const maxBindingBytes of [undefined, 5 * 16 * 4]) {
      const table = uploadMatrix(ctx, { dtype, shape: [V, H], data: t.bytes, name: "emb" }, {
        maxBindingBytes,
      });
      const ids = [0, 52, 7, 7, 31, 16, 1];
      const idsBuf = ctx.upload(new Uint32Array([99, 99, ...ids]));
      const m = ids.length;
      const out = ctx.createBuffer(m * H * 4);
      runAndFree(ctx, [embedding(ctx, { table, ids: idsBuf, idsOffset: 2, m, out })]);
      const want = ids.flatMap((id) => Array.from(t.values.subarray(id * H, id * H + H)));
      assertClose(await ctx.readF32(out, 0, m * H), want, 0, 0, "embedding");
    }
  });
}
