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
 * SimLayerKV (Zhang et al., 2024, arXiv 2410.13846): a layer is lazy when its attention mass on
 * the first `sink` and last `recent` positions, averaged over heads, exceeds `threshold` — taken
 * at the first decoding step (`at=decode`, the official code) or from the last prompt queries
 * (`at=prefill`). `threshold=auto` picks the official per-family value.
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
      default: 1024,
      doc: "recent positions counted",
    },
    {
      name: "at",
      type: { kind: "enum", values: ["decode", "prefill"] },
      default: "decode",
      doc: "where the attention is measured",
    },
  ],
  doc: "SimLayerKV: layers whose attention sits on sinks and recent tokens.",
};

/** Parameters of the lazy detector, named as in the schema (`threshold: null` = auto). */
export interface LazyParams {
  /** Lazy when score > threshold; `null` resolves with {@link lazyThresholdFor}. */
  threshold: number | null;
  /** Initial positions counted. */
  sink: number;
  /** Recent positions counted. */
  recent: number;
  /** Where the attention is measured (the runtime picks the queries accordingly). */
  at: "decode" | "prefill";
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
 * SimLayerKV score of one layer. `attention` holds, per QUERY head, the probabilities of the
 * measured query rows over the `length` keys they could see (`rows × length`, row-major; one row
 * at `at=decode`: the first generated token over prompt + itself; at `at=prefill` the last
 * prompt query or queries, causal zeros allowed). Per row: mass on positions `< sink` plus mass
 * on positions `≥ length − recent`, each position counted once (so sink + recent ≥ length gives
 * 1). The score is the mean over heads and rows.
 */
export function lazyLayerScore(
  attention: readonly ArrayLike<number>[],
  length: number,
  sink: number,
  recent: number,
): number {
  const recentStart = Math.max(sink, length - recent);
  let total = 0;
  let rows = 0;
  for (const probs of attention) {
    if (probs.length % length !== 0) throw new RangeError(`rows must hold ${length} values`);
    for (let row = 0; row < probs.length; row += length) {
      let mass = 0;
      for (let j = 0; j < Math.min(sink, length); j++) mass += probs[row + j];
      for (let j = recentStart; j < length; j++) mass += probs[row + j];
      total += mass;
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
