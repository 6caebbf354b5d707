/**
 * Gemma 3's sliding layers hold only their window (Gemma 3 technical report, arXiv 2503.19786:
 * local layers attend to the last W tokens; transformers keeps W − 1 past entries per sliding
 * layer, llama.cpp a sliding-window cache of W plus a batch). After prefill and the policy's
 * press, each sliding layer of the ragged cache is cut to its last W entries and becomes a ring of
 * W rows: every decoding step overwrites the oldest entry, so the step's query sees exactly the
 * keys its window allows (positions p − W + 1 … p) and the layer's memory stays W rows whatever
 * the length. Prefill still holds the whole prompt (its queries need up to W keys each, masked in
 * the kernels).
 *
 * A layer whose sequence (cached entries plus the tokens decoding may add) fits in W is left as
 * it is: nothing would be saved. A ring takes one token per step (`takesOneTokenPerStep`).
 *
 * @module
 */

import type { ModelConfig } from "../model/types.ts";
import type { LayoutLengths } from "./headLayout.ts";
import type { LayerTrace } from "./policyExecutor.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/** What a sliding layer of window `w` keeps after prefill: source rows, room, and whether it rolls. */
export interface SlidingLayout {
  /** Indices (= positions: sliding layers are never compacted before) of the entries kept. */
  keep: number[];
  /** Rows left for decoding (W − kept, never more than the tokens still to come). */
  extra: number;
  /** Whether the layer becomes a ring (it will reach W entries). */
  ring: boolean;
}

/**
 * The layout of a sliding layer of window `w` holding `cachedLength` entries in position order,
 * with `decodeBudget` tokens still to come; undefined when the whole sequence fits in the window.
 */
export function slidingLayout(
  w: number,
  cachedLength: number,
  decodeBudget: number,
): SlidingLayout | undefined {
  if (cachedLength + decodeBudget <= w) return undefined;
  const kept = Math.min(cachedLength, w);
  const keep = Array.from({ length: kept }, (_, i) => cachedLength - kept + i);
  const extra = Math.min(w - kept, decodeBudget);
  return { keep, extra, ring: kept + extra === w };
}

/**
 * Cuts every sliding layer of `cache` (Gemma 3's, `cache.layerWindows`) to its window after
 * prefill (see the module doc); a no-op for models without sliding layers. `cachedLength` entries
 * are cached in position order in those layers; `decodeBudget` tokens may still be appended.
 */
export function boundSlidingLayers(
  cache: RaggedKvCache,
  cachedLength: number,
  decodeBudget: number,
): void {
  cache.layerWindows.forEach((w, l) => {
    const layout = w === null ? undefined : slidingLayout(w, cachedLength, decodeBudget);
    if (!layout) return;
    const H = cache.layers[l].numKvHeads;
    cache.compact(
      l,
      Array.from({ length: H }, () => layout.keep),
      layout.extra,
      Array.from({ length: H }, () => (layout.ring ? 0 : undefined)),
    );
    if (layout.ring) cache.hasSlidingRing = true;
  });
}

/**
 * Marks Gemma 3's sliding layers, which no rule takes, in a policy's trace: the entries of the
 * window they keep after prefill ({@link boundSlidingLayers}, run by the caller of the press).
 */
export function traceSlidingLayers(
  trace: LayerTrace[],
  config: ModelConfig,
  lengths: LayoutLengths,
): void {
  config.gemma3?.layerWindows.forEach((w, l) => {
    const layout = w === null
      ? undefined
      : slidingLayout(w, lengths.cachedLength, lengths.decodeBudget);
    if (!layout) return;
    const kept = layout.keep.filter((p) => p < lengths.promptLength);
    for (const head of trace[l].heads) {
      head.pipeline = `the model's window (${w})`;
      head.kept = kept;
    }
  });
}
