/**
 * Needle-in-a-haystack (gkamradt) and RULER's single-key task: one needle
 * (`templates.needle`) in filler text, one question about its key.
 *
 * - `needle`: the classic grid, every length × depth, scored by exact match of the 7 digits.
 * - `single_key`: one cell per length, the needle at a random depth, scored by RULER's
 *   `string_match_all`.
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
import type { EvalSuite, TaskName } from "../suite.ts";
import { fillTemplate } from "../templates.ts";

/** One single-needle prompt; `depth` in percent, or null for a random depth. */
export function singleNeedleSample(
  context: TaskContext,
  suite: EvalSuite,
  task: TaskName,
  length: number,
  depth: number | null,
  index: number,
): GenerationSample {
  const random = new SeededRandom(deriveSeed(suite.seed, task, length, depth, index));
  const key = randomKey(random);
  const value = randomSevenDigits(random);
  const needleDepth = depth === null ? random.next() : depth / 100;
  const { templates } = suite;
  const built = buildHaystackPrompt({
    random,
    targetTokens: promptTokenBudget(context, length, `${value}.`),
    countTokens: context.countTokens,
    needles: [{ text: fillTemplate(templates.needle, { key, value }), depth: needleDepth }],
    ...promptFrame(context.chat, {
      preamble: templates.preamble,
      question: fillTemplate(templates.question, { key }),
      answerPrefix: fillTemplate(templates.answerPrefix, { key }),
    }),
  });
  const scoring = task === "needle" ? "exact_number" : "string_match_all";
  return generationSample(
    context,
    { task, length, depth, index },
    built.text,
    `${value}.`,
    [value],
    scoring,
    built.contextChars,
  );
}

/** The needle grid: every length × depth × sample of the suite. */
export function buildNeedleSamples(context: TaskContext, suite: EvalSuite): GenerationSample[] {
  const samples: GenerationSample[] = [];
  for (const length of suite.lengths) {
    for (const depth of suite.depths) {
      for (let i = 0; i < suite.samples; i++) {
        samples.push(singleNeedleSample(context, suite, "needle", length, depth, i));
      }
    }
  }
  return samples;
}

/** RULER single-key: per length, `samples` prompts with the needle at a random depth. */
export function buildSingleKeySamples(context: TaskContext, suite: EvalSuite): GenerationSample[] {
  const samples: GenerationSample[] = [];
  for (const length of suite.lengths) {
    for (let i = 0; i < suite.samples; i++) {
      samples.push(singleNeedleSample(context, suite, "single_key", length, null, i));
    }
  }
  return samples;
}
