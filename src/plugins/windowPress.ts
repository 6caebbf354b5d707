/** `window`: StreamingLLM attention sinks + recent window. @module */
import type { PressSchema } from "./schema.ts";

/**
 * StreamingLLM (Xiao et al., 2023, arXiv 2309.17453; mit-han-lab/streaming-llm): keep the first
 * `sink` entries and the last `recent` ones, evicting the oldest non-sink entry as tokens arrive.
 * Official defaults: start 4, recent 2000. Original positions are kept (no re-rotation).
 */
export const windowPress: PressSchema = {
  kind: "press",
  name: "window",
  role: "select",
  when: "bounded",
  params: [
    { name: "sink", type: { kind: "int", min: 0 }, default: 4, doc: "initial entries always kept" },
    {
      name: "recent",
      type: { kind: "budget" },
      default: { tokens: 2000 },
      doc: "most recent entries kept",
    },
  ],
  doc: "StreamingLLM: first `sink` entries + last `recent` entries; bounded while decoding.",
};
