/**
 * The WebGPU engine behind `deno task eval`: generation and teacher-forced scoring with a plan
 * applied, through the same executor `run` uses.
 *
 * @module
 */

import type { EvalEngine } from "../eval/engine.ts";
import { ModelError } from "../model/errors.ts";
import type { Plan } from "../plan/plan.ts";
import { defaultRegistry } from "../plugins/builtins.ts";
import { Engine } from "./engine.ts";
import { generateWithPlan, planExecutor } from "./planGeneration.ts";
import { hitRates } from "./hitRate.ts";
import { scoreTokens } from "./scoreTokens.ts";

/** Whether any press of the plan keeps a head's cache bounded while decoding. */
function isBounded(plan: Plan): boolean {
  const registry = defaultRegistry();
  return plan.rules.some((r) => r.pipeline.some((p) => registry.press(p.name)?.bound));
}

/** Opens a model folder as an {@link EvalEngine}. */
export async function openEvalEngine(modelDir: string): Promise<EvalEngine> {
  const engine = await Engine.open(modelDir);
  const tokenizer = engine.tokenizer;
  if (!tokenizer) {
    engine.close();
    throw new ModelError(`${modelDir} has no tokenizer.json; eval builds its prompts from text`);
  }
  return {
    tokenizer,
    modelName: modelDir.replace(/\/+$/, "").split("/").at(-1) ?? modelDir,
    async generate(req) {
      const { result: r } = await generateWithPlan(
        engine,
        req.plan,
        {
          promptIds: req.promptIds,
          maxNewTokens: req.maxNewTokens,
          stopIds: req.stopIds,
        },
        undefined,
        true,
      );
      return {
        tokens: r.tokens,
        kv: { fullBytes: r.kv.fullBytes, keptBytes: r.kv.keptBytes },
        timing: {
          prefillMs: r.timing.prefillMs,
          decodeMs: r.timing.decodeMs,
          decodeTokensPerSecond: r.timing.decodeTokensPerSecond,
        },
      };
    },
    async scoreTokens(req) {
      const executor = planExecutor(engine, req.plan);
      await executor.prepare();
      const r = await scoreTokens(engine, req.ids, req.from, executor, isBounded(req.plan));
      return { logprobs: r.logprobs, kv: { fullBytes: r.kv.fullBytes, keptBytes: r.kv.keptBytes } };
    },
    async hitRate(req) {
      return await hitRates(engine, req.plan, req.promptIds, req.maxNewTokens, req.threshold);
    },
    close: () => engine.close(),
  };
}
