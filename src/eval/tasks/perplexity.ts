/**
 * Perplexity, scored teacher-forced from position `suite.perplexity.from` on samples exactly
 * `length` tokens long (BOS included where the tokenizer adds one): by default fresh samples of
 * the training filler grammar (a seed stream no prompt uses); with `ppl.text` in the suite,
 * consecutive windows of that file's text, tokenized once as a whole (Hugging Face's
 * fixed-length perplexity recipe, windows not overlapping). A cell's perplexity is
 * exp(−mean log-probability) over every scored token of its samples.
 *
 * @module
 */

import { decodeUtf8, PROMPT_FILE_LIMIT, readBoundedFileSync } from "../../model/readBounded.ts";
import { UserError } from "../../userError.ts";
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

/**
 * The windows of a text file: sample `index` is the special tokens the tokenizer puts first
 * (BOS), then the `index`-th run of `length` − that many tokens of the text. Throws a user error
 * naming the file when it cannot be read or holds too few tokens for the samples asked.
 */
export function textPerplexitySamples(
  context: TaskContext,
  suite: EvalSuite,
  path: string,
): ScoringSample[] {
  let text: string;
  try {
    text = decodeUtf8(readBoundedFileSync(path, PROMPT_FILE_LIMIT, "a perplexity text"), path);
  } catch (e) {
    throw new UserError(`ppl.text: cannot read '${path}': ${(e as Error).message}`);
  }
  const body = context.tokenizer.encode(text, { addSpecialTokens: false });
  const lead = leadingSpecialIds(context.tokenizer.encode(text), body);
  return suite.lengths.flatMap((length) => {
    const run = length - lead.length;
    const needed = suite.samples * run;
    if (run < 2 || body.length < needed) {
      throw new UserError(
        `ppl.text: '${path}' holds ${body.length} tokens; ${suite.samples} sample(s) of ` +
          `${length} tokens need ${needed} — use a longer text, fewer samples or shorter lengths`,
      );
    }
    return Array.from({ length: suite.samples }, (_, index) => {
      const ids = [...lead, ...body.slice(index * run, (index + 1) * run)];
      const from = Math.min(suite.perplexity.from, ids.length - 1);
      return {
        kind: "score" as const,
        task: "ppl" as const,
        length,
        depth: null,
        index,
        ids,
        from,
      };
    });
  });
}

/** The ids `withSpecials` holds before `body` starts (BOS, for tokenizers that add one). */
function leadingSpecialIds(withSpecials: readonly number[], body: readonly number[]): number[] {
  for (let k = 0; k + body.length <= withSpecials.length; k++) {
    if (body.every((id, i) => withSpecials[k + i] === id)) return withSpecials.slice(0, k);
  }
  return [];
}

/** Per length, `samples` held-out texts (windows of `ppl.text` when the suite names one). */
export function buildPerplexitySamples(context: TaskContext, suite: EvalSuite): ScoringSample[] {
  if (suite.perplexity.text !== undefined) {
    return textPerplexitySamples(context, suite, suite.perplexity.text);
  }
  return suite.lengths.flatMap((length) =>
    Array.from({ length: suite.samples }, (_, i) => perplexitySample(context, suite, length, i))
  );
}

/** exp(−mean) of natural-log probabilities (NaN for none). */
export function perplexityOf(logprobSum: number, tokenCount: number): number {
  return tokenCount > 0 ? Math.exp(-logprobSum / tokenCount) : NaN;
}
