/**
 * Needle-in-a-haystack prompts in the template the default models were trained on
 * (models/tiny-needle/README.md): paragraphs of templated English sentences, a needle sentence
 * `The special magic number for {key} is {7 digits}.` inserted between two sentences at a chosen
 * depth, and the question `Question: What is the special magic number for {key}? Answer: `.
 *
 * @module
 */

import { SeededRandom } from "./seededRandom.ts";

const NAMES = ["Tara", "Marco", "Nora", "Paul", "Rosa", "Karl", "Tom", "Daniel", "Lena", "Ivan"];
const PLACES = [
  "castle",
  "lake",
  "town",
  "museum",
  "cottage",
  "desert",
  "island",
  "forest",
  "market",
];
const THINGS = ["bird", "ring", "dog", "boat", "stone", "hat", "horse", "cart", "coin", "ladder"];
const ADJECTIVES = [
  "quick",
  "strong",
  "empty",
  "hard",
  "silver",
  "careful",
  "loud",
  "soft",
  "blue",
];
const VERBS = ["checked", "painted", "followed", "lifted", "prepared", "wrote", "repaired"];
const MOVES = ["traveled", "walked", "hurried", "arrived", "returned"];
const OPENERS = [
  "After lunch,",
  "In the evening,",
  "Later,",
  "However,",
  "Then,",
  "Before dinner,",
];

/** Key words of needles (`{a}-{b}`), as in the training corpus. */
export const KEY_A = [
  "amber",
  "azure",
  "brave",
  "calm",
  "crimson",
  "mellow",
  "olive",
  "quiet",
  "rapid",
  "silent",
];
/** Second words of needle keys. */
export const KEY_B = [
  "falcon",
  "river",
  "tiger",
  "lantern",
  "dolphin",
  "glacier",
  "meadow",
  "harbor",
  "comet",
  "willow",
];

function sentence(r: SeededRandom): string {
  const n = () => r.pick(NAMES);
  switch (r.int(6)) {
    case 0:
      return `${r.pick(OPENERS)} ${n()} ${r.pick(MOVES)} to the ${r.pick(PLACES)}.`;
    case 1:
      return `${n()} asked ${n()} to prepare the ${r.pick(ADJECTIVES)} ${r.pick(THINGS)}.`;
    case 2:
      return `${n()} ${r.pick(VERBS)} a ${r.pick(ADJECTIVES)} ${r.pick(THINGS)}.`;
    case 3:
      return `In the evening, the ${r.pick(THINGS)} near the ${r.pick(PLACES)} looked ${
        r.pick(ADJECTIVES)
      }.`;
    case 4:
      return `${n()} gave the ${r.pick(THINGS)} to ${n()} at noon.`;
    default:
      return `${n()} wanted to ${r.pick(["paint", "repair", "check"])} the ${
        r.pick(THINGS)
      }, but ${n()} ${r.pick(VERBS)} it first.`;
  }
}

/** A needle prompt and its expected answer. */
export interface NeedlePrompt {
  /** The full prompt text (without BOS; the tokenizer adds it). */
  text: string;
  /** The needle's key, e.g. `olive-glacier`. */
  key: string;
  /** The 7-digit value the model should answer. */
  answer: string;
  /** Requested depth in [0, 1]. */
  depth: number;
}

/**
 * Builds a needle prompt of about `targetTokens` tokens. `countTokens` measures text in the
 * model's tokens (pass the tokenizer's encode length); sentences are added until the target is
 * reached, then the needle goes in at `depth` (0 = start, 1 = just before the question).
 */
export function needlePrompt(
  seed: number,
  targetTokens: number,
  depth: number,
  countTokens: (text: string) => number,
): NeedlePrompt {
  const r = new SeededRandom(seed);
  const key = `${r.pick(KEY_A)}-${r.pick(KEY_B)}`;
  const answer = String(1000000 + r.int(9000000));
  const needle = `The special magic number for ${key} is ${answer}.`;
  const question = `\nQuestion: What is the special magic number for ${key}? Answer: `;
  const budget = targetTokens - countTokens(needle + question);
  const paragraphs: string[][] = [[]];
  // Each sentence costs about its own token count with the separator before it.
  let used = 0;
  while (used < budget) {
    const s = sentence(r);
    const paragraph = paragraphs.at(-1)!;
    paragraph.push(s);
    used += countTokens(" " + s);
    if (paragraph.length >= 4 + r.int(4)) paragraphs.push([]);
  }
  // Insert the needle between two sentences at the requested depth.
  const flat = paragraphs.flatMap((p, i) => p.map((s, j) => ({ s, i, j })));
  const at = Math.round(Math.min(1, Math.max(0, depth)) * flat.length);
  const out: string[][] = paragraphs.map(() => []);
  flat.forEach((item, k) => {
    if (k === at) out[item.i].push(needle);
    out[item.i].push(item.s);
  });
  if (at >= flat.length) out[out.length - 1].push(needle);
  const haystack = out.map((p) => p.join(" ")).filter((p) => p).join("\n");
  return { text: haystack + question, key, answer, depth };
}
