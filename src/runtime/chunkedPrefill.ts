/**
 * Prefill with compression between chunks (`chunked(size=C)`, `src/plugins/chunkedPress.ts`): the
 * prompt goes through the model C tokens at a time; after each chunk but the last, the policy's
 * presses bring every chunked head back to its budget with room for the next chunk, so the cache
 * never holds more than the budget plus one chunk. The last compression runs where one-shot
 * compression does, after prefill (the executor's `apply`), with room for decoding.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { type Activations, releaseActivations } from "./forwardPass.ts";
import type { RaggedKvCache, StepHook } from "./raggedKvCache.ts";

/** What chunked prefill needs from the press layer (a `DecodingRecompressor`). */
export interface ChunkedPrefill {
  /** C: prompt tokens per chunk. */
  every: number;
  /** The step hook that keeps each chunk's last queries per layer (set on the cache). */
  stepHook(): StepHook;
  /** Compresses after the chunk ending before `next`, leaving `room` rows for what follows. */
  runChunk(cache: RaggedKvCache, next: number, room: number): Promise<void>;
}

/** The engine's chunk-by-chunk prefill (`Engine.prefill`), as this module calls it. */
type PrefillFn = (
  cache: RaggedKvCache,
  ids: number[],
  chunk: number,
  logits: "last",
  observe: undefined,
  firstPosition: number,
) => Promise<{ acts: Activations }>;

/** Initial rows per head for a prompt of `n` tokens: one chunk, or the whole prompt + `more`. */
export function chunkedCapacity(n: number, chunked: ChunkedPrefill, more: number): number {
  return n > chunked.every ? chunked.every : n + more;
}

/**
 * Prefills `ids` into `cache` chunk by chunk, compressing between chunks; returns the last
 * chunk's activations (its last position's logits; the caller releases them). `innerChunk` is
 * the engine's own prefill chunk (tokens per forward pass inside a chunk).
 */
export async function prefillChunked(
  prefill: PrefillFn,
  ctx: GpuContext,
  cache: RaggedKvCache,
  ids: number[],
  chunked: ChunkedPrefill,
  innerChunk: number,
): Promise<Activations> {
  const size = chunked.every;
  cache.stepHook = chunked.stepHook(); // released by the last compression (`apply`)
  for (let start = 0; start < ids.length; start += size) {
    const end = Math.min(ids.length, start + size);
    const { acts } = await prefill(
      cache,
      ids.slice(start, end),
      innerChunk,
      "last",
      undefined,
      start,
    );
    if (end === ids.length) return acts;
    releaseActivations(ctx, acts);
    await chunked.runChunk(cache, end, Math.min(size, ids.length - end));
  }
  throw new RangeError("prefillChunked: the prompt is empty");
}
