/** Helpers: run a policy on an engine and collect what it kept. @module */
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Engine, GenerationResult } from "../../src/runtime/engine.ts";
import { type LayerTrace, PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { engineDetectors } from "../../src/runtime/retrievalProfile.ts";

/** A generation under a policy, with the executor's trace. */
export interface PolicyRun extends GenerationResult {
  /** Per layer, what each KV head kept after prefill. */
  trace: LayerTrace[];
}

/** Generates greedily from `ids` with `policy` applied. */
export async function runPolicy(
  engine: Engine,
  policy: string,
  ids: number[],
  maxNewTokens: number,
): Promise<PolicyRun> {
  // Retrieval scores: computed once per engine, never written next to the model.
  const executor = new PolicyExecutor(
    compileOrThrow(policy),
    engine.config,
    engine.ctx,
    undefined,
    engineDetectors(engine, { cache: false }),
  );
  const result = await engine.generate({
    promptIds: ids,
    maxNewTokens,
    observe: executor.observeRequest(),
    afterPrefill: (state) => executor.apply(state),
  });
  return { ...result, trace: executor.trace };
}
