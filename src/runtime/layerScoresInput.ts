/**
 * What a press sees of one layer after prefill ({@link LayerScoresInput}), built from what the
 * executor read back: the observation window (or only its SnapKV votes), the keys, H2O's column
 * sums. Accessors throw when a press asks for something its `needs` did not declare.
 *
 * @module
 */

import type { ModelConfig } from "../model/types.ts";
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
