/**
 * RULER multi-key: several needles with different keys in one haystack, one of them asked.
 * As in tiny-needle's training data, a share of the distractors (40 % by default) have a key
 * that shares one word with the asked key (`olive-glacier` vs `olive-comet`), the hard case.
 * Needles go at random depths; scored by `string_match_all` on the asked value.
 *
 * @module
 */

import { promptFrame } from "../chatPrompt.ts";
import { buildHaystackPrompt, KEY_A, KEY_B, randomKey, randomSevenDigits } from "../haystack.ts";
import {
  type GenerationSample,
  generationSample,
  promptTokenBudget,
  type TaskContext,
} from "../sample.ts";
import { deriveSeed, SeededRandom } from "../seededRandom.ts";
import type { EvalSuite } from "../suite.ts";
import { fillTemplate } from "../templates.ts";

/** A distractor key different from every key in `taken`, sharing one word with `asked` if `share`. */
export function distractorKey(
  random: SeededRandom,
  asked: string,
  taken: Set<string>,
  share: boolean,
): string {
  const [a, b] = asked.split("-");
  for (let attempt = 0; attempt < 1000; attempt++) {
    let key: string;
    if (share) {
      key = random.next() < 0.5 ? `${a}-${random.pick(KEY_B)}` : `${random.pick(KEY_A)}-${b}`;
    } else {
      key = `${random.pick(KEY_A.filter((x) => x !== a))}-${
        random.pick(KEY_B.filter((x) => x !== b))
      }`;
    }
    if (!taken.has(key)) return key;
  }
  throw new Error(`cannot find a distractor key for ${asked} among ${taken.size} taken keys`);
}

/** One multi-key prompt. */
export function multiKeySample(
  context: TaskContext,
  suite: EvalSuite,
  length: number,
  index: number,
): GenerationSample {
  const random = new SeededRandom(deriveSeed(suite.seed, "multi_key", length, null, index));
  const asked = randomKey(random);
  const keys = [asked];
  const taken = new Set(keys);
  for (let i = 1; i < suite.multiKey.needles; i++) {
    const key = distractorKey(random, asked, taken, random.next() < suite.multiKey.shareWord);
    keys.push(key);
    taken.add(key);
  }
  const values = new Set<string>();
  while (values.size < keys.length) values.add(randomSevenDigits(random));
  const answer = [...values][0];
  const needles = keys.map((key, i) => ({
    text: fillTemplate(suite.templates.needle, { key, value: [...values][i] }),
    depth: random.next(),
  }));
  const built = buildHaystackPrompt({
    random,
    targetTokens: promptTokenBudget(context, length, `${answer}.`),
    countTokens: context.countTokens,
    needles,
    ...promptFrame(context.chat, {
      preamble: suite.templates.preamble,
      question: fillTemplate(suite.templates.question, { key: asked }),
      answerPrefix: fillTemplate(suite.templates.answerPrefix, { key: asked }),
    }),
  });
  return generationSample(
    context,
    { task: "multi_key", length, depth: null, index },
    built.text,
    `${answer}.`,
    [answer],
    "string_match_all",
    built.contextChars,
  );
}

/** Per length, `samples` multi-key prompts. */
export function buildMultiKeySamples(context: TaskContext, suite: EvalSuite): GenerationSample[] {
  return suite.lengths.flatMap((length) =>
    Array.from({ length: suite.samples }, (_, i) => multiKeySample(context, suite, length, i))
  );
}
