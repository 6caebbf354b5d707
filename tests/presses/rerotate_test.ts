/**
 * `window(rerotate=true)` (StreamingLLM's re-indexed positions, mit-han-lab/streaming-llm
 * `pos_shift`): greedy decoding on the GPU, which re-rotates only the sink keys, matches a CPU
 * reference that does what the official code does — every cached key re-rotated to its rank in
 * the cache at every step, the query at the last rank — while the window rolls far past the
 * prompt. Without re-indexing the logits differ, so the test sees it missing.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { maxAbsDiff, withEngine } from "../runtime/_helpers.ts";
import { runPolicy, teacherForced } from "./_run.ts";

const SINK = 3, RECENT = 9, STEPS = 14;

/** Rotates a post-RoPE key in place by `delta` positions (rotate_half pairs, float64). */
function rotate(key: Float64Array, at: number, D: number, invFreq: Float64Array, delta: number) {
  for (let f = 0; f < D / 2; f++) {
    const a = delta * invFreq[f], c = Math.cos(a), s = Math.sin(a);
    const x1 = key[at + f], x2 = key[at + f + D / 2];
    key[at + f] = x1 * c - x2 * s;
    key[at + f + D / 2] = x2 * c + x1 * s;
  }
}

/** CPU: prefill, keep the window, then per step evict the oldest and re-index every key. */
function cpuRun(engine: Engine, prompt: number[], policy: string) {
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const c = engine.config, D = c.headDim;
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(prompt, { logits: "last" });
  for (let l = 0; l < c.numLayers; l++) {
    const kept = defaultRegistry().press("window")!.select!(cpuLayerScores(cpu, l), press.params);
    for (let h = 0; h < c.numKvHeads; h++) cpu.keep(l, h, kept[h]);
  }
  const ids = [argmax(row)];
  const logits: Float32Array[] = [];
  for (let step = 0; step < STEPS; step++) {
    const P = prompt.length + step; // the new token's absolute position
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        // The window rolls: the oldest non-sink entry leaves before the new token comes in.
        if (cpu.cache.length(l, h) >= SINK + RECENT) {
          const keepAll = Array.from({ length: cpu.cache.length(l, h) }, (_, i) => i);
          cpu.keep(l, h, keepAll.filter((i) => i !== SINK));
        }
        // Official pos_shift: entry of rank r sits at position r, the query at rank L − 1
        // (L counting the new token). The CPU model rotates the query at P, so every key goes
        // to r + (P − (L − 1)): the same distances.
        const positions = cpu.cache.positions(l, h), keys = cpu.cache.keys(l, h);
        const L = positions.length + 1;
        for (let r = 0; r < positions.length; r++) {
          const target = r + P - (L - 1);
          rotate(keys, r * D, D, c.ropeInvFreq, target - positions[r]);
          positions[r] = target;
        }
      }
    }
    [row] = cpu.forward([ids.at(-1)!]);
    logits.push(row);
    ids.push(argmax(row));
  }
  return { ids, logits };
}

Deno.test({
  name:
    "window(rerotate=true): greedy tokens and logits match StreamingLLM's re-indexing on the CPU",
  ignore: sharedMissing(),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
    await withEngine(dir, async (engine) => {
      const prompt = golden.input_ids.slice(0, 30);
      const policy = `else -> window(sink=${SINK}, recent=${RECENT}, rerotate=true)`;
      const cpu = cpuRun(engine, prompt, policy);
      const gpu = await runPolicy(engine, policy, prompt, STEPS + 1);
      assert.deepEqual(gpu.tokens, cpu.ids, "greedy tokens");
      assert.deepEqual(
        gpu.kv.layers[0].lengths,
        Array(engine.config.numKvHeads).fill(SINK + RECENT),
      );
      // The logits of every step, teacher-forced, against the CPU's — and against original
      // positions, which must differ once the window has rolled.
      const fed = cpu.ids.slice(0, -1);
      const on = await teacherForced(engine, prompt, policy, fed);
      const off = await teacherForced(engine, prompt, policy.replace("true", "false"), fed);
      cpu.logits.forEach((row, i) => {
        const d = maxAbsDiff(on.logits[i], row);
        assert.ok(d <= 1e-4, `step ${i + 1}: max abs logit diff ${d}`);
      });
      const moved = maxAbsDiff(off.logits.at(-1)!, cpu.logits.at(-1)!);
      assert.ok(moved > 10 * 1e-4, `original positions differ by ${moved} only`);
    });
  },
});
