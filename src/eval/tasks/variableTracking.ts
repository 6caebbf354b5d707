/**
 * RULER variable tracking: chains of assignments `VAR ABCDE = 52013.`, `VAR FGHIJ = VAR ABCDE.`,
 * ... (`hops` variables per chain), spread in order through the haystack, with distractor chains
 * holding other values. The question "Which variables are assigned the value 52013?" expects
 * every variable of the asked chain: `ABCDE, FGHIJ, ...`. Scored by `string_match_all`.
 *
 * @module
 */

import { promptFrame } from "../chatPrompt.ts";
import { buildHaystackPrompt, type HaystackNeedle } from "../haystack.ts";
import {
  type GenerationSample,
  generationSample,
  promptTokenBudget,
  type TaskContext,
} from "../sample.ts";
import { deriveSeed, SeededRandom } from "../seededRandom.ts";
import type { EvalSuite } from "../suite.ts";
import { fillTemplate } from "../templates.ts";

const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** A random variable name of five capital letters. */
export function randomVariableName(random: SeededRandom): string {
  return Array.from({ length: 5 }, () => LETTERS[random.int(26)]).join("");
}

/** One variable-tracking prompt. */
export function variableTrackingSample(
  context: TaskContext,
  suite: EvalSuite,
  length: number,
  index: number,
): GenerationSample {
  const random = new SeededRandom(deriveSeed(suite.seed, "variable_tracking", length, null, index));
  const { hops, chains } = suite.variableTracking;
  const names = new Set<string>();
  while (names.size < hops * chains) names.add(randomVariableName(random));
  const values = new Set<string>();
  while (values.size < chains) values.add(String(10000 + random.int(90000)));
  const nameList = [...names];
  const valueList = [...values];
  const needles: HaystackNeedle[] = [];
  for (let c = 0; c < chains; c++) {
    const chain = nameList.slice(c * hops, (c + 1) * hops);
    // A chain's assignments appear in order: sorted depths.
    const depths = chain.map(() => random.next()).sort((a, b) => a - b);
    chain.forEach((name, i) => {
      const text = i === 0
        ? fillTemplate(suite.templates.variableValue, { name, value: valueList[c] })
        : fillTemplate(suite.templates.variableCopy, { name, source: chain[i - 1] });
      needles.push({ text, depth: depths[i] });
    });
  }
  const asked = nameList.slice(0, hops);
  const answer = `${asked.join(", ")}.`;
  const value = valueList[0];
  const built = buildHaystackPrompt({
    random,
    targetTokens: promptTokenBudget(context, length, answer),
    countTokens: context.countTokens,
    needles,
    ...promptFrame(context.chat, {
      preamble: suite.templates.variablePreamble,
      question: fillTemplate(suite.templates.variableQuestion, { value }),
      answerPrefix: fillTemplate(suite.templates.variableAnswerPrefix, { value }),
    }),
  });
  return generationSample(
    context,
    { task: "variable_tracking", length, depth: null, index },
    built.text,
    answer,
    asked,
    "string_match_all",
    built.contextChars,
  );
}

/** Per length, `samples` variable-tracking prompts. */
export function buildVariableTrackingSamples(
  context: TaskContext,
  suite: EvalSuite,
): GenerationSample[] {
  return suite.lengths.flatMap((length) =>
    Array.from(
      { length: suite.samples },
      (_, i) => variableTrackingSample(context, suite, length, i),
    )
  );
}
