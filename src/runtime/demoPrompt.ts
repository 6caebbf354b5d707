/**
 * The built-in demo of `run`: a needle hidden in a haystack in the default model's trained
 * template, so that the main command shows something meaningful.
 *
 * @module
 */

import { needlePrompt } from "../eval/haystack.ts";
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

/** Builds the fixed-seed demo: about 1000 tokens, needle at 40 % depth. */
export function demoPrompt(tok: TextTokenizer, tokens = 1000, seed = 7): DemoPrompt {
  const count = (s: string) => tok.encode(s, { addSpecialTokens: false }).length;
  const p = needlePrompt(seed, tokens, 0.4, count);
  return { ids: tok.encode(p.text), key: p.key, answer: p.answer, depth: p.depth };
}
