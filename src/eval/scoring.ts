/**
 * Scoring of generated answers, as the tasks define it, and the confidence interval reported
 * with every accuracy.
 *
 * - Needle exact match: the prediction is the **first maximal run of digits** in the generated
 *   text (`" 4839201.</s>"` → `4839201`); the sample scores 1 when that run equals the 7-digit
 *   value, else 0 (so `48392011` or `483920` are wrong, and no digits at all is wrong).
 * - RULER `string_match_all`: the fraction of reference strings found in the output, both
 *   lower-cased (NVIDIA/RULER `string_match_all`, here in 0..1 instead of ×100).
 *
 * @module
 */

import type { ScoringRule } from "./sample.ts";

/** The first maximal run of digits in `text`, or null when it has none. */
export function firstNumber(text: string): string | null {
  return /\d+/.exec(text)?.[0] ?? null;
}

/** 1 when the first run of digits in `output` is exactly `value`, else 0. */
export function exactNumberMatch(output: string, value: string): number {
  return firstNumber(output) === value ? 1 : 0;
}

/** Fraction (0..1) of `references` contained in `output`, case-insensitively. */
export function stringMatchAll(output: string, references: readonly string[]): number {
  if (references.length === 0) return 1;
  const lower = output.toLowerCase();
  const found = references.filter((r) => lower.includes(r.toLowerCase())).length;
  return found / references.length;
}

/** Scores `output` by `rule` against `references` (exact_number uses the first reference). */
export function scoreAnswer(
  rule: ScoringRule,
  output: string,
  references: readonly string[],
): number {
  return rule === "exact_number"
    ? exactNumberMatch(output, references[0])
    : stringMatchAll(output, references);
}

/**
 * The Wilson score interval of a proportion `p` measured on `n` samples (95 % by default,
 * z = 1.96). For mean recall scores (not 0/1) it is the usual normal-approximation stand-in.
 * With no samples the interval is [0, 1].
 */
export function wilsonInterval(p: number, n: number, z = 1.959963984540054): [number, number] {
  if (n <= 0) return [0, 1];
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
