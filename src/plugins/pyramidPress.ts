/** `pyramid`: PyramidKV layer-wise budgets. @module */
import type { PressSchema } from "./schema.ts";

/**
 * PyramidKV (Cai et al., 2024, arXiv 2406.02069; Zefan-Cai/KVCache-Factory `pyramidkv_utils.py`):
 * SnapKV scoring with per-layer budgets (window excluded) decreasing linearly from
 * max = 2(k − w) − min at layer 0 to min = (k − w)/β at the last layer.
 */
export const pyramidPress: PressSchema = {
  kind: "press",
  name: "pyramid",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "average entries per KV head, window included" },
    {
      name: "beta",
      type: { kind: "number", min: 1 },
      default: 20,
      doc: "ratio between the largest and smallest layer budget",
    },
    { name: "window", type: { kind: "int", min: 1 }, default: 32, doc: "observation window" },
    { name: "pool", type: { kind: "int", min: 1 }, default: 7, doc: "pooling kernel size" },
  ],
  doc: "PyramidKV: SnapKV scores with linearly decreasing per-layer budgets.",
};
