/** `lazy`: SimLayerKV lazy-layer detector. @module */
import type { ModelConfig } from "../model/types.ts";
import type { DetectorSchema } from "./schema.ts";

/** SimLayerKV's official thresholds by model family (sail-sg/SimLayerKV `pred.py`). */
export const LAZY_THRESHOLDS: Readonly<Record<string, number>> = {
  "llama-3": 0.9,
  "llama-2": 0.65,
  mistral: 0.8,
  qwen: 0.85,
};

/**
 * SimLayerKV (Zhang et al., 2024, arXiv 2410.13846; sail-sg/SimLayerKV
 * `SimLayerKV_attention_llama.py`): a layer is lazy when its attention rests on the first `sink`
 * positions and the recent ones, averaged over heads, above `threshold`. Two official variants:
 * `at=decode` (the default, the paper's) scores the first generated token's attention, mass on
 * the first `sink` plus mass on the last `recent` (1024) positions; `at=prefill` scores the last
 * `queries` (32) prompt queries, each on the first `sink` positions plus the `recent` (512)
 * positions before it (itself excluded). `threshold=auto` picks the official per-family value;
 * `recent=auto` is 1024 at decode, 512 at prefill.
 */
export const lazyDetector: DetectorSchema = {
  kind: "detector",
  name: "lazy",
  target: "layers",
  params: [
    {
      name: "threshold",
      type: { kind: "number", min: 0, max: 1 },
      default: null,
      doc: "lazy when score > threshold; auto = per family (Llama-3 0.9, Llama-2 0.65, ...)",
    },
    { name: "sink", type: { kind: "int", min: 0 }, default: 4, doc: "initial positions counted" },
    {
      name: "recent",
      type: { kind: "int", min: 1 },
      default: null,
      doc: "recent positions counted; auto = 1024 at decode, 512 at prefill (official)",
    },
    {
      name: "at",
      type: { kind: "enum", values: ["decode", "prefill"] },
      default: "decode",
      doc: "where the attention is measured",
    },
    {
      name: "queries",
      type: { kind: "int", min: 1, max: 1024 },
      default: 32,
      doc: "last prompt queries scored at prefill (official 32)",
    },
  ],
  doc: "SimLayerKV: layers whose attention sits on sinks and recent tokens.",
};

/** The official recent span: 1024 positions at the first decoding step, 512 at prefill. */
export function lazyRecentFor(params: { recent: number | null; at: "decode" | "prefill" }): number {
  return params.recent ?? (params.at === "prefill" ? 512 : 1024);
}

/** Parameters of the lazy detector, named as in the schema (`threshold: null` = auto). */
export interface LazyParams {
  /** Lazy when score > threshold; `null` resolves with {@link lazyThresholdFor}. */
  threshold: number | null;
  /** Initial positions counted. */
  sink: number;
  /** Recent positions counted; `null` resolves with {@link lazyRecentFor}. */
  recent: number | null;
  /** Where the attention is measured (the runtime picks the queries accordingly). */
  at: "decode" | "prefill";
  /** Last prompt queries scored at prefill. */
  queries: number;
}

/**
 * The SimLayerKV family of a model, a key of {@link LAZY_THRESHOLDS}: `mistral` → mistral,
 * `qwen2` → qwen; `llama` → llama-3 when rope_theta ≥ 500000 or vocab_size ≥ 128000 (Llama-3's
 * 500k theta and 128k vocabulary), llama-2 otherwise.
 */
export function lazyFamily(
  config: Pick<ModelConfig, "architecture" | "ropeTheta" | "vocabSize">,
): string {
  if (config.architecture === "mistral") return "mistral";
  if (config.architecture === "qwen2") return "qwen";
  return config.ropeTheta >= 500000 || config.vocabSize >= 128000 ? "llama-3" : "llama-2";
}

/** The official threshold for the model's family ({@link lazyFamily}). */
export function lazyThresholdFor(
  config: Pick<ModelConfig, "architecture" | "ropeTheta" | "vocabSize">,
): number {
  return LAZY_THRESHOLDS[lazyFamily(config)];
}

/**
 * SimLayerKV's decode-time score of one layer (the official `[SimLayerKV_decode]` branch).
 * `attention` holds, per QUERY head, one query's probabilities over the `length` keys it sees
 * (the first generated token over prompt + itself). Per head: mass on positions `< sink` plus
 * mass on the last `recent` positions — two sums, as the official code adds
 * `attn[..., 0:4].sum() + attn[..., -1024:].sum()`, so a position in both is counted twice
 * (only when `length < sink + recent`). The score is the mean over heads.
 */
export function lazyDecodeScore(
  attention: readonly ArrayLike<number>[],
  length: number,
  sink: number,
  recent: number,
): number {
  let total = 0;
  for (const probs of attention) {
    if (probs.length !== length) throw new RangeError(`a row must hold ${length} values`);
    for (let j = 0; j < Math.min(sink, length); j++) total += probs[j];
    for (let j = Math.max(0, length - recent); j < length; j++) total += probs[j];
  }
  return attention.length === 0 ? 0 : total / attention.length;
}

/**
 * SimLayerKV's prefill-time score of one layer (the official `[SimLayerKV_prefill]` branch,
 * `compute_attention_sink_weights`). `attention` holds, per QUERY head, `rows × length`
 * probabilities (row-major) of the prompt queries at positions `firstRow … firstRow + rows − 1`
 * over the `length` prompt keys (causal zeros allowed). Per row at position i: mass on positions
 * `j < sink` plus mass on `j ≥ sink` with `1 ≤ i − j ≤ band` (the query itself excluded). The
 * score is the mean over rows and heads.
 */
export function lazyPrefillScore(
  attention: readonly ArrayLike<number>[],
  length: number,
  firstRow: number,
  sink: number,
  band: number,
): number {
  let total = 0;
  let rows = 0;
  for (const probs of attention) {
    if (probs.length % length !== 0) throw new RangeError(`rows must hold ${length} values`);
    for (let r = 0; r * length < probs.length; r++) {
      const i = firstRow + r, row = r * length;
      for (let j = 0; j < Math.min(sink, length); j++) total += probs[row + j];
      for (let j = Math.max(sink, i - band); j <= Math.min(i - 1, length - 1); j++) {
        total += probs[row + j];
      }
      rows++;
    }
  }
  return rows === 0 ? 0 : total / rows;
}

/**
 * Which layers are lazy: `scores[l]` from {@link lazyLayerScore}; layer l is lazy when
 * `scores[l] > threshold` (strictly).
 */
export function lazyLayers(scores: readonly number[], threshold: number): boolean[] {
  return scores.map((score) => score > threshold);
}
