/** Helpers: run a policy on an engine and collect what it kept. @module */
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Engine, GenerationResult } from "../../src/runtime/engine.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import type { LayerTrace } from "../../src/runtime/policyTrace.ts";
import { engineSources } from "../../src/runtime/retrievalProfile.ts";
import {
  createActivations,
  destroySteps,
  encodeSteps,
  forwardSteps,
  releaseActivations,
} from "../../src/runtime/forwardPass.ts";
import { RaggedKvCache } from "../../src/runtime/raggedKvCache.ts";

/** A generation under a policy, with the executor's trace. */
export interface PolicyRun extends GenerationResult {
  /** Per layer, what each KV head kept after prefill. */
  trace: LayerTrace[];
  /** The executor that applied the policy. */
  executor: PolicyExecutor;
}

/** Generates greedily from `ids` with `policy` applied, stopping at `stopIds` (none by default). */
export async function runPolicy(
  engine: Engine,
  policy: string,
  ids: number[],
  maxNewTokens: number,
  stopIds: number[] = [],
): Promise<PolicyRun> {
  // Retrieval scores: computed once per engine, never written next to the model.
  const executor = new PolicyExecutor(
    compileOrThrow(policy),
    engine.config,
    engine.ctx,
    undefined,
    engineSources(engine, { cache: false }),
  );
  const result = await engine.generate({
    promptIds: ids,
    maxNewTokens,
    stopIds,
    observe: executor.observeRequest(ids.length),
    afterPrefill: (state) => executor.apply(state),
    duringDecode: () => executor.recompressor,
    chunkedPrefill: (n) => executor.chunkedPrefill(n),
    prefillRoom: (n) => executor.prefillRoom(n),
  });
  return { ...result, trace: executor.trace, executor };
}

/**
 * Prefill `prompt`, apply `policy` (the executor's compaction), then decode the `fed` ids
 * teacher-forced, one step at a time: the logits after each step, the final per-head lengths and
 * the executor's trace.
 */
export async function teacherForced(
  engine: Engine,
  prompt: number[],
  policy: string,
  fed: number[],
): Promise<{ logits: Float32Array[]; lengths: number[][]; trace: LayerTrace[] }> {
  const { ctx, config: c } = engine;
  const N = prompt.length;
  const cache = new RaggedKvCache(ctx, c, N + fed.length, engine.kvDtype);
  const acts = createActivations(ctx, engine.gpu, 1, 1);
  let steps: ReturnType<typeof forwardSteps> = [];
  try {
    const pre = await engine.prefill(cache, prompt, 16, "last");
    releaseActivations(ctx, pre.acts);
    const executor = new PolicyExecutor(compileOrThrow(policy), c, ctx);
    await executor.apply({ cache, promptLength: N, cachedLength: N, decodeBudget: fed.length });
    steps = forwardSteps(ctx, engine.gpu, cache.layers, acts, {
      m: 1,
      mode: "decode",
      logits: "last",
      source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
    });
    const logits: Float32Array[] = [];
    for (const [i, id] of fed.entries()) {
      ctx.write(acts.ids, 0, Uint32Array.of(id));
      ctx.write(acts.positions, 0, Uint32Array.of(N + i));
      const encoder = ctx.device.createCommandEncoder();
      encodeSteps(encoder, steps);
      ctx.device.queue.submit([encoder.finish()]);
      logits.push(await ctx.readF32(acts.logits, 0, c.vocabSize));
    }
    return { logits, lengths: await cache.lengths(), trace: executor.trace };
  } finally {
    destroySteps(steps);
    releaseActivations(ctx, acts);
    cache.release();
  }
}
