/**
 * A fake {@link EvalEngine} for the harness's tests: it "remembers" only the last tokens of the
 * prompt that the plan keeps (`full` everything; `window` sink + recent; `snap` k) and answers
 * every task correctly from that remembered text, wrongly (`0000000.`) otherwise. So a needle
 * near the question is found by every policy and a deep one only by the full cache.
 */
import type { EvalEngine, HitRateRequest, HitRateResult } from "../../src/eval/engine.ts";
import { loadTokenizer, type TextTokenizer } from "../../src/model/tokenizer.ts";
import type { Plan } from "../../src/plan/plan.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { EvalPolicy } from "../../src/eval/runner.ts";

/** The tiny-needle folder shipped with the repository. */
export const TINY_NEEDLE_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

let tokenizer: TextTokenizer | undefined;
/** The real tiny-needle tokenizer (loaded once). */
export async function tinyNeedleTokenizer(): Promise<TextTokenizer> {
  tokenizer ??= (await loadTokenizer(TINY_NEEDLE_DIR))!;
  return tokenizer;
}

const BYTES_PER_TOKEN = 1000;

/** Tokens of a prompt of `n` tokens that the fake remembers under `plan`. */
export function keptTokens(plan: Plan, n: number): number {
  const press = plan.rules.at(-1)?.pipeline[0];
  const tokens = (value: unknown) =>
    typeof value === "object" && value !== null && "tokens" in value
      ? Number((value as { tokens: number }).tokens)
      : Number(value);
  if (!press || press.name === "full") return n;
  if (press.name === "window") {
    return Math.min(n, tokens(press.params.sink) + tokens(press.params.recent));
  }
  if (press.name === "snap") return Math.min(n, tokens(press.params.k));
  return n;
}

function answerFrom(remembered: string, question: string): string {
  const single = /What is the special magic number for ([a-z]+-[a-z]+)\?/.exec(question);
  if (single) {
    const found = new RegExp(`The special magic number for ${single[1]} is (\\d{7})\\.`).exec(
      remembered,
    );
    return found ? `${found[1]}.` : "0000000.";
  }
  const multi = /What are all the special magic numbers for ([a-z]+-[a-z]+)\?/.exec(question);
  if (multi) {
    const re = new RegExp(`The special magic number for ${multi[1]} is (\\d{7})\\.`, "g");
    const values = [...remembered.matchAll(re)].map((m) => m[1]);
    return values.length ? `${values.join(", ")}.` : "0000000.";
  }
  const variable = /Which variables are assigned the value (\d+)\?/.exec(question);
  if (variable) {
    const names: string[] = [];
    const first = new RegExp(`VAR ([A-Z]{5}) = ${variable[1]}\\.`).exec(remembered);
    if (first) names.push(first[1]);
    for (let grew = true; grew && names.length;) {
      grew = false;
      const copy = new RegExp(`VAR ([A-Z]{5}) = VAR ${names.at(-1)}\\.`).exec(remembered);
      if (copy && !names.includes(copy[1])) {
        names.push(copy[1]);
        grew = true;
      }
    }
    return names.length ? `${names.join(", ")}.` : "NONE.";
  }
  return "?";
}

/** The fake engine; `calls` counts requests per kind, `prompts` records every generation prompt. */
export class RecencyFakeEngine implements EvalEngine {
  readonly tokenizer: TextTokenizer;
  readonly modelName = "fake-recency";
  readonly calls = { generate: 0, score: 0, hitRate: 0 };
  readonly prompts: number[][] = [];
  /** Every query-agnostic request: the context and its questions. */
  readonly agnostic: { context: number[]; questions: number[][] }[] = [];

  constructor(tokenizer: TextTokenizer) {
    this.tokenizer = tokenizer;
  }

  generate(req: { promptIds: number[]; maxNewTokens: number; plan: Plan; stopIds?: number[] }) {
    this.calls.generate++;
    this.prompts.push(req.promptIds);
    const n = req.promptIds.length;
    const kept = keptTokens(req.plan, n);
    const text = this.tokenizer.decode(req.promptIds, { skipSpecialTokens: true });
    const question = text.slice(text.lastIndexOf("\nQuestion:"));
    const remembered = this.tokenizer.decode(req.promptIds.slice(n - kept), {
      skipSpecialTokens: true,
    });
    const prefix = text.endsWith(" ") ? "" : " ";
    const answer = this.tokenizer.encode(prefix + answerFrom(remembered, question), {
      addSpecialTokens: false,
    });
    const tokens = [...answer, ...(req.stopIds ?? []).slice(0, 1)].slice(0, req.maxNewTokens);
    return Promise.resolve({
      tokens,
      kv: { fullBytes: n * BYTES_PER_TOKEN, keptBytes: kept * BYTES_PER_TOKEN },
      timing: { prefillMs: n / 10, decodeMs: tokens.length, decodeTokensPerSecond: 1e5 / kept },
    });
  }

  /** Query-agnostic: the plan keeps part of the context alone; each question is read whole. */
  answerQuestions(
    req: { contextIds: number[]; questions: number[][]; maxNewTokens: number; plan: Plan },
  ) {
    this.agnostic.push({ context: req.contextIds, questions: req.questions });
    const n = req.contextIds.length;
    const kept = keptTokens(req.plan, n);
    const remembered = this.tokenizer.decode(req.contextIds.slice(n - kept), {
      skipSpecialTokens: true,
    });
    return Promise.resolve(req.questions.map((q) => {
      const question = this.tokenizer.decode(q, { skipSpecialTokens: true });
      const prefix = question.endsWith(" ") ? "" : " ";
      const answer = this.tokenizer.encode(prefix + answerFrom(remembered, question), {
        addSpecialTokens: false,
      }).slice(0, req.maxNewTokens);
      return {
        tokens: answer,
        kv: {
          fullBytes: (n + q.length) * BYTES_PER_TOKEN,
          keptBytes: (kept + q.length) * BYTES_PER_TOKEN,
        },
        timing: { prefillMs: 1, decodeMs: answer.length, decodeTokensPerSecond: 1e5 / kept },
      };
    }));
  }

  scoreTokens(req: { ids: number[]; plan: Plan; from: number }) {
    this.calls.score++;
    const n = req.ids.length;
    const kept = keptTokens(req.plan, n);
    const logprob = kept === n ? -1.5 : -2;
    return Promise.resolve({
      logprobs: req.ids.slice(req.from).map(() => logprob),
      kv: { fullBytes: n * BYTES_PER_TOKEN, keptBytes: kept * BYTES_PER_TOKEN },
    });
  }

  hitRate(req: HitRateRequest): Promise<HitRateResult> {
    this.calls.hitRate++;
    const n = req.promptIds.length;
    const kept = keptTokens(req.plan, n);
    // Two layers, two KV heads: layer 0 always hits, layer 1 hits as much as it keeps.
    return Promise.resolve({
      hits: [[1, 1], [kept / n, kept / n]],
      kv: { fullBytes: n * BYTES_PER_TOKEN, keptBytes: kept * BYTES_PER_TOKEN },
    });
  }
}

/** Policies the fake understands: full, and a window of 150 recent tokens. */
export function fakePolicies(): EvalPolicy[] {
  const full = 'policy "full";\nelse -> full;';
  const window =
    'policy "window150";\n# keeps <sink & recent> only\nelse -> window(sink=4, recent=146);';
  return [
    { name: "full", source: full, plan: compileOrThrow(full), file: "full.kvp" },
    { name: "window150", source: window, plan: compileOrThrow(window), file: "w.kvp" },
  ];
}
