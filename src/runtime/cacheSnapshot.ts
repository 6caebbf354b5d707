/**
 * A copy of a compressed cache on the GPU, to answer several questions from the same compressed
 * context (kvpress's query-agnostic protocol): snapshot after the press, restore before each next
 * question, so entries a question and its answer appended — and anything they evicted or packed
 * — are as before. Costs one more copy of the compressed cache's buffers while it lives.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/** Copies of a cache's state buffers ({@link RaggedKvCache.stateBuffers}). */
export interface CacheSnapshot {
  /** Pairs of (live buffer, copy). */
  pairs: [GPUBuffer, GPUBuffer][];
  /** Bytes held by the copies. */
  bytes: number;
}

/** Copies every state buffer of `cache` (queued; later submissions see the copy done). */
export function snapshotCache(ctx: GpuContext, cache: RaggedKvCache): CacheSnapshot {
  const pairs: [GPUBuffer, GPUBuffer][] = [];
  const encoder = ctx.device.createCommandEncoder();
  try {
    for (const live of cache.stateBuffers()) {
      const copy = ctx.createBuffer(live.size, undefined, `${live.label} snapshot`);
      pairs.push([live, copy]);
      encoder.copyBufferToBuffer(live, 0, copy, 0, live.size);
    }
  } catch (e) {
    for (const [, copy] of pairs) ctx.release(copy);
    throw e;
  }
  ctx.device.queue.submit([encoder.finish()]);
  return { pairs, bytes: pairs.reduce((sum, [, copy]) => sum + copy.size, 0) };
}

/**
 * Puts the snapshot's contents back into the live buffers. The cache must not have replaced a
 * layer since (compaction happens once, before the snapshot): that is checked.
 */
export function restoreCache(ctx: GpuContext, cache: RaggedKvCache, snap: CacheSnapshot): void {
  const live = cache.stateBuffers();
  if (live.length !== snap.pairs.length || live.some((b, i) => b !== snap.pairs[i][0])) {
    throw new Error("cache snapshot: the cache's buffers changed since the snapshot");
  }
  const encoder = ctx.device.createCommandEncoder();
  for (const [dst, copy] of snap.pairs) encoder.copyBufferToBuffer(copy, 0, dst, 0, dst.size);
  ctx.device.queue.submit([encoder.finish()]);
}

/** Frees the snapshot's copies. */
export function releaseSnapshot(ctx: GpuContext, snap: CacheSnapshot): void {
  for (const [, copy] of snap.pairs.splice(0)) ctx.release(copy);
}
