/**
 * The WebGPU engine behind `deno task eval`: generation and teacher-forced scoring with a plan
 * applied, through the same executor `run` uses.
 *
 * @module
 */

import { chatFrame, type EvalChat } from "../eval/chatPrompt.ts";
import type { EvalEngine } from "../eval/engine.ts";
import { chatSpecialTokens, endOfTurnIds } from "../model/chatTemplate.ts";
import { ModelError } from "../model/errors.ts";
import { missingTokenizerText } from "../model/openModel.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import type { Plan } from "../plan/plan.ts";
import { defaultRegistry } from "../plugins/builtins.ts";
import { evictsWhileDecoding } from "../plugins/press.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { answerWithPlan, generateWithPlan, planExecutor } from "./planGeneration.ts";
import { hitRates } from "./hitRate.ts";
import { scoreTokens } from "./scoreTokens.ts";

/** Whether any press of the plan keeps a head's cache bounded while decoding. */
function isBounded(plan: Plan): boolean {
  const registry = defaultRegistry();
  return plan.rules.some((r) =>
    r.pipeline.some((p) => p.name === "decoding" || evictsWhileDecoding(registry.press(p.name), p))
  );
}

/** The chat frame of `engine`'s template, its specials taken from the model's BOS / EOS ids. */
function evalChat(engine: Engine, tokenizer: TextTokenizer): EvalChat | null {
  if (!engine.chat) return null;
  const frame = chatFrame(engine.chat, chatSpecialTokens(engine.config, tokenizer));
  return { frame, stopIds: endOfTurnIds(engine.chat, tokenizer, engine.config.eosTokenIds) };
}

/** Opens a model (a Hugging Face folder, a GGUF file or a folder holding one) for `eval`. */
export async function openEvalEngine(
  modelPath: string,
  opts: EngineOptions = {},
): Promise<EvalEngine> {
  const engine = await Engine.open(modelPath, opts);
  const tokenizer = engine.tokenizer;
  if (!tokenizer) {
    engine.close();
    const missing = missingTokenizerText(engine.weights.dir);
    throw new ModelError(`${modelPath} has ${missing}; eval builds its prompts from text`);
  }
  let chat: EvalChat | null | undefined; // rendered on first use: only chat suites need it
  return {
    tokenizer,
    modelName: modelPath.replace(/\/+$/, "").split("/").at(-1) ?? modelPath,
    get chat() {
      return chat === undefined ? (chat = evalChat(engine, tokenizer)) : chat;
    },
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
    async answerQuestions(req) {
      const { result: r } = await answerWithPlan(
        engine,
        req.plan,
        {
          contextIds: req.contextIds,
          questions: req.questions,
          maxNewTokens: req.maxNewTokens,
          stopIds: req.stopIds,
        },
        undefined,
        true,
      );
      return r.answers.map((a) => ({
        tokens: a.tokens,
        kv: { fullBytes: a.kv.fullBytes, keptBytes: a.kv.keptBytes },
        timing: {
          prefillMs: a.timing.prefillMs,
          decodeMs: a.timing.decodeMs,
          decodeTokensPerSecond: a.timing.decodeTokensPerSecond,
        },
      }));
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
