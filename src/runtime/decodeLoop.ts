/**
 * The decode loop shared by a plain generation ({@link Engine.generate}) and the query-agnostic
 * protocol (`questions.ts`): one-token steps recorded once, submitted in batches, the sampled ids
 * read back every `readEvery` tokens, generation ending at a stop id or the token budget.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { argmax } from "../gpu/kernels/argmax.ts";
import { sample } from "../gpu/kernels/sample.ts";
import type { GpuOp } from "../gpu/op.ts";
import { readSampledIds, type SamplerState } from "../gpu/samplerState.ts";
import type { ModelConfig } from "../model/types.ts";
import { type Activations, encodeSteps, forwardSteps, type Step } from "./forwardPass.ts";
import type { SamplingConfig } from "./generationTypes.ts";
import type { GpuModelWeights } from "./gpuWeights.ts";
import type { GateTurn } from "./phaseGate.ts";
import { afterAttentionOp } from "./prefillPass.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";
import { decodeSubmissions } from "./workSizes.ts";

/** Generated ids as they are read back, cut after the first stop id. */
export class TokenSink {
  /** Ids generated so far (a stop id, if hit, is the last). */
  readonly tokens: number[] = [];
  /** Why generation ended (or `length` while it goes on). */
  stopReason: "stop" | "length" = "length";

  /** Collects ids into {@link tokens}, stopping at any of `stopIds`; `onTokens` sees each batch. */
  constructor(
    private stopIds: Set<number>,
    private onTokens?: (ids: number[]) => void,
  ) {}

  /** Adds a batch of ids read back (those after a stop id are discarded). */
  take(ids: number[]): void {
    const stop = ids.findIndex((id) => this.stopIds.has(id));
    if (stop >= 0) {
      ids = ids.slice(0, stop + 1);
      this.stopReason = "stop";
    }
    this.tokens.push(...ids);
    this.onTokens?.(ids);
  }

  /** Whether more tokens are wanted under a budget of `maxNew`. */
  wants(maxNew: number): boolean {
    return this.stopReason === "length" && this.tokens.length < maxNew;
  }
}

/** The op that picks the next token from `acts.logits` row 0: argmax, or a sampler. */
export function sampleOp(
  ctx: GpuContext,
  config: ModelConfig,
  acts: Activations,
  sampler: SamplerState,
  s: SamplingConfig,
): GpuOp {
  const V = config.vocabSize;
  if (s.temperature <= 0) return argmax(ctx, { logits: acts.logits, vocabSize: V, sampler });
  return sample(ctx, {
    logits: acts.logits,
    vocabSize: V,
    sampler,
    temperature: s.temperature,
    topK: s.topK,
    topP: s.topP,
    seed: s.seed,
  });
}

/** Records `steps` into one command buffer and submits it. */
export function submitSteps(ctx: GpuContext, steps: Step[]): void {
  const encoder = ctx.device.createCommandEncoder();
  encodeSteps(encoder, steps);
  ctx.device.queue.submit([encoder.finish()]);
}

/**
 * The steps of one decoding token over `cache` (read the sampler's token and position, run every
 * layer with the cache's per-step work, pick the next token): build them after the cache's
 * layers are final (compaction replaces them), and destroy them when done.
 */
export function decodeStepOps(
  ctx: GpuContext,
  model: GpuModelWeights,
  cache: RaggedKvCache,
  acts: Activations,
  sampler: SamplerState,
  sampling: SamplingConfig,
): Step[] {
  const steps = decodeForwardSteps(ctx, model, cache, acts, sampler);
  steps.push(sampleOp(ctx, model.config, acts, sampler, sampling));
  return steps;
}

/**
 * {@link decodeStepOps} without the pick: one token read from the sampler's state through every
 * layer, its logits left in `acts.logits` for the op the caller appends (a sampler, or teacher
 * forcing).
 */
export function decodeForwardSteps(
  ctx: GpuContext,
  model: GpuModelWeights,
  cache: RaggedKvCache,
  acts: Activations,
  sampler: SamplerState,
): Step[] {
  return forwardSteps(ctx, model, cache.layers, acts, {
    m: 1,
    mode: "decode",
    logits: "last",
    source: { ids: sampler.state, idsOffset: 0, positions: sampler.state, positionsOffset: 2 },
    afterAttention: (l, layer, a, src) =>
      afterAttentionOp(ctx, model.config, cache, l, layer, a, src, 1),
  });
}

/**
 * Decodes with `steps` until `sink` has `maxNew` ids or a stop id, `readEvery` tokens per readback
 * (the sampler's ids from index `sink.tokens.length` on). With a gate, each batch is a turn.
 * Returns the milliseconds spent (held turns only) and the steps run (each appends one entry per
 * head; a batch cut by a stop id still ran whole).
 */
export async function decodeRest(
  ctx: GpuContext,
  o: {
    steps: Step[];
    sampler: SamplerState;
    sink: TokenSink;
    maxNew: number;
    readEvery: number;
    turn: GateTurn;
    /** Start of the clock (after building the steps, their compilation excluded). */
    startedAt: number;
    /**
     * Every `every` steps (counted from the loop's start), `run(steps so far)` recompresses the
     * cache and returns the steps to go on with (the cache's layers were replaced).
     */
    interrupt?: { every: number; run: (fed: number) => Promise<Step[]> };
  },
): Promise<{ decodeMs: number; steps: number }> {
  const { sink, maxNew, interrupt } = o;
  let steps = o.steps;
  let decodeMs = 0;
  let fed = 0;
  let tb = o.startedAt;
  while (sink.wants(maxNew)) {
    if (await o.turn.take()) tb = performance.now();
    let batch = Math.min(o.readEvery, maxNew - sink.tokens.length);
    if (interrupt) batch = Math.min(batch, interrupt.every - (fed % interrupt.every));
    for (const size of decodeSubmissions(batch, ctx.isFallbackAdapter)) {
      const encoder = ctx.device.createCommandEncoder();
      for (let i = 0; i < size; i++) encodeSteps(encoder, steps);
      ctx.device.queue.submit([encoder.finish()]);
    }
    fed += batch;
    const from = sink.tokens.length;
    sink.take(await readSampledIds(ctx, o.sampler, from, from + batch));
    if (interrupt && fed % interrupt.every === 0 && sink.wants(maxNew)) {
      steps = await interrupt.run(fed);
    }
    decodeMs += performance.now() - tb;
    if (sink.wants(maxNew)) o.turn.give();
  }
  return { decodeMs, steps: fed };
}
