/** `random`: a seeded uniform baseline. @module */
import type { PressSchema } from "./schema.ts";

/** Random eviction: each KV head keeps `k` entries drawn uniformly (seeded). A sanity baseline. */
export const randomPress: PressSchema = {
  kind: "press",
  name: "random",
  role: "select",
  when: "prefill",
  params: [
    { name: "k", type: { kind: "budget" }, doc: "entries kept per KV head" },
    { name: "seed", type: { kind: "int", min: 0 }, default: 0, doc: "random seed" },
  ],
  doc: "Random: keep k uniformly drawn entries per KV head (seeded baseline).",
};
