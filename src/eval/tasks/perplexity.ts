/**
 * Perplexity on held-out filler text: fresh samples of the training filler grammar (a seed
 * stream no prompt uses), exactly `length` tokens long (BOS included), scored teacher-forced
 * from position `suite.perplexity.from`. A cell's perplexity is exp(−mean log-probability) over
 * every scored token of its samples.
 *
 * @module
 */

import { buildHaystackPrompt } from "../haystack.ts";
import type { ScoringSample, TaskContext } from "../sample.ts";
import { deriveSeed, SeededRandom } from "../seededRandom.ts";
import type { EvalSuite } from "../suite.ts";

/** One held-out text of `length` tokens. */
export function perplexitySample(
  context: TaskContext,
  suite: EvalSuite,
  length: number,
  index: number,
): ScoringSample {
  const random = new SeededRandom(deriveSeed(suite.seed, "ppl-held-out", length, null, index));
  // Over-generate a little, then cut to exactly `length` ids.
  const built = buildHaystackPrompt({
    random,
    targetTokens: length + 64,
    countTokens: context.countTokens,
    needles: [],
    suffix: "",
  });
  const ids = context.tokenizer.encode(built.text).slice(0, length);
  const from = Math.min(suite.perplexity.from, ids.length - 1);
  return { kind: "score", task: "ppl", length, depth: null, index, ids, from };
}

/** Per length, `samples` held-out texts. */
export function buildPerplexitySamples(context: TaskContext, suite: EvalSuite): ScoringSample[] {
  return suite.lengths.flatMap((length) =>
    Array.from({ length: suite.samples }, (_, i) => perplexitySample(context, suite, length, i))
  );
}

/** exp(−mean) of natural-log probabilities (NaN for none). */
export function perplexityOf(logprobSum: number, tokenCount: number): number {
  return tokenCount > 0 ? Math.exp(-logprobSum / tokenCount) : NaN;
}
