/** `snap`: SnapKV. @module */
import type { PressSchema } from "./schema.ts";

/**
 * SnapKV (Li et al., 2024, arXiv 2404.14469; FasterDecoding/SnapKV `SnapKVCluster.update_kv`):
 * the last `window` queries vote (softmax attention summed over the window, averaged over the
 * query heads of a GQA group), votes are pooled along positions with kernel `pool`, and each KV
 * head keeps its top `k − window` prefix positions plus the window. Runs once after prefill.
 */
export const snapPress: PressSchema = {
  kind: "press",
  name: "snap",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "entries kept per KV head, window included" },
    {
      name: "window",
      type: { kind: "int", min: 1 },
      default: 32,
      doc: "observation window (last prompt queries)",
    },
    { name: "pool", type: { kind: "int", min: 1 }, default: 7, doc: "pooling kernel size" },
    {
      name: "reduce",
      type: { kind: "enum", values: ["max", "avg"] },
      default: "max",
      doc: "pooling: max_pool1d or avg_pool1d",
    },
  ],
  doc: "SnapKV: observation-window votes, pooled, per-head top-k after prefill.",
};
