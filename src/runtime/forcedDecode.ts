/**
 * Teacher-forced decoding: given tokens fed one per step through the very decode steps a
 * generation runs (ring windows, per-step eviction hooks, KIVI's quantized layers), each step's
 * log-probability of the next given token computed on the GPU (`teacherForce.ts`) and read back
 * once at the end. Perplexity under a policy that acts while decoding is measured this way.
 *
 * @module
 */

import { teacherForce } from "../gpu/kernels/teacherForce.ts";
import { createSamplerState } from "../gpu/samplerState.ts";
import type { Engine } from "./engine.ts";
import { decodeForwardSteps } from "./decodeLoop.ts";
import {
  createActivations,
  destroySteps,
  encodeSteps,
  releaseActivations,
  type Step,
} from "./forwardPass.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/** Steps recorded into one command buffer (CPU adapters run a buffer's steps back to back). */
const STEPS_PER_SUBMIT = 16;

/** Recompression between decoding steps (`decoding(every=N)`), as in generation. */
export interface ForcedRecompress {
  /** Steps between recompressions. */
  every: number;
  /** Recompresses `cache`; `position` is the next token's, `remaining` the steps still to run. */
  run(cache: RaggedKvCache, position: number, remaining: number): Promise<void>;
}

/**
 * Feeds `fed[0..n)` at positions `position, position + 1, …` into `cache` (which holds the
 * tokens before them) and returns, for each step j, the log-probability of `next[j]` under the
 * logits after `fed[j]`, where `next[j] = fed[j + 1]` and the last is `last`. With `recompress`,
 * the cache is recompressed every `every` steps and the steps are rebuilt on its new layers.
 */
export async function forcedDecode(
  engine: Engine,
  cache: RaggedKvCache,
  o: { fed: number[]; last: number; position: number; recompress?: ForcedRecompress },
): Promise<number[]> {
  const { ctx, gpu, config } = engine;
  const n = o.fed.length;
  if (n === 0) return [];
  const targets = [...o.fed.slice(1), o.last];
  const sampler = createSamplerState(ctx, {
    token: o.fed[0],
    position: o.position,
    idsCapacity: n,
  });
  const targetBuffer = ctx.upload(new Uint32Array(targets), undefined, "forced targets");
  const logprobs = ctx.createBuffer(n * 4, undefined, "forced logprobs");
  const acts = createActivations(ctx, gpu, 1, 1);
  let steps: Step[] = [];
  const build = () => {
    destroySteps(steps);
    steps = decodeForwardSteps(ctx, gpu, cache, acts, sampler);
    steps.push(teacherForce(ctx, {
      logits: acts.logits,
      vocabSize: config.vocabSize,
      targets: targetBuffer,
      logprobs,
      sampler,
    }));
  };
  try {
    build();
    await ctx.compilePending();
    const every = o.recompress?.every ?? n;
    for (let done = 0; done < n;) {
      if (done > 0 && done % every === 0) {
        await o.recompress!.run(cache, o.position + done, n - done);
        build();
        await ctx.compilePending();
      }
      const segment = Math.min(every - (done % every), n - done);
      for (let s = 0; s < segment; s += STEPS_PER_SUBMIT) {
        const encoder = ctx.device.createCommandEncoder();
        for (let i = 0; i < Math.min(STEPS_PER_SUBMIT, segment - s); i++) {
          encodeSteps(encoder, steps);
        }
        ctx.device.queue.submit([encoder.finish()]);
      }
      done += segment;
    }
    return Array.from(await ctx.readF32(logprobs, 0, n));
  } finally {
    destroySteps(steps);
    releaseActivations(ctx, acts);
    for (const b of [sampler.state, sampler.ids, targetBuffer, logprobs]) ctx.release(b);
  }
}
