/** `chunked`: prefill in chunks, compressing between them. @module */
import type { PressSchema } from "./schema.ts";

/**
 * Bounded-memory prefill: the prompt goes through the model `size` tokens at a time and, after
 * each chunk, the rule's selection press runs over everything the head holds — what it kept so
 * far and the new chunk — and brings it back to its budget (resolved against the whole prompt's
 * length), so a head never holds more than its budget plus one chunk. kvpress compresses only
 * after the whole prompt is cached (its ChunkPress scores chunk by chunk but still holds the full
 * cache); SnapKV's paper processes long prompts this way.
 *
 * Per method: `snap` scores each chunk with the chunk's own last `window` queries (one-shot
 * SnapKV sees only the prompt's last window; the final chunk's step is exactly that, over fewer
 * candidates); `knorm` keeps the lowest-norm keys seen so far; `random` draws per chunk. Beyond
 * the selection, later chunks attend to the compressed cache, so from layer 1 on their keys and
 * values differ from one-shot prefill's: that is the quality cost chunking trades for memory. Presses whose budgets or scores need the whole prompt at once
 * (`pyramid`, `adakv`, `h2o`), bounded or augmented pipelines and the `lazy` detector are refused.
 * Every rule of a chunked policy is chunked with the same size or keeps its heads `full`. A prompt
 * no longer than one chunk is compressed once after prefill, exactly as without `chunked` (its one
 * chunk's step is that compression), with the scores computed where one-shot scoring computes them.
 */
export const chunkedPress: PressSchema = {
  kind: "press",
  name: "chunked",
  role: "augment",
  when: "prefill",
  params: [
    {
      name: "size",
      type: { kind: "int", min: 1, max: 1 << 24 },
      default: 4096,
      doc: "prompt tokens per chunk; the press runs after each",
    },
  ],
  doc: "Chunked prefill: the press runs after every chunk, so a head holds at most its budget " +
    "plus one chunk (SnapKV's long-prompt mode).",
};
