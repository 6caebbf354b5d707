/**
 * What a press sees of one layer after prefill ({@link LayerScoresInput}), built from what the
 * executor read back: the observation window (or only its SnapKV votes), the keys, H2O's column
 * sums. Accessors throw when a press asks for something its `needs` did not declare.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import type { ModelConfig } from "../model/types.ts";
import type { PressNeeds } from "../plugins/schema.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import type { PrefillState } from "./generationTypes.ts";
import { projectedValueNorms } from "./projectedValueNorms.ts";
import type { LayerScoresInput, QueryStatistics } from "../plugins/press.ts";
import type { Observation } from "./engine.ts";
import { sumWindowRows, votesKey, type WindowVotes } from "./observationVotes.ts";

/** One layer's readbacks. */
export interface LayerReadbacks {
  /** Layer index. */
  layer: number;
  /** Prompt tokens. */
  promptLength: number;
  /** The whole observation window of the layer, if read back. */
  obs: Float32Array | undefined;
  /** The prompt's observation (rows, stride), if recorded. */
  promptObs: Observation | undefined;
  /** Keys per KV head, if read back. */
  keys: Map<number, Float32Array>;
  /** H2O's attention column sums per query head, if read back. */
  columnSums: Float32Array[] | undefined;
  /** SnapKV votes summed on the GPU, per (layer, window). */
  votes: WindowVotes;
  /** CriticalKV's value weights per KV head, if computed. */
  valueNorms?: Float64Array[];
  /** Values per KV head, if read back. */
  values?: Map<number, Float32Array>;
  /** The prompt's query statistics of this layer, if recorded. */
  queryStatistics?: QueryStatistics;
}

/** The press input of one layer (see the module doc). */
export function layerScoresInput(c: ModelConfig, a: LayerReadbacks): LayerScoresInput {
  const { layer, promptLength, obs, promptObs, keys, columnSums, votes } = a;
  return {
    layer,
    numLayers: c.numLayers,
    promptLength,
    numKvHeads: c.numKvHeads,
    groupSize: c.numHeads / c.numKvHeads,
    headDim: c.headDim,
    windowAttention: (window: number) => {
      if (!obs || !promptObs || window > promptObs.rows) {
        throw new Error(
          `observation window ${window} was not recorded (or, for presses that declare ` +
            "needs.windowVotesOnly, not read back)",
        );
      }
      const rows = promptObs.rows, N = promptObs.stride;
      return Array.from(
        { length: c.numHeads },
        (_, h) => obs.subarray((h * rows + rows - window) * N, (h * rows + rows) * N),
      );
    },
    windowVotes: (window: number) => {
      const summed = votes.get(votesKey(layer, window));
      if (summed) return summed;
      if (!obs || !promptObs || window > promptObs.rows) {
        throw new Error(`window votes over ${window} rows were not computed`);
      }
      return sumWindowRows(obs, promptObs, window, c.numHeads);
    },
    attentionColumnSums: () => {
      if (!columnSums) throw new Error("attention column sums were not recorded");
      return columnSums;
    },
    keys: (kvHead: number) => {
      const k = keys.get(kvHead);
      if (!k) throw new Error("keys were not read back");
      return k;
    },
    values: (kvHead: number) => {
      const v = a.values?.get(kvHead);
      if (!v) throw new Error("values were not read back (needs.values)");
      return v;
    },
    queryStatistics: () => {
      if (!a.queryStatistics) {
        throw new Error("query statistics were not recorded (needs.queryStatistics)");
      }
      return a.queryStatistics;
    },
    projectedValueNorms: (kvHead: number) => {
      const norms = a.valueNorms?.[kvHead];
      if (!norms) throw new Error("value norms were not computed (needs.projectedValueNorms)");
      return norms;
    },
  };
}

/** What {@link readLayerScoresInput} reads for a layer. */
export interface LayerRequest {
  /** The layer's presses: each one's name and `needs`. */
  needs: ({ name: string } & PressNeeds)[];
  /** SnapKV votes already summed on the GPU. */
  votes: WindowVotes;
  /** The model's output projection of a layer (CriticalKV's value norms need it). */
  outputProjection?: (layer: number) => Float32Array;
  /** KVzip's scores of every layer, when they were computed. */
  reconstruction?: Float64Array[][];
}

/**
 * Reads back from the prefilled state what layer `l`'s presses declared they need (the whole
 * observation window only if some press reads it whole; keys, values, H2O's column sums, the query
 * statistics, CriticalKV's value norms) and returns the layer's press input.
 */
export async function readLayerScoresInput(
  ctx: GpuContext,
  c: ModelConfig,
  state: PrefillState,
  l: number,
  r: LayerRequest,
): Promise<LayerScoresInput> {
  const any = (test: (n: { name: string } & PressNeeds) => unknown) => r.needs.some(test);
  // This layer's view of the work kept across the plans of a shared prefill (`state.memo`).
  const shared = state.memo;
  const memo = shared &&
    (<T>(key: string, make: () => T): T => {
      const k = `layer ${l}: ${key}`;
      if (!shared.has(k)) shared.set(k, make());
      return shared.get(k) as T;
    });
  const n = state.promptLength;
  const promptObs = state.promptObservation;
  const obs = any((x) => x.observationWindow && !x.windowVotesOnly) && promptObs
    ? await ctx.readF32(promptObs.buffers[l])
    : undefined;
  const perHead = async (read: (h: number) => Promise<Float32Array>) => {
    const out = new Map<number, Float32Array>();
    for (let h = 0; h < c.numKvHeads; h++) out.set(h, await read(h));
    return out;
  };
  const keys = any((x) => x.keys) ? await perHead((h) => state.cache.readKeys(l, h, n)) : new Map();
  const values = any((x) => x.values || x.projectedValueNorms)
    ? await perHead((h) => state.cache.readValues(l, h, n))
    : new Map();
  let columnSums: Float32Array[] | undefined;
  if (any((x) => x.name === "h2o")) {
    const sums = state.promptColumnSums;
    if (!sums) throw new Error("h2o: the prompt's attention column sums were not recorded");
    if (state.cachedLength !== n) {
      throw new UnsupportedPolicyError(
        "h2o cannot follow a first decoding step recorded before compression (lazy(at=decode)) yet",
      );
    }
    const all = await ctx.readF32(sums.buffers[l]);
    columnSums = Array.from(
      { length: c.numHeads },
      (_, h) => all.subarray(h * sums.stride, (h + 1) * sums.stride),
    );
  }
  let queryStatistics: QueryStatistics | undefined;
  if (any((x) => x.queryStatistics)) {
    if (!state.queryStatistics) {
      throw new UnsupportedPolicyError(
        "this caller did not record the prompt's query statistics (observeRequest)",
      );
    }
    queryStatistics = await state.queryStatistics.read(l);
  }
  let valueNorms: Float64Array[] | undefined;
  if (any((x) => x.projectedValueNorms)) {
    const wo = r.outputProjection?.(l);
    if (!wo) {
      throw new UnsupportedPolicyError(
        "this caller gives no model weights: a press that weighs values by o_proj (critical) needs them",
      );
    }
    // They depend on the prompt's values and the model only: plans sharing a prefill (every
    // ratio of `critical` on a leaderboard) compute them once.
    const norms = () => projectedValueNorms(ctx, c, [...values.values()], wo);
    valueNorms = await (memo ? memo("critical value norms", norms) : norms());
  }
  const input = layerScoresInput(c, {
    layer: l,
    promptLength: n,
    obs,
    promptObs,
    keys,
    columnSums,
    votes: r.votes,
    valueNorms,
    values,
    queryStatistics,
  });
  const all = r.reconstruction;
  return {
    ...input,
    ...(all ? { reconstruction: () => all } : {}),
    ...(memo ? { memo } : {}),
  };
}
