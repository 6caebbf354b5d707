/** `lazy`: SimLayerKV lazy-layer detector. @module */
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
