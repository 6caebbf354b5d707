/**
 * Resolving `Budget` parameters (`{tokens}`, `{fraction}` of the prompt, or the `max`/`min` of
 * those) to entry counts.
 *
 * @module
 */
import type { Budget } from "./schema.ts";

/**
 * The number of entries a budget stands for, for a prompt of `promptLength` tokens.
 * `{tokens: n}` is `n`; `{fraction: f}` is `Math.round(f · promptLength)` (halves round up), or
 * `Math.floor(f · promptLength)` with `rounding = "floor"` (Python's `int(ratio * seq_len)`, as
 * H2O's official code resolves its ratios). `{max: [...]}` / `{min: [...]}` resolve each term
 * that way, then take the largest / smallest: `max(251, 10%)` is RazorAttention's
 * L_h = max(S0, N/C) (251 at N = 1000, 400 at N = 4000). The result is always ≥ 1 (an empty cache
 * is never produced) and is NOT clamped to the prompt length: a result ≥ `promptLength` means
 * "keep everything", which every press checks.
 */
export function resolveBudget(
  budget: Budget,
  promptLength: number,
  rounding: "round" | "floor" = "round",
): number {
  if ("max" in budget || "min" in budget) {
    const terms = "max" in budget ? budget.max : budget.min;
    if (terms.length === 0) throw new RangeError(`budget ${JSON.stringify(budget)} has no terms`);
    const pick = "max" in budget ? Math.max : Math.min;
    let count = resolveBudget(terms[0], promptLength, rounding);
    for (const t of terms) count = pick(count, resolveBudget(t, promptLength, rounding));
    return count;
  }
  const scaled = "tokens" in budget ? budget.tokens : budget.fraction * promptLength;
  const raw = "tokens" in budget || rounding === "floor" ? scaled : Math.round(scaled);
  if (!Number.isFinite(raw)) throw new RangeError(`budget ${JSON.stringify(budget)} is not finite`);
  return Math.max(1, Math.floor(raw));
}
