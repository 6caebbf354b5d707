/**
 * SnapKV's hit-rate diagnostic (`--task hitrate`): how many of the prompt positions that the
 * generated tokens attend to (weight ≥ threshold) a policy's compressed cache still holds.
 * The engine measures it per (layer, KV head) ({@link EvalEngine.hitRate}); this file builds the
 * prompts (query-aware: single-needle prompts with the question at the end, random depth) and
 * averages the engine's matrices into a per-cell mean and a per-layer profile.
 *
 * @module
 */

import type { EvalEngine } from "./engine.ts";
import type { HitRateSample, TaskContext } from "./sample.ts";
import type { EvalSuite } from "./suite.ts";
import { singleNeedleSample } from "./tasks/needle.ts";

/** Per length, `samples` needle prompts for the hit-rate measurement. */
export function buildHitRateSamples(context: TaskContext, suite: EvalSuite): HitRateSample[] {
  const samples: HitRateSample[] = [];
  for (const length of suite.lengths) {
    for (let i = 0; i < suite.samples; i++) {
      const prompt = singleNeedleSample(context, suite, "hitrate", length, null, i);
      samples.push({
        kind: "hitrate",
        task: "hitrate",
        length,
        depth: null,
        index: i,
        promptIds: prompt.promptIds,
        maxNewTokens: suite.hitRate.maxNewTokens,
        threshold: suite.hitRate.threshold,
      });
    }
  }
  return samples;
}

/** Mean hit rate of a cell and its per-layer profile. */
export interface HitRateSummary {
  /** Mean over samples, layers and KV heads (0..1). */
  mean: number;
  /** Mean per layer over samples and KV heads. */
  byLayer: number[];
}

/** Averages `hits[layer][kvHead]` matrices of several samples (layers may differ in heads). */
export function summarizeHitRates(
  matrices: readonly (readonly (readonly number[])[])[],
): HitRateSummary {
  const layers = Math.max(0, ...matrices.map((m) => m.length));
  const sums = new Array<number>(layers).fill(0);
  const counts = new Array<number>(layers).fill(0);
  for (const matrix of matrices) {
    matrix.forEach((heads, layer) => {
      for (const hit of heads) {
        sums[layer] += hit;
        counts[layer]++;
      }
    });
  }
  const byLayer = sums.map((s, l) => (counts[l] ? s / counts[l] : NaN));
  const total = counts.reduce((a, b) => a + b, 0);
  return { mean: total ? sums.reduce((a, b) => a + b, 0) / total : NaN, byLayer };
}

/** Throws when the engine cannot measure hit rates. */
export function requireHitRate(
  engine: EvalEngine,
): NonNullable<EvalEngine["hitRate"]> {
  if (!engine.hitRate) {
    throw new Error(`the engine for ${engine.modelName} does not measure hit rates`);
  }
  return engine.hitRate.bind(engine);
}
