/**
 * `deno task run … --question Q [--question Q …]`: the query-agnostic protocol (kvpress's
 * default) from the command line. The prompt (`--prompt`, `--prompt-file`, or `--chat`'s message)
 * is the context, prefilled and compressed once with no question in it; each question is then
 * appended to the same compressed cache and answered, the cache restored before the next one
 * (`src/runtime/questions.ts`). Questions are appended as written: start one with a newline or a
 * space to separate it from the context. In chat form the question ends the user's message and
 * the assistant's turn opens after it.
 *
 * @module
 */

import {
  type ChatMessage,
  chatSpecialTokens,
  endOfTurnIds,
  renderChat,
} from "../model/chatTemplate.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { Engine } from "../runtime/engine.ts";
import type { SamplingConfig } from "../runtime/generationTypes.ts";
import { answerWithPlan } from "../runtime/planGeneration.ts";
import { UserError } from "./errors.ts";
import { deviceMemoryJson, formatBytes, formatSummary } from "./summary.ts";

/** The most `--question`s one run takes. */
export const MAX_QUESTIONS = 256;

const MARKER = "\u{E000}kvpolicy-question\u{E000}";

/** Context ids, each question's ids and the stop ids, for a plain or a chat prompt. */
export function questionIds(
  engine: Engine,
  tok: TextTokenizer,
  o: { context: string; questions: string[]; chat: boolean; system?: string },
): { context: number[]; questions: number[][]; stopIds: number[] } {
  if (o.questions.length > MAX_QUESTIONS) {
    throw new UserError(`at most ${MAX_QUESTIONS} --question per run, not ${o.questions.length}`);
  }
  o.questions.forEach((q, i) => {
    if (q === "") throw new UserError(`--question ${i + 1} is empty: give a question`);
  });
  const encode = (text: string) => tok.encode(text, { addSpecialTokens: false });
  if (!o.chat) {
    return {
      context: tok.encode(o.context),
      questions: o.questions.map(encode),
      stopIds: engine.config.eosTokenIds,
    };
  }
  if (engine.chat === null) {
    throw new UserError(
      `${engine.weights.dir} has no chat template; use --prompt with --question, or a chat model`,
    );
  }
  const messages: ChatMessage[] = o.system === undefined
    ? []
    : [{ role: "system", content: o.system }];
  messages.push({ role: "user", content: o.context + MARKER });
  const text = renderChat(engine.chat, messages, chatSpecialTokens(engine.config, tok));
  const at = text.indexOf(MARKER);
  if (at < 0 || text.indexOf(MARKER, at + 1) >= 0) {
    throw new UserError(
      `${engine.chat.source}: the chat template does not write the user's message once and ` +
        "unchanged, so a question cannot be appended to it",
    );
  }
  const after = text.slice(at + MARKER.length);
  return {
    context: encode(text.slice(0, at)),
    questions: o.questions.map((q) => encode(q + after)),
    stopIds: endOfTurnIds(engine.chat, tok, engine.config.eosTokenIds),
  };
}

/** Options of {@link runQuestions}. */
export interface RunQuestionsOptions {
  /** The questions as given (for the output). */
  questionTexts: string[];
  /** Ids from {@link questionIds}. */
  ids: { context: number[]; questions: number[][]; stopIds: number[] };
  /** Most tokens per answer. */
  maxNewTokens: number;
  /** Sampling. */
  sampling: SamplingConfig;
  /** Context tokens per prefill chunk. */
  prefillChunk?: number;
  /** One JSON object instead of text. */
  json: boolean;
  /** Include the executor's per-head trace in the JSON. */
  trace: boolean;
  /** Extra fields of the JSON object (model, load, …), asked for once the answers are in. */
  jsonFields: () => Record<string, unknown>;
}

/** Answers every question from one compressed context; prints answers and a summary. */
export async function runQuestions(
  engine: Engine,
  plan: Plan,
  registry: PluginRegistry | undefined,
  o: RunQuestionsOptions,
): Promise<void> {
  const tok = engine.tokenizer!;
  const encoder = new TextEncoder();
  const out = (s: string) => Deno.stdout.writeSync(encoder.encode(s));
  let stream = o.json ? null : tok.streamDecoder({ skipSpecialTokens: true });
  let current = -1;
  const { result, executor } = await answerWithPlan(
    engine,
    plan,
    {
      contextIds: o.ids.context,
      questions: o.ids.questions,
      maxNewTokens: o.maxNewTokens,
      sampling: o.sampling,
      stopIds: o.ids.stopIds,
      prefillChunk: o.prefillChunk,
      onTokens: (q, ids) => {
        if (!stream) return;
        if (q !== current) {
          if (current >= 0) out(stream.flush() + "\n");
          stream = tok.streamDecoder({ skipSpecialTokens: true });
          current = q;
          console.error(`question ${q + 1}: ${JSON.stringify(o.questionTexts[q])}`);
        }
        for (const id of ids) out(stream.push(id));
      },
    },
    registry,
    true,
  );
  if (stream && current >= 0) out(stream.flush() + "\n");
  const answers = result.answers.map((a, i) => ({
    question: o.questionTexts[i],
    question_tokens: o.ids.questions[i].length,
    text: tok.decode(a.tokens, { skipSpecialTokens: true }),
    tokens: a.tokens,
    stop_reason: a.stopReason,
    kv: a.kv,
    device_memory: deviceMemoryJson(a),
    timing: a.timing,
  }));
  const c = result.context;
  if (o.json) {
    console.log(JSON.stringify({
      ...o.jsonFields(),
      protocol: "agnostic",
      context: {
        tokens: o.ids.context.length,
        prefill_ms: c.prefillMs,
        press_ms: c.pressMs,
        kv: c.kv,
        snapshot_bytes: c.snapshotBytes,
      },
      answers,
      plan,
      resolved: executor.assignments.map((row) =>
        row.map((a) => ({
          rule: a.rule,
          pipeline: a.pipeline.map((p) => p.name).join(" + ") || "full",
        }))
      ),
      ...(o.trace ? { trace: { layers: executor.trace } } : {}),
    }));
    return;
  }
  console.error(
    `query-agnostic: a ${o.ids.context.length}-token context compressed once without the ` +
      `questions (prefill ${c.prefillMs.toFixed(0)} ms, press ${c.pressMs.toFixed(0)} ms) · KV ` +
      `${formatBytes(c.kv.keptBytes)} kept of ${formatBytes(c.kv.fullBytes)} full (${
        (c.kv.ratio * 100).toFixed(1)
      }%) · snapshot ${formatBytes(c.snapshotBytes)}`,
  );
  result.answers.forEach((a, i) => {
    console.error(
      `question ${i + 1}: ${
        formatSummary(o.ids.questions[i].length, a).replace("prompt", "question")
      }`,
    );
  });
}
