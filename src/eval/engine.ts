/**
 * What the evaluation harness needs from a model runtime. The WebGPU runtime implements it for
 * `deno task eval`; tests use fakes. Every method applies the given compiled plan to the KV cache,
 * so the harness can run several policies on exactly the same prompts in one process.
 *
 * @module
 */

import type { TextTokenizer } from "../model/tokenizer.ts";
import type { Plan } from "../plan/plan.ts";
import type { EvalChat } from "./chatPrompt.ts";

/** KV-cache accounting of one request: a full cache's bytes vs bytes kept after compression. */
export interface KvBytes {
  /** Bytes the full (uncompressed) cache would hold. */
  fullBytes: number;
  /** Bytes the plan actually kept. */
  keptBytes: number;
}

/** A greedy generation request. */
export interface GenerateRequest {
  /** Prompt token ids, BOS first. */
  promptIds: number[];
  /** Most tokens to generate. */
  maxNewTokens: number;
  /** The compiled policy to apply to the cache. */
  plan: Plan;
  /** Generation stops after producing one of these ids (e.g. EOS); it is included in `tokens`. */
  stopIds?: number[];
}

/** The outcome of {@link EvalEngine.generate}. */
export interface GenerateResult {
  /** Generated ids. */
  tokens: number[];
  /** Cache accounting at the end of generation. */
  kv: KvBytes;
  /** Prefill and decode times. */
  timing: { prefillMs: number; decodeMs: number; decodeTokensPerSecond: number };
}

/** A teacher-forced scoring request (perplexity). */
export interface ScoreRequest {
  /** The whole sequence, BOS first. */
  ids: number[];
  /** The compiled policy to apply. */
  plan: Plan;
  /** Index of the first target token scored: logprobs[i] is log p(ids[from + i] | ids[..from + i]). */
  from: number;
}

/** The outcome of {@link EvalEngine.scoreTokens}. */
export interface ScoreResult {
  /** Natural-log probability of each target token `ids[from..]`. */
  logprobs: number[];
  /** Cache accounting. */
  kv: KvBytes;
}

/**
 * A SnapKV hit-rate request: prefill `promptIds` with `plan` applied, then decode greedily for
 * `maxNewTokens` steps, and per (layer, KV head) compare the prompt positions the decoding
 * queries attend to with weight ≥ `threshold` (averaged over the head's query group) with the
 * positions the plan kept.
 */
export interface HitRateRequest {
  /** Prompt token ids, BOS first. */
  promptIds: number[];
  /** The compiled policy whose selection is measured. */
  plan: Plan;
  /** Decoding steps whose attention defines the important positions. */
  maxNewTokens: number;
  /** Attention weight at or above which a prompt position counts as important. */
  threshold: number;
}

/** The outcome of {@link EvalEngine.hitRate}. */
export interface HitRateResult {
  /**
   * `hits[layer][kvHead]` = important positions the plan kept / important positions (1 when a
   * head had no important position). Measured against the full cache's attention.
   */
  hits: number[][];
  /** Cache accounting. */
  kv: KvBytes;
}

/** A model runtime that the harness can drive. */
export interface EvalEngine {
  /** Tokenizer of the model (src/model/tokenizer.ts TextTokenizer: encode(text,{addSpecialTokens}) → ids (BOS prepended), decode(ids) → text). */
  tokenizer: TextTokenizer;
  /** The model's name for reports. */
  modelName: string;
  /**
   * The model's chat frame and end-of-turn ids, for suites with `chat`; null or absent when the
   * model has no chat template (such suites are then a user error).
   */
  chat?: EvalChat | null;
  /** Greedy generation with `plan` applied to the KV cache. */
  generate(req: {
    promptIds: number[];
    maxNewTokens: number;
    plan: Plan;
    stopIds?: number[];
  }): Promise<{
    tokens: number[]; // generated ids
    kv: { fullBytes: number; keptBytes: number }; // a full cache's bytes vs bytes kept after compression
    timing: { prefillMs: number; decodeMs: number; decodeTokensPerSecond: number };
  }>;
  /**
   * Optional: the query-agnostic protocol (`eval --protocol agnostic`): `contextIds` prefilled
   * and compressed by `plan` with no question in it, then each question appended to the same
   * compressed cache and answered greedily (the cache restored between questions). One result
   * per question; engines without it make `--protocol agnostic` a user error.
   */
  answerQuestions?(req: {
    contextIds: number[];
    questions: number[][];
    maxNewTokens: number;
    plan: Plan;
    stopIds?: number[];
  }): Promise<GenerateResult[]>;
  /** Log-probabilities (natural log) of each target token given the prefix, teacher-forced, with `plan` applied (perplexity). */
  scoreTokens(
    req: { ids: number[]; plan: Plan; from: number },
  ): Promise<{ logprobs: number[]; kv: { fullBytes: number; keptBytes: number } }>;
  /**
   * Optional: SnapKV's hit-rate diagnostic (`--task hitrate`), see {@link HitRateRequest}.
   * Engines without it make `--task hitrate` a user error.
   */
  hitRate?(req: HitRateRequest): Promise<HitRateResult>;
  /**
   * Optional: runs `work(i)` for every plan of `plans` (a prompt's policies) with `promptIds` —
   * the whole prompt of a query-aware generation, the context of a query-agnostic one, or the
   * prefix before a perplexity sample's scored tokens — prefilled once for those that can share
   * it; `generate`, `answerQuestions` and `scoreTokens` calls on that prompt inside `work` then
   * start from the shared prefill. Each plan's result is the one it
   * gets alone. Results in the order of `plans`.
   */
  sharePrefill?<T>(
    promptIds: readonly number[],
    plans: readonly Plan[],
    work: (index: number) => Promise<T>,
  ): Promise<T[]>;
  /** Frees the device (called once the evaluation is done). */
  close?(): void;
}
