/**
 * Runs a plan's detectors after prefill: SimLayerKV's `lazy` (from the first decoding step's or
 * the last prompt query's attention), RazorAttention's `retrieval` (from the model's probe
 * scores), and plugin detectors (`classify`). Returns the verdicts the plan resolver matches and
 * the scores for the trace.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import type { ModelConfig } from "../model/types.ts";
import type { Plan } from "../plan/plan.ts";
import {
  lazyDecodeScore,
  lazyLayers,
  type LazyParams,
  lazyPrefillScore,
  lazyRecentFor,
  lazyThresholdFor,
} from "../plugins/lazyDetector.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import {
  type HeadScores,
  type RetrievalParams,
  selectRetrievalHeads,
} from "../plugins/retrievalDetector.ts";
import type { DetectorInput } from "../plugins/schema.ts";
import { duoHeadScores, type DuoParams, selectDuoHeads } from "../plugins/duoDetector.ts";
import { meanKeysBeforeRope } from "./queryStatistics.ts";
import type { Observation, PrefillState } from "./engine.ts";
import { BUILTIN_NAMES } from "./executable.ts";
import { detectorKey, type DetectorVerdicts } from "./planResolver.ts";

/** Verdicts plus the per-layer lazy scores (the last lazy detector's), for the trace. */
export interface DetectorResults {
  /** What the plan resolver matches against. */
  verdicts: DetectorVerdicts;
  /**
   * Per layer: SimLayerKV score and verdict, when a lazy detector ran (undefined for Gemma 3's
   * sliding layers, which take no rule).
   */
  lazy: ({ score: number; lazy: boolean } | undefined)[] | null;
  /**
   * Per layer and KV head: DuoAttention's on-the-fly score, when a duo detector ran (an empty row
   * for a sliding layer: its heads are not ranked).
   */
  duo?: number[][] | null;
}

/** The last `count` query rows of each query head of a recorded observation, for one layer. */
async function lastRows(
  ctx: GpuContext,
  o: Observation,
  layer: number,
  numHeads: number,
  count = 1,
): Promise<Float32Array[]> {
  const all = await ctx.readF32(o.buffers[layer]);
  const n = o.stride, k = Math.min(count, o.rows);
  return Array.from(
    { length: numHeads },
    (_, h) => all.slice((h * o.rows + o.rows - k) * n, (h * o.rows + o.rows) * n),
  );
}

/** What plugin detectors may ask: the last prompt query's attention per layer. */
function detectorInput(ctx: GpuContext, c: ModelConfig, state: PrefillState): DetectorInput {
  return {
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    numKvHeads: c.numKvHeads,
    promptLength: state.promptLength,
    lastQueryAttention: (layer: number) => {
      const o = state.promptObservation;
      if (!o) throw new Error("no prompt attention was recorded");
      return lastRows(ctx, o, layer, c.numHeads);
    },
  };
}

/**
 * Runs every detector of `plan`; `retrieval` holds the model's probe scores when needed. Gemma 3's
 * sliding layers take no rule (`resolvePlan`) and their cache rows are not positions once they
 * roll (`slidingLayers.ts`): `lazy` and `duo` neither score nor rank them.
 */
export async function runDetectors(
  plan: Plan,
  c: ModelConfig,
  ctx: GpuContext,
  registry: PluginRegistry,
  retrieval: HeadScores[] | undefined,
  state: PrefillState,
): Promise<DetectorResults> {
  const verdicts: DetectorVerdicts = { layers: new Map(), heads: new Map() };
  let lazyTrace: DetectorResults["lazy"] = null;
  let duoTrace: number[][] | null = null;
  for (const d of plan.detectors) {
    const plugin = BUILTIN_NAMES.has(d.name) ? undefined : registry.detector(d.name);
    if (plugin?.classify) {
      const verdict = await plugin.classify(detectorInput(ctx, c, state), d.params);
      if (plugin.target === "layers") verdicts.layers.set(detectorKey(d), verdict as boolean[]);
      else verdicts.heads.set(detectorKey(d), verdict as boolean[][]);
    } else if (d.name === "retrieval") {
      if (!retrieval) throw new Error("retrieval detector: the probe scores were not fetched");
      verdicts.heads.set(
        detectorKey(d),
        selectRetrievalHeads(retrieval, d.params as unknown as RetrievalParams),
      );
    } else if (d.name === "duo") {
      const p = d.params as unknown as DuoParams;
      const stats = state.queryStatistics;
      if (!stats) throw new Error("duo detector: the prompt's query statistics were not recorded");
      const scores: number[][] = [];
      for (let l = 0; l < c.numLayers; l++) {
        if (c.gemma3?.layerWindows[l]) {
          scores.push([]);
          continue;
        }
        const queries = await stats.read(l);
        const keys = await meanKeysBeforeRope(state.cache, c, l, state.promptLength);
        scores.push(duoHeadScores(queries.mean, keys, c.ropeInvFreq, p.qlen));
      }
      const duo = selectDuoHeads(scores, p.ratio);
      verdicts.heads.set(detectorKey(d), duo.map((row) => row.length ? row : full(c.numKvHeads)));
      duoTrace = scores;
    } else if (d.name === "lazy") {
      const p = d.params as unknown as LazyParams;
      const threshold = p.threshold ?? lazyThresholdFor(c);
      const recent = lazyRecentFor(p);
      // at=decode: the first decoding step, or, for a generation too short to decode, the last
      // prompt query scored the same way; at=prefill: the last `queries` prompt queries.
      const o = p.at === "decode" && state.firstStepObservation
        ? state.firstStepObservation
        : state.promptObservation;
      if (!o) throw new Error("lazy detector: no attention was recorded");
      const scores: (number | undefined)[] = [];
      for (let l = 0; l < c.numLayers; l++) {
        if (c.gemma3?.layerWindows[l]) {
          scores.push(undefined);
        } else if (p.at === "decode") {
          const last = await lastRows(ctx, o, l, c.numHeads);
          scores.push(lazyDecodeScore(last, o.stride, p.sink, recent));
        } else {
          const rows = Math.min(p.queries, o.rows);
          const last = await lastRows(ctx, o, l, c.numHeads, rows);
          scores.push(lazyPrefillScore(last, o.stride, o.stride - rows, p.sink, recent));
        }
      }
      const lazy = lazyLayers(scores.map((s) => s ?? -Infinity), threshold);
      verdicts.layers.set(detectorKey(d), lazy);
      lazyTrace = scores.map((score, l) =>
        score === undefined ? undefined : { score, lazy: lazy[l] }
      );
    }
  }
  return { verdicts, lazy: lazyTrace, duo: duoTrace };
}

/** A verdict row of `n` heads, every one true. */
function full(n: number): boolean[] {
  return Array(n).fill(true);
}
