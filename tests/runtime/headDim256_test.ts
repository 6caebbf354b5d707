/**
 * A Gemma-sized head (head_dim 256) through the default kernels: a one-layer random checkpoint
 * with a 700-token prompt (so every attention loop runs long, past the 64-trip loops llvmpipe
 * counts against its loop budget) gives the CPU reference's logits at every position and its
 * greedy ids. Before the flash prefill kernel looped over the head dimension, this shape produced
 * no token in 580 s on llvmpipe.
 */
import assert from "node:assert/strict";
import { writeRandomModel } from "./_checkpoint.ts";
import { assertMatchesCpuReference } from "./_cpuCompare.ts";
import { randomInt, seededRandom, withEngine } from "./_helpers.ts";

Deno.test("runtime: head_dim 256 — GPU logits and greedy ids equal the CPU reference", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-hd256-" });
  try {
    const spec = {
      arch: "llama" as const,
      dtype: "F32" as const,
      hidden: 64,
      heads: 2,
      kvHeads: 1,
      headDim: 256,
      inter: 32,
      vocab: 64,
      layers: 1,
      tied: false,
      seed: 256,
      maxPositions: 1024,
    };
    await writeRandomModel(dir, spec);
    const rand = seededRandom(257);
    const prompt = Array.from({ length: 700 }, () => randomInt(rand, 0, spec.vocab - 1));
    await withEngine(dir, async (engine) => {
      const comparable = await assertMatchesCpuReference(engine, prompt, { steps: 8 });
      assert.ok(comparable >= 3, `the reference is ambiguous at step ${comparable}`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
