/**
 * A complete third-party press: TOVA (Oren et al., 2024, "Transformers are Multi-State RNNs",
 * arXiv 2401.06104). The score of a cached token is the LAST query's attention to it, averaged
 * over all heads of the layer, so every KV head of a layer keeps the same tokens.
 *
 * The original evicts one token per decoding step to hold a fixed size; this plugin applies the
 * selection once after prefill (the decode-time version needs per-step attention, which the
 * runtime does not hand to plugins yet).
 *
 * Use it: `deno task run --allow-plugins --policy 'use "./examples/tovaPress.ts"; else -> tova(k=64)'`
 *
 * @module
 */

import type { Budget, LayerScoresInput, PressSchema } from "../mod.ts";
import { resolveBudget, topPositions } from "../mod.ts";

/** TOVA's selection: per layer, one token set shared by every KV head. */
export function selectTova(
  input: Pick<LayerScoresInput, "promptLength" | "numKvHeads" | "windowAttention">,
  k: number,
): number[][] {
  const n = input.promptLength;
  const perHead = input.windowAttention(1); // H arrays of n probabilities (the last query)
  const mean = new Float64Array(n);
  for (const probs of perHead) for (let j = 0; j < n; j++) mean[j] += probs[j] / perHead.length;
  const kept = topPositions(mean, Math.min(k, n));
  return Array.from({ length: input.numKvHeads }, () => kept.slice());
}

/** The `tova(k)` press. */
export const tovaPress: PressSchema = {
  kind: "press",
  name: "tova",
  role: "select",
  when: "prefill",
  params: [{ name: "k", type: { kind: "budget" }, doc: "tokens kept per layer (all heads alike)" }],
  doc: "TOVA: keep the tokens the last query attends to most, averaged over heads.",
  needs: { observationWindow: () => 1 },
  select: (input, params) =>
    selectTova(input, resolveBudget(params.k as Budget, input.promptLength)),
};

/** What kvpolicy registers from this module. */
export const plugins: PressSchema[] = [tovaPress];
