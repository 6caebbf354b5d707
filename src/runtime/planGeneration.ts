/**
 * Generation with a compiled plan applied: the one place that wires a {@link PolicyExecutor}
 * (with the engine's model-level detector sources and a plugin registry) into
 * {@link Engine.generate}. `run`, `eval`, `inspect`, `check --explain` and the tests use it.
 *
 * @module
 */

import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { Engine, GenerationRequest, GenerationResult } from "./engine.ts";
import { PolicyExecutor } from "./policyExecutor.ts";
import { engineDetectors } from "./retrievalProfile.ts";

/** A generation and the executor that applied the plan (its trace and assignments). */
export interface PlanGeneration {
  /** Tokens, timing and KV accounting. */
  result: GenerationResult;
  /** The executor: `trace` (what each head kept, detector scores) and `assignments`. */
  executor: PolicyExecutor;
}

/** A request without the hooks the plan fills in. */
export type PlanRequest = Omit<GenerationRequest, "observe" | "afterPrefill">;

/** Creates the executor for `plan` on `engine` (built-ins plus `registry`'s plugins). */
export function planExecutor(
  engine: Engine,
  plan: Plan,
  registry?: PluginRegistry,
): PolicyExecutor {
  return new PolicyExecutor(plan, engine.config, engine.ctx, registry, engineDetectors(engine));
}

/**
 * Generates with `plan` applied. Model-level detector results (the retrieval profile) are
 * fetched before generation starts, so a first-time probe is not timed as prefill or decoding.
 */
export async function generateWithPlan(
  engine: Engine,
  plan: Plan,
  req: PlanRequest,
  registry?: PluginRegistry,
): Promise<PlanGeneration> {
  const executor = planExecutor(engine, plan, registry);
  await executor.prepare();
  const result = await engine.generate({
    ...req,
    observe: executor.observeRequest(),
    afterPrefill: (state) => executor.apply(state),
  });
  return { result, executor };
}
