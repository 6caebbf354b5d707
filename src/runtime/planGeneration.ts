/**
 * Generation with a compiled plan applied: the one place that wires a {@link PolicyExecutor}
 * (with the engine's model-level detector sources and a plugin registry) into
 * {@link Engine.generate} and the query-agnostic `answerQuestions`. `run`, `eval`, `inspect`, `check --explain` and the tests use it.
 *
 * @module
 */

import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { Engine, GenerationRequest, GenerationResult } from "./engine.ts";
import { PolicyExecutor } from "./policyExecutor.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import { withPhase } from "./phaseGate.ts";
import { engineSources } from "./retrievalProfile.ts";
import type { ObserveRequest } from "./generationTypes.ts";
import { type SharedPrefill, usableShared } from "./sharedPrefill.ts";
import { answerQuestions, type QuestionsRequest, type QuestionsResult } from "./questions.ts";

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
  return new PolicyExecutor(plan, engine.config, engine.ctx, registry, engineSources(engine));
}

/**
 * `shared` when the executor's plan can start from it (it prefills in one piece, in the same
 * chunks, and everything it observes was recorded), else undefined: the plan prefills alone.
 */
function sharedFor(
  engine: Engine,
  executor: PolicyExecutor,
  shared: SharedPrefill | undefined,
  promptIds: readonly number[],
  prefillChunk: number | undefined,
  observe: ObserveRequest,
): SharedPrefill | undefined {
  if (!shared || executor.usesChunks(promptIds.length)) return undefined;
  return usableShared(shared, promptIds, Math.max(1, prefillChunk ?? engine.prefillChunk), observe);
}

/** Plans that have run once on each engine (their kernels compiled), by source hash. */
const warmedUp = new WeakMap<Engine, Set<string>>();

/** Prompt tokens of the untimed run that compiles a plan's kernels. */
const WARM_UP_PROMPT = 64;

/**
 * Runs `plan` once, untimed, on the first tokens of `promptIds` (three new tokens), unless it
 * already ran on this engine: shader compilation is lazy, and a policy's scoring, compaction,
 * quantisation or eviction kernels would otherwise be compiled inside the timed generation.
 */
async function warmUpPlan(
  engine: Engine,
  plan: Plan,
  promptIds: number[],
  registry?: PluginRegistry,
): Promise<void> {
  const done = warmedUp.get(engine) ?? new Set<string>();
  warmedUp.set(engine, done);
  if (done.has(plan.sourceHash)) return;
  const executor = planExecutor(engine, plan, registry);
  await executor.prepare();
  const ids = promptIds.slice(0, WARM_UP_PROMPT);
  await engine.generate({
    promptIds: ids,
    maxNewTokens: Math.max(0, Math.min(3, engine.config.maxPositions - ids.length)),
    stopIds: [],
    observe: executor.observeRequest(ids.length),
    afterPrefill: (state) => executor.apply(state),
    chunkedPrefill: (n) => executor.chunkedPrefill(n),
    prefillRoom: (n) => executor.prefillRoom(n),
  });
  done.add(plan.sourceHash);
}

/**
 * Generates with `plan` applied. Model-level detector results (the retrieval profile) are
 * fetched before generation starts, so a first-time probe is not timed as prefill or decoding;
 * with `warmUp` (when the timings matter: `run`, `eval`), the plan's kernels are compiled by an
 * untimed run on a short prefix first (once per plan and engine).
 */
export async function generateWithPlan(
  engine: Engine,
  plan: Plan,
  req: PlanRequest,
  registry?: PluginRegistry,
  warmUp = false,
): Promise<PlanGeneration> {
  const executor = planExecutor(engine, plan, registry);
  // With a gate (`req.gate`), warming up and preparing are a phase of their own, untimed.
  await withPhase(req.gate, async () => {
    if (warmUp) await warmUpPlan(engine, plan, req.promptIds, registry);
    await executor.prepare();
  });
  const observe = executor.observeRequest(req.promptIds.length);
  const result = await engine.generate({
    ...req,
    shared: sharedFor(engine, executor, req.shared, req.promptIds, req.prefillChunk, observe),
    observe,
    afterPrefill: (state) => executor.apply(state),
    duringDecode: () => executor.recompressor,
    chunkedPrefill: (n) => executor.chunkedPrefill(n),
    prefillRoom: (n) => executor.prefillRoom(n),
  });
  return { result, executor };
}

/** A query-agnostic request without the hooks the plan fills in. */
export type PlanQuestionsRequest = Omit<QuestionsRequest, "observe" | "afterPrefill">;

/**
 * The query-agnostic protocol with `plan` applied (see `questions.ts`): the context compressed
 * once, without the questions, each question answered from it. `warmUp` as for
 * {@link generateWithPlan}.
 */
export async function answerWithPlan(
  engine: Engine,
  plan: Plan,
  req: PlanQuestionsRequest,
  registry?: PluginRegistry,
  warmUp = false,
): Promise<{ result: QuestionsResult; executor: PolicyExecutor }> {
  const executor = planExecutor(engine, plan, registry);
  if (warmUp) await warmUpPlan(engine, plan, req.contextIds, registry);
  await executor.prepare();
  const observe = executor.observeRequest(req.contextIds.length);
  const result = await answerQuestions(engine, {
    ...req,
    shared: sharedFor(engine, executor, req.shared, req.contextIds, req.prefillChunk, observe),
    observe,
    chunkedPrefill: (n) => executor.chunkedPrefill(n),
    prefillRoom: (n) => executor.prefillRoom(n),
    questionInChunks: !executor.actsWhileDecoding,
    afterPrefill: async (state) => {
      await executor.apply(state);
      if (executor.recompressor) {
        throw new UnsupportedPolicyError(
          "decoding(every=...) under the query-agnostic protocol is not supported yet " +
            "(use decoding(recent=R), or the query-aware protocol)",
        );
      }
    },
  });
  return { result, executor };
}
