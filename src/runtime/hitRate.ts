/**
 * SnapKV's hit-rate diagnostic (Figure 2 of the SnapKV paper): while the FULL cache generates,
 * which prompt positions does each decoding step attend to (weight ≥ a threshold, averaged over
 * the KV head's query group), and what share of them would a policy have kept after prefill?
 * One value per layer and KV head, pooled over the decoding steps.
 *
 * @module
 */

import { argmax } from "../model/cpuReference.ts";
import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { releaseActivations } from "./forwardPass.ts";
import type { Engine } from "./engine.ts";
import { generateWithPlan } from "./planGeneration.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";

/** Per layer and KV head: kept important positions / important positions (1 when none). */
export interface HitRates {
  /** `[layer][kvHead]`. */
  hits: number[][];
  /** Bytes the policy's cache held / a full cache, after prefill and the decoding. */
  kv: { fullBytes: number; keptBytes: number };
}

/**
 * Measures the hit rate of `plan` on a prompt: its kept sets come from running it (greedy,
 * `steps` tokens); the important positions from a separate greedy run with the full cache that
 * records each decoding step's attention.
 */
export async function hitRates(
  engine: Engine,
  plan: Plan,
  promptIds: number[],
  steps: number,
  threshold: number,
  registry?: PluginRegistry,
): Promise<HitRates> {
  const c = engine.config;
  const N = promptIds.length;
  const { result, executor } = await generateWithPlan(engine, plan, {
    promptIds,
    maxNewTokens: Math.max(1, steps),
    stopIds: [],
  }, registry);
  const kept = executor.trace.map((layer) => layer.heads.map((h) => new Set(h.kept)));
  const hit = kept.map((row) => row.map(() => 0));
  const important = kept.map((row) => row.map(() => 0));

  const cache = new RaggedKvCache(engine.ctx, c, N + steps, engine.kvDtype);
  const stride = N + steps;
  const obs = engine.createObservation(1, stride);
  try {
    const prompt = await engine.prefill(cache, promptIds, 512, "last");
    let next = argmax(await engine.ctx.readF32(prompt.acts.logits, 0, c.vocabSize));
    releaseActivations(engine.ctx, prompt.acts);
    const g = c.numHeads / c.numKvHeads;
    for (let t = 0; t < steps; t++) {
      // One decoding step on the full cache, recording its attention over everything cached.
      const step = await engine.prefill(cache, [next], 1, "last", obs, N + t);
      next = argmax(await engine.ctx.readF32(step.acts.logits, 0, c.vocabSize));
      releaseActivations(engine.ctx, step.acts);
      for (let l = 0; l < c.numLayers; l++) {
        const probs = await engine.ctx.readF32(obs.buffers[l]);
        for (let kv = 0; kv < c.numKvHeads; kv++) {
          for (let j = 0; j < N; j++) {
            let mean = 0;
            for (let q = kv * g; q < (kv + 1) * g; q++) mean += probs[q * stride + j];
            if (mean / g < threshold) continue;
            important[l][kv]++;
            if (kept[l][kv].has(j)) hit[l][kv]++;
          }
        }
      }
    }
  } finally {
    for (const b of obs.buffers) engine.ctx.release(b);
    cache.release();
  }
  return {
    hits: hit.map((row, l) => row.map((h, kv) => (important[l][kv] ? h / important[l][kv] : 1))),
    kv: { fullBytes: result.kv.fullBytes, keptBytes: result.kv.keptBytes },
  };
}
