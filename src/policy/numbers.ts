/**
 * The range of number literals. Every literal stands for a finite number whose magnitude, after
 * its `k` suffix, is at most 2^53 − 1, so integers are exact and no value becomes `Infinity`;
 * decimals are rounded to the nearest float64 like any decimal.
 *
 * @module
 */

import type { ValueNode } from "./ast.ts";

/** A number literal's suffix: none, `k` (× 1024) or `%`. */
export type NumberUnit = Extract<ValueNode, { kind: "number" }>["unit"];

/** What `k` multiplies by. */
export const K_FACTOR = 1024;

/** The largest magnitude a literal may stand for: 2^53 − 1, the largest exact integer. */
export const LARGEST_LITERAL = Number.MAX_SAFE_INTEGER;

/** The largest `Nk` literal: 8796093022207k, as 8796093022208k is 2^53. */
export const LARGEST_K_LITERAL = Math.floor(LARGEST_LITERAL / K_FACTOR);

/**
 * Why a literal is out of range, or `undefined` when it is not. `digits` is the literal without
 * its suffix, as the lexer matched it (`-12`, `0.5`).
 */
export function literalRangeError(digits: string, unit: NumberUnit): string | undefined {
  const value = Number(digits);
  const scaled = unit === "k" ? value * K_FACTOR : value;
  if (Math.abs(scaled) <= LARGEST_LITERAL) return undefined;
  const negative = digits.startsWith("-");
  const [size, bound, side] = negative
    ? ["small", "smallest", "below"]
    : ["large", "largest", "above"];
  const sign = negative ? "-" : "";
  const written = shortened(digits);
  if (unit === "k") {
    return `${written}k is too ${size}: ${written} × ${K_FACTOR} is ${side} ${sign}${LARGEST_LITERAL} ` +
      `(the ${bound} is ${sign}${LARGEST_K_LITERAL}k)`;
  }
  const kind = unit === "%" ? "percentage" : digits.includes(".") ? "number" : "integer";
  return `${kind} ${written}${unit} is too ${size} (the ${bound} is ${sign}${LARGEST_LITERAL}${unit})`;
}

/** Digits as written, elided in the middle when too long to quote in a message. */
function shortened(digits: string): string {
  return digits.length <= 40 ? digits : `${digits.slice(0, 16)}…${digits.slice(-4)}`;
}
