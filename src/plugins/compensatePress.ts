/** `compensate`: RazorAttention's compensation token. @module */
import type { PressSchema } from "./schema.ts";

/**
 * RazorAttention (Tang et al., 2024, arXiv 2407.15891): the entries a `select` press dropped are
 * collapsed into one compensation token (mean key, mean value) placed between sink and window.
 * `weight=count` (default) adds ln(N_d) to its logit, the paper's formulation, so it stands for
 * the N_d tokens it replaces; `weight=plain` is Huawei's deployed plain mean.
 */
export const compensatePress: PressSchema = {
  kind: "press",
  name: "compensate",
  role: "augment",
  when: "prefill",
  params: [
    {
      name: "weight",
      type: { kind: "enum", values: ["count", "plain"] },
      default: "count",
      doc: "count: logit bias ln(N_d) as in the paper; plain: unweighted mean",
    },
  ],
  doc: "RazorAttention compensation token: mean of the dropped keys and values.",
};
