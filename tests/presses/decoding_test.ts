/**
 * Decoding-time compression (`decoding`, src/plugins/decodingPress.ts) on generations several
 * times longer than the budget, against the float64 CPU reference model running the method's
 * definition step by step: the cache stays within the budget, the kept set is the definition's
 * and the greedy tokens are the reference's.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { withEngine } from "../runtime/_helpers.ts";
import { runPolicy } from "./_run.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;

async function prompt(): Promise<number[]> {
  const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
  return golden.input_ids.slice(0, 40);
}

/**
 * CPU: prefill, apply the rule's select press (or keep all), then generate `steps` tokens; before
 * each new token, a head already holding `recent` generated entries drops its oldest one.
 */
function cpuRecent(engine: Engine, ids: number[], policy: string, recent: number, steps: number) {
  const c = engine.config;
  const cpu = new CpuReferenceModel(engine.weights);
  const [first] = cpu.forward(ids, { logits: "last" });
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const fromPrompt: number[][] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const kept = press.name === "full"
      ? Array.from({ length: c.numKvHeads }, () => ids.map((_, i) => i))
      : defaultRegistry().press(press.name)!.select!(cpuLayerScores(cpu, l), press.params);
    kept.forEach((k, h) => cpu.keep(l, h, k));
    fromPrompt.push(kept.map((k) => k.length));
  }
  const tokens = [argmax(first)];
  while (tokens.length < steps) {
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const n = cpu.cache.length(l, h);
        if (n - fromPrompt[l][h] >= recent) {
          const oldest = fromPrompt[l][h];
          cpu.keep(l, h, Array.from({ length: n }, (_, i) => i).filter((i) => i !== oldest));
        }
      }
    }
    tokens.push(argmax(cpu.forward([tokens.at(-1)!], { logits: "last" })[0]));
  }
  return { tokens, fromPrompt };
}

Deno.test({
  name: "decoding(recent=R): generated tokens ring after the prompt's kept entries (CPU reference)",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt();
    const STEPS = 30, R = 5;
    await withEngine(FIXTURE, async (engine) => {
      for (
        const policy of [
          `else -> snap(k=12, window=4, pool=3) + decoding(recent=${R})`,
          `else -> full + decoding(recent=${R})`,
        ]
      ) {
        const cpu = cpuRecent(engine, ids, policy, R, STEPS);
        const gpu = await runPolicy(engine, policy, ids, STEPS);
        assert.deepEqual(gpu.tokens, cpu.tokens, policy);
        // 29 tokens were fed back (the last one never is): the ring is full at R.
        gpu.kv.layers.forEach((layer, l) =>
          assert.deepEqual(layer.lengths, cpu.fromPrompt[l].map((n) => n + R), `${policy} ${l}`)
        );
        const rowBytes = engine.config.headDim * 4;
        const heads = engine.config.numLayers * engine.config.numKvHeads;
        const budget = (policy.includes("snap") ? 12 : ids.length) + R;
        assert.equal(gpu.kv.allocatedBytes, 2 * heads * budget * rowBytes, "allocated = budget");
      }
      // The ring must matter: without it, the tokens differ from the reference's.
      const free = await runPolicy(engine, "else -> full", ids, STEPS);
      const ring = cpuRecent(engine, ids, "else -> full", R, STEPS);
      assert.notDeepEqual(free.tokens, ring.tokens, "a 5-entry ring changes the generation");
    });
  },
});
