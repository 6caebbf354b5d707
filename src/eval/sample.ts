/**
 * One evaluation sample, built offline before any policy runs, so that every policy sees exactly
 * the same prompts. Also the context the task builders share (tokenizer, token counting).
 *
 * @module
 */

import type { TextTokenizer } from "../model/tokenizer.ts";
import type { ChatFrame } from "./chatPrompt.ts";
import type { TaskName } from "./suite.ts";

/** How a generated answer is scored (see scoring.ts). */
export type ScoringRule = "exact_number" | "string_match_all";

/** Where a sample sits in its task's grid. */
export interface SampleCell {
  /** The task. */
  task: TaskName;
  /** Target context length in tokens. */
  length: number;
  /** Needle depth in percent, or null for tasks whose needles go at random depths. */
  depth: number | null;
  /** Sample index within the cell. */
  index: number;
}

/** A prompt to answer by greedy generation. */
export interface GenerationSample extends SampleCell {
  /** Generation sample. */
  kind: "generate";
  /** The prompt text (without a BOS the tokenizer adds; chat prompts hold their whole template). */
  promptText: string;
  /** Prompt ids: BOS first when the tokenizer adds one; chat prompts as their template writes. */
  promptIds: number[];
  /**
   * Index in `promptIds` of the question's first token: the context (everything before it) is
   * what the query-agnostic protocol compresses without the question.
   */
  questionStart: number;
  /** Strings the answer must contain (the needle value first). */
  references: string[];
  /** How the answer is scored. */
  scoring: ScoringRule;
  /** The continuation the model was trained to give, e.g. `4839201.` (for reports). */
  expected: string;
  /** Generation budget: the expected answer's tokens plus a margin. */
  maxNewTokens: number;
}

/** A held-out text to score teacher-forced (perplexity). */
export interface ScoringSample extends SampleCell {
  /** Scoring sample. */
  kind: "score";
  /** Token ids, BOS first. */
  ids: number[];
  /** First scored position. */
  from: number;
}

/** A prompt whose decoding attention is compared with what the plan kept (SnapKV hit rate). */
export interface HitRateSample extends SampleCell {
  /** Hit-rate sample. */
  kind: "hitrate";
  /** Prompt ids, as a needle {@link GenerationSample}'s. */
  promptIds: number[];
  /** Decoding steps. */
  maxNewTokens: number;
  /** Attention threshold of an important position. */
  threshold: number;
}

/** Any sample. */
export type EvalSample = GenerationSample | ScoringSample | HitRateSample;

/** What task builders share. */
export interface TaskContext {
  /** The model's tokenizer. */
  tokenizer: TextTokenizer;
  /** Token count of a piece of text without BOS (memoised). */
  countTokens: (text: string) => number;
  /** The chat frame generation prompts go in, or null for plain prompts (see chatPrompt.ts). */
  chat: ChatFrame | null;
  /**
   * Ids of a whole generation prompt: plain prompts get the tokenizer's special tokens (BOS);
   * chat prompts none, since the template writes them (as `apply_chat_template` tokenizes).
   */
  encodePrompt: (text: string) => number[];
}

/** A task context for `tokenizer` (and `chat`, for chat prompts), with a memoised token counter. */
export function taskContext(tokenizer: TextTokenizer, chat: ChatFrame | null = null): TaskContext {
  const counts = new Map<string, number>();
  return {
    tokenizer,
    chat,
    encodePrompt: (text) => tokenizer.encode(text, { addSpecialTokens: chat === null }),
    countTokens(text: string): number {
      let n = counts.get(text);
      if (n === undefined) {
        n = tokenizer.encode(text, { addSpecialTokens: false }).length;
        if (text.length < 400 && counts.size < 100_000) counts.set(text, n);
      }
      return n;
    },
  };
}

/** Tokens kept free for the answer: the expected answer's tokens plus 4, at least 8. */
export function answerBudget(context: TaskContext, expected: string): number {
  return Math.max(8, context.countTokens(expected) + 4);
}

/**
 * Where the question starts in `promptIds`, given that the context is the text's first
 * `contextChars` characters: the length of the context's own ids where they begin the prompt's
 * (tokens merged across the boundary go with the question), leaving at least one question token.
 */
export function questionStartOf(
  context: TaskContext,
  promptText: string,
  promptIds: number[],
  contextChars: number,
): number {
  const head = context.encodePrompt(promptText.slice(0, contextChars));
  let n = 0;
  while (n < head.length && n < promptIds.length && head[n] === promptIds[n]) n++;
  return Math.max(1, Math.min(n, promptIds.length - 1));
}

/**
 * Completes a generation sample: tokenizes the prompt ({@link TaskContext.encodePrompt}).
 * `answer` is the answer text without spacing; the expected continuation gets a leading space
 * when the prompt does not end with one. The context is the text's first `contextChars`
 * characters (the haystack and what precedes it; the rest is the question).
 */
export function generationSample(
  context: TaskContext,
  cell: SampleCell,
  promptText: string,
  answer: string,
  references: string[],
  scoring: ScoringRule,
  contextChars: number,
): GenerationSample {
  const expected = (promptText.endsWith(" ") ? "" : " ") + answer;
  const promptIds = context.encodePrompt(promptText);
  return {
    kind: "generate",
    ...cell,
    promptText,
    promptIds,
    questionStart: questionStartOf(context, promptText, promptIds, contextChars),
    references,
    scoring,
    expected,
    maxNewTokens: answerBudget(context, expected),
  };
}

/**
 * Prompt tokens (without BOS) a cell of `length` tokens leaves for the prompt text: the length
 * minus BOS and the answer budget, so that prompt and answer fit in the context length.
 */
export function promptTokenBudget(context: TaskContext, length: number, answer: string): number {
  return length - 1 - answerBudget(context, " " + answer);
}
