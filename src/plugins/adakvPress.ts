/** `adakv`: Ada-KV head-adaptive budgets. @module */
import type { PressSchema } from "./schema.ts";

/**
 * Ada-KV (Feng et al., 2024, arXiv 2407.11550): per layer, the SnapKV scores of all KV heads
 * compete for H_kv·k slots; each head's count becomes its budget with a safeguard floor:
 * budget_h = round(count_h·(1 − floor) + floor·k).
 */
export const adakvPress: PressSchema = {
  kind: "press",
  name: "adakv",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "average entries per KV head" },
    {
      name: "floor",
      type: { kind: "fraction" },
      default: 0.2,
      doc: "share of k every head keeps regardless of the competition",
    },
    { name: "window", type: { kind: "int", min: 1 }, default: 32, doc: "observation window" },
    { name: "pool", type: { kind: "int", min: 1 }, default: 7, doc: "pooling kernel size" },
  ],
  doc: "Ada-KV: head-adaptive budgets inside a layer on SnapKV scores.",
};
