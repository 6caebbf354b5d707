/** `quant`: KIVI-style low-bit KV storage. @module */
import type { PressSchema } from "./schema.ts";

/**
 * KIVI (Liu et al., 2024, arXiv 2402.02750; jy-yuan/KIVI): asymmetric min/max quantization,
 * keys per channel (groups of `group` tokens), values per token (groups of `group` channels);
 * the most recent `residual` tokens stay in full precision until a block fills.
 */
export const quantPress: PressSchema = {
  kind: "press",
  name: "quant",
  role: "store",
  when: "bounded",
  params: [
    { name: "bits", type: { kind: "int", oneOf: [2, 4, 8] }, default: 4, doc: "bits per value" },
    { name: "group", type: { kind: "int", min: 1 }, default: 32, doc: "quantization group size" },
    {
      name: "residual",
      type: { kind: "int", min: 0 },
      default: 32,
      doc: "recent tokens kept in full precision",
    },
  ],
  doc: "KIVI: packed low-bit keys (per channel) and values (per token).",
};
