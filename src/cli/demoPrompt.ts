/**
 * The built-in demo of `run`: a needle hidden in a haystack, in the template the model was
 * trained on (tiny-needle) or built for (planted-needle, whose question ends with the needle's own
 * prefix so that the answer is a copy), or, for an instruct model with a chat template (e.g.
 * SmolLM2), RULER's question in the model's chat form, so the main command shows something
 * meaningful.
 *
 * @module
 */

import { buildHaystackPrompt, randomKey, randomSevenDigits } from "../eval/haystack.ts";
import { SeededRandom } from "../eval/seededRandom.ts";
import { modelKindOf } from "../eval/suite.ts";
import { type ChatFrame, promptFrame } from "../eval/chatPrompt.ts";
import { fillTemplate, PRETRAINED_TEMPLATES } from "../eval/templates.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";

/** A demo prompt: token ids, and the needle to look for in the answer. */
export interface DemoPrompt {
  /** Prompt ids (BOS included). */
  ids: number[];
  /** The needle key. */
  key: string;
  /** The 7-digit answer. */
  answer: string;
  /** Needle depth in [0, 1]. */
  depth: number;
}

/** Which question template the demo uses. */
export type DemoTemplate = "question" | "copy";

/** The demo's needle: key and 7-digit answer drawn from `seed`, at 30 % depth. */
function demoNeedle(seed: number) {
  const random = new SeededRandom(seed);
  const key = randomKey(random);
  const answer = randomSevenDigits(random);
  return { random, key, answer, depth: 0.3 };
}

/** Counts the tokens of a piece of prompt text (no special tokens added). */
function tokenCounter(tok: TextTokenizer): (text: string) => number {
  return (text) => tok.encode(text, { addSpecialTokens: false }).length;
}

/**
 * Builds the fixed-seed demo: about `tokens` tokens, the needle at 30 % depth. `copy` ends the
 * question with the needle's prefix (`… Answer: The special magic number for {key} is`).
 */
export function demoPrompt(
  tok: TextTokenizer,
  template: DemoTemplate,
  tokens = 512,
  seed = 7,
): DemoPrompt {
  const { random, key, answer, depth } = demoNeedle(seed);
  const question = `\nQuestion: What is the special magic number for ${key}? Answer: `;
  const built = buildHaystackPrompt({
    random,
    targetTokens: tokens,
    countTokens: tokenCounter(tok),
    needles: [{ text: `The special magic number for ${key} is ${answer}.`, depth }],
    suffix: template === "copy" ? `${question}The special magic number for ${key} is` : question,
  });
  return { ids: tok.encode(built.text), key, answer, depth };
}

/**
 * The demo for instruct models with a chat template: RULER's needle wording
 * ({@link PRETRAINED_TEMPLATES}) as the user's message, the answer prefix opening the assistant's
 * turn, about `tokens` tokens, the needle at 30 % depth. Ids carry no extra BOS (the template
 * writes what the model expects).
 */
export function chatDemoPrompt(
  tok: TextTokenizer,
  frame: ChatFrame,
  tokens = 1024,
  seed = 7,
): DemoPrompt {
  const { random, key, answer, depth } = demoNeedle(seed);
  const t = PRETRAINED_TEMPLATES;
  const fill = (text: string) => fillTemplate(text, { key, value: answer });
  const around = promptFrame(frame, {
    preamble: t.preamble,
    question: fill(t.question),
    answerPrefix: fill(t.answerPrefix),
  });
  const built = buildHaystackPrompt({
    random,
    targetTokens: tokens,
    countTokens: tokenCounter(tok),
    needles: [{ text: fill(t.needle), depth }],
    prefix: around.prefix,
    suffix: around.suffix,
  });
  return { ids: tok.encode(built.text, { addSpecialTokens: false }), key, answer, depth };
}

/** The demo prompt in the template that suits `modelDir` (planted-needle: `copy`). */
export function demoPromptFor(tok: TextTokenizer, modelDir: string, tokens = 512): DemoPrompt {
  return demoPrompt(tok, modelKindOf(modelDir) === "planted-needle" ? "copy" : "question", tokens);
}
