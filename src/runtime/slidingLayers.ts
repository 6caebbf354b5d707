/**
 * Gemma 3's sliding layers hold only their window (Gemma 3 technical report, arXiv 2503.19786:
 * local layers attend to the last W tokens; transformers keeps W − 1 past entries per sliding
 * layer, llama.cpp a sliding-window cache of W plus a batch). After prefill and the policy's
 * press, each sliding layer of the ragged cache is cut to its last W entries and becomes a ring of
 * W rows: every decoding step overwrites the oldest entry, so the step's query sees exactly the
 * keys its window allows (positions p − W + 1 … p) and the layer's memory stays W rows whatever
 * the length.
 *
 * Prefill does not hold the whole prompt either: a cache built with `passRows` gives each sliding
 * layer W + `passRows` rows, and before a forward pass that would not fit, the layer keeps only
 * its last W entries — the W − 1 that the pass's first query can see, and the one more that the
 * ring cut after prefill starts from, whatever follows (a KVzip repeat that is dropped again) —
 * moved to the front of the same buffers ({@link rollSlidingLayers}). The prefill kernels mask by row (a query's own
 * row minus W), so they need no offset; the cache records each layer's first position
 * (`slidingOffset`). A sliding layer's rows are therefore not positions: it takes no rule, and
 * detectors and KVzip's global cut leave it out.
 *
 * A layer whose sequence (cached entries plus the tokens decoding may add) fits in W is left as
 * it is: nothing would be saved. A ring takes one token per step (`takesOneTokenPerStep`).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { type KvCacheLayer, kvRowBytes } from "../gpu/kvCache.ts";
import { isQuantLayer } from "../gpu/quantKvCache.ts";
import type { ModelConfig } from "../model/types.ts";
import type { LayoutLengths } from "./headLayout.ts";
import type { LayerTrace } from "./policyTrace.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/** What a sliding layer of window `w` keeps after prefill: source rows, room, and whether it rolls. */
export interface SlidingLayout {
  /** Positions of the entries kept (rows from the layer's `slidingOffset` on). */
  keep: number[];
  /** Rows left for decoding (W − kept, never more than the tokens still to come). */
  extra: number;
  /** Whether the layer becomes a ring (it will reach W entries). */
  ring: boolean;
}

/**
 * The layout of a sliding layer of window `w` after `cachedLength` positions, with `decodeBudget`
 * tokens still to come; undefined when the whole sequence fits in the window.
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
    const H = cache.layers[l].numKvHeads, offset = cache.slidingOffset[l];
    // A layer that rolled holds at least its last W positions (see rollSlidingLayers).
    const keep = layout.keep.map((p) => p - offset);
    if (keep.some((row) => row < 0)) {
      throw new Error(`sliding layer ${l}: positions before ${offset} are gone`);
    }
    cache.compact(
      l,
      Array.from({ length: H }, () => keep),
      layout.extra,
      Array.from({ length: H }, () => (layout.ring ? 0 : undefined)),
    );
    cache.slidingOffset[l] = layout.keep[0] ?? offset;
    if (layout.ring) cache.hasSlidingRing = true;
  });
}

/**
 * Encodes copies of each head's entries `length − count .. length − 1` in `from` (one of `layer`'s
 * K or V buffers) to `to`, `count` rows per head, heads one after another.
 */
function packLastRows(
  encoder: GPUCommandEncoder,
  layer: KvCacheLayer,
  from: GPUBuffer,
  length: number,
  count: number,
  to: GPUBuffer,
): void {
  const row = kvRowBytes(layer.headDim, layer.dtype);
  for (let h = 0; h < layer.numKvHeads && count > 0; h++) {
    const at = (layer.bases[h] + length - count) * row;
    encoder.copyBufferToBuffer(from, at, to, h * count * row, count * row);
  }
}

/** Encodes the inverse of {@link packLastRows}: `count` rows per head to the front of each head. */
function unpackToFront(
  encoder: GPUCommandEncoder,
  layer: KvCacheLayer,
  from: GPUBuffer,
  count: number,
  to: GPUBuffer,
): void {
  const row = kvRowBytes(layer.headDim, layer.dtype);
  for (let h = 0; h < layer.numKvHeads && count > 0; h++) {
    encoder.copyBufferToBuffer(from, h * count * row, to, layer.bases[h] * row, count * row);
  }
}

/**
 * Before a forward pass appends `m` rows from position `next`: every sliding layer of `cache`
 * without room for them keeps only its last W entries, copied to the front of its own buffers
 * on the GPU (so passes prepared over those buffers stay valid), and its `slidingOffset` moves on.
 * Such layers hold their entries in position order from `slidingOffset` to `next − 1`.
 */
export function rollSlidingLayers(
  ctx: GpuContext,
  cache: RaggedKvCache,
  next: number,
  m: number,
): void {
  const moves = cache.layerWindows.flatMap((w, l) => {
    if (w === null) return [];
    const layer = cache.layers[l];
    const room = Math.min(...layer.capacities), length = next - cache.slidingOffset[l];
    if (length + m <= room) return [];
    const keep = Math.min(length, w);
    if (isQuantLayer(layer) || layer.fold || layer.rerotate || keep + m > room) {
      throw new Error(
        `sliding layer ${l}: cannot roll ${length} entries to make room for ${m} in ${room} rows`,
      );
    }
    return [{ l, layer, length, keep }];
  });
  if (moves.length === 0) return;
  const row = kvRowBytes(cache.layers[0].headDim, cache.dtype);
  const H = cache.layers[0].numKvHeads;
  const scratch = ctx.createBuffer(
    Math.max(1, ...moves.map((x) => x.keep)) * H * row,
    GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    "sliding roll",
  );
  const encoder = ctx.device.createCommandEncoder();
  for (const { layer, length, keep } of moves) {
    for (const buffer of [layer.k, layer.v]) {
      packLastRows(encoder, layer, buffer, length, keep, scratch);
      unpackToFront(encoder, layer, scratch, keep, buffer);
    }
  }
  ctx.device.queue.submit([encoder.finish()]);
  ctx.release(scratch);
  for (const { l, layer, length, keep } of moves) {
    ctx.write(layer.meta, H * 4, new Uint32Array(H).fill(keep));
    cache.slidingOffset[l] += length - keep;
  }
}

/** The last W entries of every sliding layer, copied aside ({@link setAsideSlidingWindows}). */
export interface SlidingWindows {
  /** The position after the entries set aside. */
  next: number;
  /** Per sliding layer: its K and V rows (`count` per head, heads one after another). */
  layers: Map<number, { k: GPUBuffer; v: GPUBuffer; count: number }>;
}

/**
 * Copies the last W entries of every sliding layer of `cache`, which hold the positions before
 * `next`, aside on the GPU, so that passes appended after them may roll through the layer (KVzip's
 * repeats) and {@link restoreSlidingWindows} can put the layer back as it was, without room for
 * those passes in the layer. The copies count in the cache's K/V peak.
 */
export function setAsideSlidingWindows(
  ctx: GpuContext,
  cache: RaggedKvCache,
  next: number,
): SlidingWindows {
  const layers: SlidingWindows["layers"] = new Map();
  const encoder = ctx.device.createCommandEncoder();
  let bytes = 0;
  cache.layerWindows.forEach((w, l) => {
    const layer = cache.layers[l];
    if (w === null || isQuantLayer(layer)) return;
    const length = next - cache.slidingOffset[l], count = Math.min(length, w);
    const row = kvRowBytes(layer.headDim, layer.dtype), H = layer.numKvHeads;
    const size = Math.max(1, count * H) * row;
    const saved = {
      k: ctx.createBuffer(size, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, `kv ${l} aside`),
      v: ctx.createBuffer(size, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, `kv ${l} aside`),
      count,
    };
    packLastRows(encoder, layer, layer.k, length, count, saved.k);
    packLastRows(encoder, layer, layer.v, length, count, saved.v);
    bytes += 2 * size;
    layers.set(l, saved);
  });
  ctx.device.queue.submit([encoder.finish()]);
  cache.notePeak(bytes);
  return { next, layers };
}

/**
 * Puts every sliding layer set aside by {@link setAsideSlidingWindows} back: its saved entries at
 * the front of its buffers, its length and first position as they mark them.
 */
export function restoreSlidingWindows(
  ctx: GpuContext,
  cache: RaggedKvCache,
  saved: SlidingWindows,
): void {
  const encoder = ctx.device.createCommandEncoder();
  for (const [l, s] of saved.layers) {
    const layer = cache.layers[l];
    if (isQuantLayer(layer)) throw new Error(`sliding layer ${l} was quantised`);
    unpackToFront(encoder, layer, s.k, s.count, layer.k);
    unpackToFront(encoder, layer, s.v, s.count, layer.v);
  }
  ctx.device.queue.submit([encoder.finish()]);
  for (const [l, s] of saved.layers) {
    const layer = cache.layers[l];
    ctx.write(layer.meta, layer.numKvHeads * 4, new Uint32Array(layer.numKvHeads).fill(s.count));
    cache.slidingOffset[l] = saved.next - s.count;
  }
}

/** Frees the copies of {@link setAsideSlidingWindows}. */
export function releaseSlidingWindows(ctx: GpuContext, saved: SlidingWindows): void {
  for (const s of saved.layers.values()) {
    ctx.release(s.k);
    ctx.release(s.v);
  }
  saved.layers.clear();
}

/**
 * Cuts sliding layer `l` of `cache`, which holds the entries before position `next`, to its last
 * W (what later passes can see, and the ring {@link boundSlidingLayers} keeps if this was the last
 * chunk) with `extra` rows of room, in a new allocation: chunked prefill's compression between
 * chunks (`decodingRecompress.ts`).
 */
export function trimSlidingLayer(
  cache: RaggedKvCache,
  l: number,
  next: number,
  extra: number,
): void {
  const w = cache.layerWindows[l];
  if (w === null) throw new Error(`layer ${l} has no sliding window`);
  const length = next - cache.slidingOffset[l], keep = Math.min(length, w);
  const rows = Array.from({ length: keep }, (_, i) => length - keep + i);
  cache.compact(l, cache.layers[l].capacities.map(() => rows), extra);
  cache.slidingOffset[l] += length - keep;
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
