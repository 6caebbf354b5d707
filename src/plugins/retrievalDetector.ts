/** `retrieval`: RazorAttention retrieval-head detector. @module */
import type { DetectorSchema } from "./schema.ts";

/**
 * RazorAttention (Tang et al., 2024, arXiv 2407.15891): probe the model with BOS + a random block
 * repeated 4 times; a KV head's echo and induction scores are the max over its query heads;
 * retrieval heads = top `induction` fraction by induction ∪ top `echo` fraction by echo.
 * `top=15%` is shorthand for induction = top − echo.
 */
export const retrievalDetector: DetectorSchema = {
  kind: "detector",
  name: "retrieval",
  target: "heads",
  params: [
    {
      name: "induction",
      type: { kind: "fraction" },
      default: 0.14,
      doc: "share of heads kept by induction score",
    },
    { name: "echo", type: { kind: "fraction" }, default: 0.01, doc: "share kept by echo score" },
    {
      name: "top",
      type: { kind: "fraction" },
      default: null,
      doc: "total share (sets induction = top − echo); auto = induction + echo",
    },
  ],
  doc: "RazorAttention: heads with high echo/induction scores on a repeated random probe.",
};
