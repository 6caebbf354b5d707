/** `full`: keep every entry (the uncompressed baseline). @module */
import type { PressSchema } from "./schema.ts";

/** The `full` press: keeps the whole cache; the reference every method is compared with. */
export const fullPress: PressSchema = {
  kind: "press",
  name: "full",
  role: "select",
  when: "prefill",
  params: [],
  doc: "Keep every cache entry (no compression).",
};
