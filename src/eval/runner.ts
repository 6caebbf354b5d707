/**
 * Runs an evaluation: builds every sample of the suite once, then runs every policy on exactly
 * those samples, in one process, and aggregates the outcomes into result rows.
 *
 * @module
 */

import type { LeaderboardPoint } from "./leaderboard.ts";
import { UserError } from "../userError.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import type { Plan } from "../plan/plan.ts";
import type { EvalChat } from "./chatPrompt.ts";
import type { EvalEngine } from "./engine.ts";
import { requireHitRate } from "./hitRate.ts";
import {
  aggregateOutcomes,
  type EvalProtocol,
  type ResultRow,
  type SampleOutcome,
} from "./results.ts";
import type { EvalSample } from "./sample.ts";
import { buildSuiteSamples } from "./samples.ts";
import { scoreAnswer } from "./scoring.ts";
import type { EvalSuite, TaskName } from "./suite.ts";

/** A policy to evaluate. */
export interface EvalPolicy {
  /** Name in reports (unique within a run). */
  name: string;
  /** The policy text, shown in the HTML report. */
  source: string;
  /** The compiled plan. */
  plan: Plan;
  /** Where the text came from (file path or `<inline>`). */
  file?: string;
  /**
   * Protocol of its generation tasks (default `aware`); perplexity and hit rate are measured
   * with the text as it is and do not run under `agnostic`.
   */
  protocol?: EvalProtocol;
}

/** Progress of a run, reported after every sample. */
export interface EvalProgress {
  /** Samples done over all policies. */
  done: number;
  /** Samples to do over all policies. */
  total: number;
  /** Of `done`, the samples taken from a checkpoint (`--resume`) rather than run. */
  resumed: number;
  /** The policy of the sample just done. */
  policy: string;
  /** Its task. */
  task: TaskName;
}

/** Everything an evaluation produced. */
export interface EvalReport {
  /** The engine's model name. */
  model: string;
  /** The suite that ran. */
  suite: EvalSuite;
  /** The policies, in the order given. */
  policies: {
    name: string;
    file: string;
    source: string;
    sourceHash: string;
    protocol: EvalProtocol;
  }[];
  /** One row per policy × task × cell. */
  results: ResultRow[];
  /** Every sample's outcome (generated text included), in run order. */
  outcomes: SampleOutcome[];
  /** Wall-clock seconds of the whole run. */
  elapsedSeconds: number;
  /** The leaderboard's points, when the run was one (`eval --leaderboard`). */
  leaderboard?: LeaderboardPoint[];
}

/** Options of {@link runEval}. */
export interface RunEvalOptions {
  /** The runtime. */
  engine: EvalEngine;
  /** Policies to compare. */
  policies: EvalPolicy[];
  /** What to run. */
  suite: EvalSuite;
  /** Called after each sample. */
  onProgress?: (progress: EvalProgress) => void;
  /**
   * Outcomes of an interrupted run of the same suite, by {@link outcomeKey}: their samples are
   * not run again (`eval --resume`).
   */
  done?: ReadonlyMap<string, SampleOutcome>;
  /** Called with each new outcome as soon as it exists (a checkpoint to resume from). */
  onOutcome?: (key: string, outcome: SampleOutcome) => void;
  /**
   * Prefill each prompt once for all the policies that can share it, when the engine offers
   * `sharePrefill` (default true; every policy's outcome is the one it gets alone).
   */
  sharePrefill?: boolean;
}

/**
 * What identifies one sample's outcome across runs: the policy's name, its source's hash, the
 * protocol and the sample's cell.
 */
export function outcomeKey(policy: EvalPolicy, sample: EvalSample): string {
  return JSON.stringify([
    policy.name,
    policy.plan.sourceHash,
    policy.protocol ?? "aware",
    sample.task,
    sample.length,
    sample.depth,
    sample.index,
  ]);
}

/** Ids that end an answer: the tokenizer's end-of-sequence tokens among common spellings. */
export function stopIdsOf(tokenizer: TextTokenizer): number[] {
  const names = ["</s>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|im_end|>"];
  return names.flatMap((name) => {
    const id = tokenizer.tokenId(name);
    return id === undefined ? [] : [id];
  });
}

/** The engine's chat support, or a user error naming the model when it has none. */
function requireChat(engine: EvalEngine): EvalChat {
  if (!engine.chat) {
    throw new UserError(
      `--chat: ${engine.modelName} has no chat template (tokenizer.chat_template in a GGUF, ` +
        "chat_template in tokenizer_config.json)",
    );
  }
  return engine.chat;
}

async function runSample(
  engine: EvalEngine,
  policy: EvalPolicy,
  sample: EvalSample,
  stopIds: number[],
): Promise<SampleOutcome> {
  const cell = {
    task: sample.task,
    length: sample.length,
    depth: sample.depth,
    index: sample.index,
  };
  const protocol = policy.protocol ?? "aware";
  if (sample.kind === "generate") {
    const result = protocol === "aware"
      ? await engine.generate({
        promptIds: sample.promptIds,
        maxNewTokens: sample.maxNewTokens,
        plan: policy.plan,
        stopIds,
      })
      : (await engine.answerQuestions!({
        contextIds: sample.promptIds.slice(0, sample.questionStart),
        questions: [sample.promptIds.slice(sample.questionStart)],
        maxNewTokens: sample.maxNewTokens,
        plan: policy.plan,
        stopIds,
      }))[0];
    const output = engine.tokenizer.decode(result.tokens, { skipSpecialTokens: true });
    return {
      policy: policy.name,
      protocol,
      cell,
      score: scoreAnswer(sample.scoring, output, sample.references),
      output,
      kv: result.kv,
      decodeTokensPerSecond: result.timing.decodeTokensPerSecond,
    };
  }
  if (sample.kind === "score") {
    const result = await engine.scoreTokens({
      ids: sample.ids,
      plan: policy.plan,
      from: sample.from,
    });
    const sum = result.logprobs.reduce((a, b) => a + b, 0);
    return {
      policy: policy.name,
      protocol,
      cell,
      score: null,
      logprobs: { sum, count: result.logprobs.length },
      kv: result.kv,
      decodeTokensPerSecond: null,
    };
  }
  const result = await requireHitRate(engine)({
    promptIds: sample.promptIds,
    plan: policy.plan,
    maxNewTokens: sample.maxNewTokens,
    threshold: sample.threshold,
  });
  return {
    policy: policy.name,
    protocol,
    cell,
    score: null,
    hits: result.hits,
    kv: result.kv,
    decodeTokensPerSecond: null,
  };
}

/**
 * Runs every policy on the same samples (built once from the suite's seed) and aggregates.
 * Throws a user error before any work when a task needs what the engine lacks.
 */
export async function runEval(options: RunEvalOptions): Promise<EvalReport> {
  const { engine, policies, suite, onProgress } = options;
  if (suite.tasks.includes("hitrate") && !engine.hitRate) {
    throw new UserError(
      `--task hitrate: the engine for ${engine.modelName} cannot measure hit rates`,
    );
  }
  if (policies.some((p) => p.protocol === "agnostic") && !engine.answerQuestions) {
    throw new UserError(
      `--protocol agnostic: the engine for ${engine.modelName} cannot answer from a compressed context`,
    );
  }
  const names = new Set<string>();
  for (const p of policies) {
    if (names.has(p.name)) throw new UserError(`two policies are named '${p.name}'`);
    names.add(p.name);
  }
  const chat = suite.chat ? requireChat(engine) : null;
  const started = performance.now();
  const samples = buildSuiteSamples(engine.tokenizer, suite, chat?.frame ?? null);
  const stopIds = [...new Set([...stopIdsOf(engine.tokenizer), ...chat?.stopIds ?? []])];
  // Perplexity and hit rate have no question to move: they run under the aware protocol only.
  const runs = (p: EvalPolicy) =>
    p.protocol === "agnostic" ? samples.filter((s) => s.kind === "generate") : samples;
  const total = policies.reduce((sum, p) => sum + runs(p).length, 0);
  const done: { policy: number; sample: number; outcome: SampleOutcome }[] = [];
  let resumed = 0;
  const step = async (p: number, s: number) => {
    const policy = policies[p], sample = samples[s];
    const key = outcomeKey(policy, sample);
    const earlier = options.done?.get(key);
    const outcome = earlier ?? await runSample(engine, policy, sample, stopIds);
    if (earlier) resumed++;
    else options.onOutcome?.(key, outcome);
    done.push({ policy: p, sample: s, outcome });
    onProgress?.({ done: done.length, total, resumed, policy: policy.name, task: sample.task });
  };
  const share = options.sharePrefill ?? true;
  if (share && engine.sharePrefill) {
    // Sample by sample, so that every policy's run on a prompt starts from one prefill of it.
    for (const [s, sample] of samples.entries()) {
      for (const protocol of ["aware", "agnostic"] as const) {
        const mine = policies.flatMap((p, i) =>
          (p.protocol ?? "aware") === protocol && runs(p).includes(sample) ? [i] : []
        );
        const todo = mine.filter((i) => !options.done?.has(outcomeKey(policies[i], sample)));
        for (const i of mine.filter((i) => !todo.includes(i))) await step(i, s);
        if (sample.kind === "hitrate" || todo.length < 2) {
          for (const i of todo) await step(i, s);
          continue;
        }
        // What every policy prefills before it compresses: the prompt, the context before the
        // question, or the prefix before the scored tokens.
        const ids = sample.kind === "score"
          ? sample.ids.slice(0, sample.from)
          : protocol === "aware"
          ? sample.promptIds
          : sample.promptIds.slice(0, sample.questionStart);
        await engine.sharePrefill(ids, todo.map((i) => policies[i].plan), (j) => step(todo[j], s));
      }
    }
  } else {
    for (const p of policies.keys()) {
      for (const sample of runs(policies[p])) await step(p, samples.indexOf(sample));
    }
  }
  // Reported policy by policy, each in sample order, however they ran.
  done.sort((a, b) => a.policy - b.policy || a.sample - b.sample);
  const outcomes = done.map((d) => d.outcome);
  return {
    model: engine.modelName,
    suite,
    policies: policies.map((p) => ({
      name: p.name,
      file: p.file ?? "<inline>",
      source: p.source,
      sourceHash: p.plan.sourceHash,
      protocol: p.protocol ?? "aware",
    })),
    results: aggregateOutcomes(outcomes),
    outcomes,
    elapsedSeconds: (performance.now() - started) / 1000,
  };
}
