/**
 * How an engine batches its work: prompt tokens per prefill chunk and decode steps per command
 * buffer, by adapter kind (CPU adapters run the GPU work on the cores that encode it; GPUs want
 * large dispatches and early submissions).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import type { ModelConfig } from "../model/types.ts";

/** Default prompt tokens per prefill chunk on CPU adapters (see {@link defaultPrefillChunk}). */
export const DEFAULT_PREFILL_CHUNK = 512;

/**
 * Prompt tokens per prefill chunk on GPUs: a chunk's queries are the prefill attention kernel's
 * threads, and 512 of them leave an H100 mostly idle (thread kernel, H32/KV8 D64 over 4096 keys:
 * 128 queries 0.23 TFLOP/s, 512 queries 0.79; bench/NOTES.md section 4).
 */
export const GPU_PREFILL_CHUNK = 2048;

/**
 * The prefill chunk an engine for `config` on `ctx` uses unless a request names one: by adapter
 * kind, and never more rows than the widest activation buffer (`[rows, max(intermediate, H·D,
 * hidden)]` f32) can bind.
 */
export function defaultPrefillChunk(
  ctx: Pick<GpuContext, "isFallbackAdapter" | "maxBindingBytes">,
  config: Pick<ModelConfig, "intermediateSize" | "numHeads" | "headDim" | "hiddenSize">,
): number {
  const widest = Math.max(
    config.intermediateSize,
    config.numHeads * config.headDim,
    config.hiddenSize,
  );
  const fit = Math.max(1, Math.floor(ctx.maxBindingBytes / (4 * widest)));
  return Math.min(ctx.isFallbackAdapter ? DEFAULT_PREFILL_CHUNK : GPU_PREFILL_CHUNK, fit);
}
/** Decode steps per read-back of sampled ids unless a request names its own `readEvery`. */
export const DEFAULT_READ_EVERY = 16;
/**
 * Decode steps per command buffer within a read batch on GPUs: the GPU starts on the first steps
 * while the host still encodes the next ones (one command buffer per batch kept the GPU idle
 * during the whole batch's encoding: ≈ 3 µs per dispatch on the llvmpipe host, about a tenth of an
 * H100's decode step for the '1b' shape). CPU adapters run the GPU work on the cores that encode,
 * so they keep one command buffer per batch (4 and 64 steps per buffer measured within noise).
 */
const GPU_SUBMIT_EVERY = 8;

/**
 * How many decode steps each command buffer of a read batch holds: the whole batch on CPU
 * adapters, {@link GPU_SUBMIT_EVERY} at a time (the rest last) on GPUs.
 */
export function decodeSubmissions(batch: number, isFallbackAdapter: boolean): number[] {
  const every = isFallbackAdapter ? batch : GPU_SUBMIT_EVERY;
  const sizes: number[] = [];
  for (let done = 0; done < batch; done += every) sizes.push(Math.min(every, batch - done));
  return sizes;
}
