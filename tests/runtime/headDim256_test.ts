/**
 * A Gemma-sized head (head_dim 256) through the default kernels: a one-layer random checkpoint
 * with a 700-token prompt (so every attention loop runs long, past the 64-trip loops llvmpipe
 * counts against its loop budget) gives the CPU reference's logits at every position and its
 * greedy ids. Before the flash prefill kernel looped over the head dimension, this shape produced
 * no token in 580 s on llvmpipe.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { writeRandomModel } from "./_checkpoint.ts";
import { maxAbsDiff, randomInt, range, seededRandom, withEngine } from "./_helpers.ts";

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
      const cpu = new CpuReferenceModel(engine.weights);
      const expected = cpu.forward(prompt);
      const actual = await engine.promptLogits(prompt);
      const scale = Math.max(...expected.map(range));
      assert.ok(scale > 0.1, `logit range ${scale}`);
      actual.forEach((row, pos) => {
        const d = maxAbsDiff(row, expected[pos]);
        assert.ok(d <= 1e-4 * scale, `position ${pos}: ${d} > 1e-4 × range ${scale}`);
      });
      const steps = 8;
      const ids: number[] = [];
      let row = expected.at(-1)!;
      let comparable = steps;
      for (let i = 0; i < steps; i++) {
        const sorted = [...row].sort((a, b) => b - a);
        if (sorted[0] - sorted[1] < 1e-3 * scale && comparable === steps) comparable = i;
        ids.push(argmax(row));
        if (i < steps - 1) [row] = cpu.forward([ids[i]]);
      }
      const r = await engine.generate({ promptIds: prompt, maxNewTokens: steps, stopIds: [] });
      assert.ok(comparable >= 3, `the reference is ambiguous at step ${comparable}`);
      assert.deepEqual(r.tokens.slice(0, comparable), ids.slice(0, comparable));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
