/**
 * `heads duo` on the GPU runtime against the CPU reference model: the prompt's own pre-RoPE query
 * and key means (gathered on the GPU, keys read back and rotated back) give the same head scores
 * and the same streaming heads as the float64 forward pass.
 */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { duoHeadScores, selectDuoHeads } from "../../src/plugins/duoDetector.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("duo: the GPU's head scores and streaming heads equal the CPU reference's", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const c = engine.config, D = c.headDim, H = c.numHeads, Hkv = c.numKvHeads;
    const ids = demoPrompt(engine.tokenizer!, "question", 300, 4).ids;
    const cpu = new CpuReferenceModel(engine.weights);
    cpu.forward(ids, { logits: "last" });
    const mean = (rows: Float64Array, heads: number, h: number) => {
      const out = new Array(D).fill(0);
      for (let t = 0; t < ids.length; t++) {
        for (let e = 0; e < D; e++) out[e] += rows[(t * heads + h) * D + e] / ids.length;
      }
      return out;
    };
    const scores = Array.from({ length: c.numLayers }, (_, l) =>
      duoHeadScores(
        Array.from({ length: H }, (_, h) => mean(cpu.lastQueriesBeforeRope[l], H, h)),
        Array.from({ length: Hkv }, (_, h) => mean(cpu.lastKeysBeforeRope[l], Hkv, h)),
        c.ropeInvFreq,
        500,
      ));
    const verdict = selectDuoHeads(scores, 0.5);
    const r = await runPolicy(
      engine,
      "heads duo(ratio=0.5) -> full; else -> window(sink=4, recent=28)",
      ids,
      2,
    );
    r.trace.forEach((layer, l) =>
      layer.heads.forEach((head, h) => {
        assert.ok(
          Math.abs(head.duo_score! - scores[l][h]) < 1e-4,
          `layer ${l} head ${h}: ${head.duo_score} vs ${scores[l][h]}`,
        );
        assert.equal(head.rule === 0, verdict[l][h], `layer ${l} head ${h}`);
        assert.equal(head.kept.length, verdict[l][h] ? ids.length : 32);
      })
    );
    assert.equal(verdict.flat().filter((v) => !v).length, Math.round(c.numLayers * Hkv * 0.5));
  } finally {
    engine.close();
  }
});
