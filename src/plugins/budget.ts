/** Resolving `Budget` parameters (`{tokens}` or `{fraction}` of the prompt) to entry counts. @module */
import type { Budget } from "./schema.ts";

/**
 * The number of entries a budget stands for, for a prompt of `promptLength` tokens.
 * `{tokens: n}` is `n`; `{fraction: f}` is `Math.round(f · promptLength)` (halves round up), or
 * `Math.floor(f · promptLength)` with `rounding = "floor"` (Python's `int(ratio * seq_len)`, as
 * H2O's official code resolves its ratios). The result is always ≥ 1 (an empty cache is never
 * produced) and is NOT clamped to the prompt length: a result ≥ `promptLength` means "keep
 * everything", which every press checks.
 */
export function resolveBudget(
  budget: Budget,
  promptLength: number,
  rounding: "round" | "floor" = "round",
): number {
  const scaled = "tokens" in budget ? budget.tokens : budget.fraction * promptLength;
  const raw = "tokens" in budget || rounding === "floor" ? scaled : Math.round(scaled);
  if (!Number.isFinite(raw)) throw new RangeError(`budget ${JSON.stringify(budget)} is not finite`);
  return Math.max(1, Math.floor(raw));
}
