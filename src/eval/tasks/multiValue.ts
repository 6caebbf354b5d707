/**
 * RULER multi-value: several needles with the same key and different values, at random depths;
 * the question (`templates.multiValueQuestion`, e.g. "What are all the special magic numbers for
 * {key}?") expects every value, in needle order: `n1, n2, n3.`. Scored by `string_match_all`
 * (the fraction of values the answer contains).
 *
 * @module
 */

import { promptFrame } from "../chatPrompt.ts";
import { buildHaystackPrompt, randomKey, randomSevenDigits } from "../haystack.ts";
import {
  type GenerationSample,
  generationSample,
  promptTokenBudget,
  type TaskContext,
} from "../sample.ts";
import { deriveSeed, SeededRandom } from "../seededRandom.ts";
import type { EvalSuite } from "../suite.ts";
import { fillTemplate } from "../templates.ts";

/** One multi-value prompt. */
export function multiValueSample(
  context: TaskContext,
  suite: EvalSuite,
  length: number,
  index: number,
): GenerationSample {
  const random = new SeededRandom(deriveSeed(suite.seed, "multi_value", length, null, index));
  const key = randomKey(random);
  const unique = new Set<string>();
  while (unique.size < suite.multiValue.values) unique.add(randomSevenDigits(random));
  const values = [...unique];
  // Sorted depths keep the needles in value order, so the expected answer lists them as they appear.
  const depths = values.map(() => random.next()).sort((a, b) => a - b);
  const answer = `${values.join(", ")}.`;
  const built = buildHaystackPrompt({
    random,
    targetTokens: promptTokenBudget(context, length, answer),
    countTokens: context.countTokens,
    needles: values.map((value, i) => ({
      text: fillTemplate(suite.templates.needle, { key, value }),
      depth: depths[i],
    })),
    ...promptFrame(context.chat, {
      preamble: suite.templates.preamble,
      question: fillTemplate(suite.templates.multiValueQuestion, { key }),
      answerPrefix: fillTemplate(suite.templates.answerPrefix, { key }),
    }),
  });
  return generationSample(
    context,
    { task: "multi_value", length, depth: null, index },
    built.text,
    answer,
    values,
    "string_match_all",
    built.contextChars,
  );
}

/** Per length, `samples` multi-value prompts. */
export function buildMultiValueSamples(context: TaskContext, suite: EvalSuite): GenerationSample[] {
  return suite.lengths.flatMap((length) =>
    Array.from({ length: suite.samples }, (_, i) => multiValueSample(context, suite, length, i))
  );
}
