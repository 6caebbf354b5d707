import assert from "node:assert/strict";
import { windowVotes } from "../../src/gpu/kernels/windowVotes.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

// Sums of the last `window` rows per (head, key), against the same sums in float32 order.
for (const [H, rows, window, stride] of [[3, 5, 5, 70], [2, 8, 3, 129], [1, 1, 1, 1]]) {
  gpuTest(`windowVotes H${H} rows ${rows} window ${window} keys ${stride}`, async (ctx) => {
    const obs = randomF32(rng(rows * 31 + stride), H * rows * stride);
    const o = ctx.upload(obs), votes = ctx.upload(new Float32Array(H * stride).fill(-1));
    runAndFree(ctx, [windowVotes(ctx, { obs: o, votes, numHeads: H, rows, window, stride })]);
    const got = await ctx.readF32(votes);
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < stride; j++) {
        let want = 0;
        for (let r = rows - window; r < rows; r++) {
          want = Math.fround(want + obs[(h * rows + r) * stride + j]);
        }
        assert.equal(got[h * stride + j], want, `head ${h} key ${j}`);
      }
    }
  });
}

gpuTest("windowVotes refuses a window beyond the recorded rows", (ctx) => {
  const b = ctx.createBuffer(64);
  assert.throws(
    () => windowVotes(ctx, { obs: b, votes: b, numHeads: 1, rows: 2, window: 3, stride: 4 }),
    /window 3 outside 1\.\.2/,
  );
});
