/** `decoding`: keeps a press's cache within a budget while generating. @module */
import type { ParamValue, PressSchema } from "./schema.ts";

/**
 * Decoding-time compression for presses that otherwise act once, after prefill (`snap`, `knorm`,
 * `random`, `pyramid`, `full`), so that long generations stay within a budget:
 *
 * - `decoding(recent=R)`: the entries the press kept from the prompt stay; generated tokens go to
 *   a ring of R entries after them, the oldest generated entry evicted as a new one arrives
 *   (StreamingLLM's eviction, applied to the generated part only). A head holds at most its
 *   prompt budget + R entries.
 * - `decoding(every=N)`: kvpress's `DecodingPress` (`kvpress/presses/decoding_press.py`): every N
 *   generated tokens the press runs again over the whole cache — prompt entries kept so far and
 *   the tokens generated since — and brings each head back to its budget (its `k` resolved
 *   against the prompt length, as at prefill). Scores come from the last generated tokens'
 *   queries, as kvpress's buffered hidden states give them (SnapKV's observation window is the
 *   last `window` generated tokens). A head holds at most its budget + N entries.
 *
 * H2O's per-step eviction and a rolling `window` are the built-in cases of the same mechanism and
 * bound themselves; `decoding` is refused after them.
 */
export const decodingPress: PressSchema = {
  kind: "press",
  name: "decoding",
  role: "augment",
  when: "bounded",
  params: [
    {
      name: "every",
      type: { kind: "int", min: 1, max: 1 << 20 },
      default: null,
      doc: "re-apply the selection press to the whole cache every N generated tokens",
    },
    {
      name: "recent",
      type: { kind: "int", min: 1, max: 1 << 20 },
      default: null,
      doc: "keep the generated tokens in a ring of this many entries after the prompt's",
    },
  ],
  checkParams: (params) => {
    const given = ["every", "recent"].filter((p) => params[p] !== null);
    if (given.length === 1) return undefined;
    return {
      error: given.length === 0
        ? "'decoding' needs every=N (re-apply the press) or recent=R (a ring for generated tokens)"
        : "'decoding' takes every=N or recent=R, not both",
      hint: "e.g. snap(k=1024) + decoding(every=512), or snap(k=1024) + decoding(recent=256)",
    };
  },
  doc: "Decoding-time compression: a ring for generated tokens, or the press re-applied every " +
    "N tokens (kvpress DecodingPress).",
};

/** The resolved mode of a `decoding` press. */
export type DecodingMode = { every: number } | { recent: number };

/** The mode of `decoding`'s checked parameters. */
export function decodingMode(params: Record<string, ParamValue>): DecodingMode {
  return params.every !== null ? { every: params.every as number } : {
    recent: params.recent as number,
  };
}
