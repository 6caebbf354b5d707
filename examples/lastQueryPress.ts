/**
 * A complete third-party press: `lastq`, SnapKV's observation window shrunk to the last query and
 * its pooling switched off (the one-query end of the window-size ablation in SnapKV, Li et al.,
 * 2024, arXiv 2404.14469). Each KV head keeps the tokens the last prompt query of its GQA group
 * attends to most, averaged over the group's query heads; unlike the built-in `tova`, which
 * averages over every head of the layer, each KV head chooses for itself.
 *
 * Use it: `deno task run --allow-plugins --policy 'use "./examples/lastQueryPress.ts"; else -> lastq(k=64)'`
 *
 * @module
 */

import type { Budget, LayerScoresInput, PressSchema } from "../mod.ts";
import { averageOverGroups, resolveBudget, topPositions } from "../mod.ts";

/** The selection: per KV head, the top k of the last query's group-averaged attention. */
export function selectLastQuery(
  input: Pick<LayerScoresInput, "promptLength" | "numKvHeads" | "groupSize" | "windowAttention">,
  k: number,
): number[][] {
  const perHead = input.windowAttention(1); // H arrays of N probabilities (the last query)
  const grouped = averageOverGroups(perHead, input.numKvHeads, input.groupSize);
  return grouped.map((scores) => topPositions(scores, Math.min(k, input.promptLength)));
}

/** The `lastq(k)` press. */
export const lastQueryPress: PressSchema = {
  kind: "press",
  name: "lastq",
  role: "select",
  when: "prefill",
  params: [{ name: "k", type: { kind: "budget" }, doc: "tokens kept per KV head" }],
  doc: "The last query's attention, per KV head: SnapKV with a one-query window, no pooling.",
  needs: { observationWindow: () => 1 },
  select: (input, params) =>
    selectLastQuery(input, resolveBudget(params.k as Budget, input.promptLength)),
};

/** What kvpolicy registers from this module. */
export const plugins: PressSchema[] = [lastQueryPress];
