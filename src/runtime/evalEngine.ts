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
import { Engine, type EngineOptions } from "./engine.ts";
import { answerWithPlan, generateWithPlan, planExecutor } from "./planGeneration.ts";
import { hitRates } from "./hitRate.ts";
import { scoreTokens } from "./scoreTokens.ts";
import type { ObserveRequest } from "./generationTypes.ts";
import {
  prefillShared,
  releaseShared,
  type SharedObserve,
  type SharedPrefill,
  shareGroupsOf,
  unionObserve,
} from "./sharedPrefill.ts";

/** The chat frame of `engine`'s template, its specials taken from the model's BOS / EOS ids. */
function evalChat(engine: Engine, tokenizer: TextTokenizer): EvalChat | null {
  if (!engine.chat) return null;
  const frame = chatFrame(engine.chat, chatSpecialTokens(engine.config, tokenizer));
  return { frame, stopIds: endOfTurnIds(engine.chat, tokenizer, engine.config.eosTokenIds) };
}

/**
 * The plans of one prompt in groups that can share a prefill (`sharedPrefill.ts`), each with the
 * union of what its plans observe; plans that prefill in chunks, whose observations cannot be
 * recorded together, or alone in their group get no `observe` and prefill alone. A prompt the
 * model cannot hold is never shared (each plan then reports it).
 */
function shareGroups(
  engine: Engine,
  promptIds: readonly number[],
  plans: readonly Plan[],
): { plans: number[]; observe?: SharedObserve }[] {
  const N = promptIds.length;
  const c = engine.config;
  const fits = N > 0 && N <= Math.min(c.maxPositions, c.slidingWindow ?? Infinity);
  const alone: number[] = [];
  const candidates: { plan: number; observe: ObserveRequest }[] = [];
  plans.forEach((plan, i) => {
    try {
      const executor = planExecutor(engine, plan);
      if (executor.usesChunks(N) || !fits) return alone.push(i);
      candidates.push({ plan: i, observe: executor.observeRequest(N) });
    } catch {
      return alone.push(i); // its own run reports the error
    }
  });
  const groups: { plans: number[]; observe?: SharedObserve }[] = [];
  const observes = candidates.map((c) => c.observe);
  for (const g of shareGroupsOf(N, engine.prefillChunk, observes)) {
    if (g.length < 2) alone.push(...g.map((j) => candidates[j].plan));
    else {
      groups.push({
        plans: g.map((j) => candidates[j].plan),
        observe: unionObserve(g.map((j) => observes[j])),
      });
    }
  }
  if (alone.length) groups.push({ plans: alone.sort((a, b) => a - b) });
  return groups;
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
  let current: SharedPrefill | undefined; // the prompt prefilled for the plans of `sharePrefill`
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
          shared: current,
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
          shared: current,
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
      const r = await scoreTokens(
        engine,
        req.ids,
        req.from,
        executor,
        executor.actsWhileDecoding,
        engine.prefillChunk,
        current,
      );
      return { logprobs: r.logprobs, kv: { fullBytes: r.kv.fullBytes, keptBytes: r.kv.keptBytes } };
    },
    async hitRate(req) {
      return await hitRates(engine, req.plan, req.promptIds, req.maxNewTokens, req.threshold);
    },
    async sharePrefill(promptIds, plans, work) {
      const results: unknown[] = [];
      for (const group of shareGroups(engine, promptIds, plans)) {
        const shared = group.observe && await prefillShared(engine, promptIds, group.observe);
        current = shared;
        try {
          for (const i of group.plans) results[i] = await work(i);
        } finally {
          current = undefined;
          if (shared) releaseShared(engine.ctx, shared);
        }
      }
      return results as Awaited<ReturnType<typeof work>>[];
    },
    close: () => engine.close(),
  };
}
