/**
 * Haystacks in the filler the default models were trained on (models/tiny-needle/README.md):
 * paragraphs of templated English sentences (separated by `\n`, sentences by a space), with
 * needle sentences inserted between two sentences at chosen depths, followed by a question.
 * {@link buildHaystackPrompt} is the general builder every task uses; {@link needlePrompt} is the
 * single-needle shortcut in tiny-needle's template.
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

/** One random filler sentence (the training corpus's templated English). */
export function fillerSentence(r: SeededRandom): string {
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

/** A key `{a}-{b}` from {@link KEY_A} × {@link KEY_B}, e.g. `olive-glacier`. */
export function randomKey(r: SeededRandom): string {
  return `${r.pick(KEY_A)}-${r.pick(KEY_B)}`;
}

/** A random 7-digit number as text (no leading zero). */
export function randomSevenDigits(r: SeededRandom): string {
  return String(1000000 + r.int(9000000));
}

/** A sentence to insert and where: `depth` in [0, 1] (0 = first, 1 = just before the question). */
export interface HaystackNeedle {
  /** The sentence, e.g. `The special magic number for olive-glacier is 4839201.` */
  text: string;
  /** Requested depth as a fraction of the haystack's tokens. */
  depth: number;
}

/** What {@link buildHaystackPrompt} needs. */
export interface HaystackRequest {
  /** The random stream the filler sentences are drawn from. */
  random: SeededRandom;
  /** Tokens the whole text (haystack, needles and suffix, without BOS) should have at most. */
  targetTokens: number;
  /** Token count of a piece of text in the model's tokenizer (without BOS). */
  countTokens: (text: string) => number;
  /** Sentences to insert, each at its own depth (same depth: kept in the given order). */
  needles: HaystackNeedle[];
  /** Text after the haystack: the question and the answer prefix. */
  suffix: string;
  /** Text before the haystack, e.g. an instruction or a chat turn's opening (default none). */
  prefix?: string;
}

/** A built prompt and where its needles ended up. */
export interface HaystackPrompt {
  /** The prompt text (without BOS; the tokenizer adds it). */
  text: string;
  /** Character offset of each needle in `text`, in the order of the request. */
  needleOffsets: number[];
  /** Filler sentences in the haystack (needles not counted). */
  fillerSentences: number;
  /** Characters of `prefix + haystack`: the context before the suffix (the question). */
  contextChars: number;
}

interface FillerSentence {
  text: string;
  paragraph: number;
  tokens: number;
}

/** Lays out sentences (space-separated, paragraphs on new lines) with the needles inserted. */
function renderHaystack(
  sentences: readonly FillerSentence[],
  needles: readonly HaystackNeedle[],
): { text: string; needleOffsets: number[] } {
  const used = sentences.reduce((sum, s) => sum + s.tokens, 0);
  // Sentence index before which each needle goes: the last boundary at or before its depth.
  const insertAt = needles.map((needle) => {
    const position = Math.min(1, Math.max(0, needle.depth)) * used;
    if (position >= used) return sentences.length;
    let index = 0;
    let before = 0;
    while (index + 1 < sentences.length && before + sentences[index].tokens <= position) {
      before += sentences[index].tokens;
      index++;
    }
    return index;
  });
  const pieces: { text: string; paragraph: number; needle: number }[] = [];
  const lastParagraph = sentences.at(-1)?.paragraph ?? 0;
  for (let i = 0; i <= sentences.length; i++) {
    const paragraph = sentences[i]?.paragraph ?? lastParagraph;
    needles.forEach((n, k) => {
      if (insertAt[k] === i) pieces.push({ text: n.text, paragraph, needle: k });
    });
    if (i < sentences.length) pieces.push({ ...sentences[i], needle: -1 });
  }
  let text = "";
  const needleOffsets = needles.map(() => -1);
  pieces.forEach((piece, i) => {
    if (i > 0) text += piece.paragraph === pieces[i - 1].paragraph ? " " : "\n";
    if (piece.needle >= 0) needleOffsets[piece.needle] = text.length;
    text += piece.text;
  });
  return { text, needleOffsets };
}

/**
 * Builds `prefix + haystack + suffix` of at most `targetTokens` tokens: filler sentences are
 * drawn until the next one would pass the budget left by the needles, the prefix and the
 * suffix, then each needle goes
 * in at its depth, measured in tokens of the haystack and moved back to the sentence boundary
 * before it (as gkamradt's needle test does). If the whole text still measures longer than the
 * target (tokens merge differently across boundaries), trailing sentences are dropped.
 */
export function buildHaystackPrompt(request: HaystackRequest): HaystackPrompt {
  const { random, countTokens, needles, suffix, targetTokens } = request;
  const prefix = request.prefix ?? "";
  const needleTokens = needles.reduce((sum, n) => sum + countTokens(" " + n.text), 0);
  const frameTokens = (prefix ? countTokens(prefix) : 0) + countTokens(suffix);
  const budget = targetTokens - needleTokens - frameTokens;
  const sentences: FillerSentence[] = [];
  let used = 0;
  let paragraph = 0;
  let inParagraph = 0;
  let paragraphSize = 4 + random.int(4);
  while (true) {
    const text = fillerSentence(random);
    // A sentence costs its tokens with the separator before it (none, a space or a newline).
    const separator = sentences.length === 0 ? "" : inParagraph === 0 ? "\n" : " ";
    const tokens = countTokens(separator + text);
    if (used + tokens > budget) break;
    sentences.push({ text, paragraph, tokens });
    used += tokens;
    if (++inParagraph >= paragraphSize) {
      paragraph++;
      inParagraph = 0;
      paragraphSize = 4 + random.int(4);
    }
  }
  while (true) {
    const rendered = renderHaystack(sentences, needles);
    const text = prefix + rendered.text + suffix;
    const excess = countTokens(text) - targetTokens;
    if (excess <= 0 || sentences.length === 0) {
      return {
        text,
        needleOffsets: rendered.needleOffsets.map((offset) => prefix.length + offset),
        fillerSentences: sentences.length,
        contextChars: prefix.length + rendered.text.length,
      };
    }
    let dropped = 0;
    while (dropped < excess && sentences.length > 0) dropped += sentences.pop()!.tokens;
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
 * Builds a needle prompt of about `targetTokens` tokens in tiny-needle's template. `countTokens`
 * measures text in the model's tokens (pass the tokenizer's encode length); the needle goes in
 * at `depth` (0 = start, 1 = just before the question).
 */
export function needlePrompt(
  seed: number,
  targetTokens: number,
  depth: number,
  countTokens: (text: string) => number,
): NeedlePrompt {
  const random = new SeededRandom(seed);
  const key = randomKey(random);
  const answer = randomSevenDigits(random);
  const built = buildHaystackPrompt({
    random,
    targetTokens,
    countTokens,
    needles: [{ text: `The special magic number for ${key} is ${answer}.`, depth }],
    suffix: `\nQuestion: What is the special magic number for ${key}? Answer: `,
  });
  return { text: built.text, key, answer, depth };
}
