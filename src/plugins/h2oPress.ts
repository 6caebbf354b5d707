/** `h2o`: Heavy-Hitter Oracle. @module */
import type { PressSchema } from "./schema.ts";

/**
 * H2O (Zhang et al., 2023, arXiv 2306.14048; FMInference/H2O `modify_llama.py`): scores are
 * attention column sums accumulated over all queries and steps; keep the top `heavy` non-recent
 * entries plus the last `recent`; evicts at every decoding step. Paper runs: 10 % + 10 %.
 */
export const h2oPress: PressSchema = {
  kind: "press",
  name: "h2o",
  role: "select",
  when: "bounded",
  params: [
    {
      name: "heavy",
      type: { kind: "budget" },
      default: { fraction: 0.1 },
      doc: "heavy-hitter entries kept",
    },
    {
      name: "recent",
      type: { kind: "budget" },
      default: { fraction: 0.1 },
      doc: "most recent entries kept",
    },
  ],
  doc: "H2O: accumulated attention heavy hitters + recent window; evicts every step.",
};
