/** `knorm`: keep the keys with the lowest L2 norm. @module */
import type { PressSchema } from "./schema.ts";

/**
 * Knorm (Devoto et al., 2024, arXiv 2406.11430; kvpress `knorm_press.py`): keys with a low L2
 * norm attract attention, so each KV head keeps its `k` lowest-norm keys. Query-agnostic.
 */
export const knormPress: PressSchema = {
  kind: "press",
  name: "knorm",
  role: "select",
  when: "prefill",
  params: [{ name: "k", type: { kind: "budget" }, doc: "entries kept per KV head" }],
  doc: "Knorm: keep the k keys with the lowest L2 norm.",
};
