/** resolveBudget: tokens as given, fractions rounded (default) or floored (H2O), never below 1. */
import assert from "node:assert/strict";
import { resolveBudget } from "../../src/plugins/budget.ts";

Deno.test("resolveBudget: round by default, floor on request, at least 1", () => {
  // 0.35·8 = 2.8: round → 3, floor → 2. 0.25·10 = 2.5: round (halves up) → 3, floor → 2.
  assert.equal(resolveBudget({ fraction: 0.35 }, 8), 3);
  assert.equal(resolveBudget({ fraction: 0.35 }, 8, "floor"), 2);
  assert.equal(resolveBudget({ fraction: 0.25 }, 10), 3);
  assert.equal(resolveBudget({ fraction: 0.25 }, 10, "floor"), 2);
  // Tokens are the same either way; nothing resolves below 1.
  assert.equal(resolveBudget({ tokens: 7 }, 3, "floor"), 7);
  assert.equal(resolveBudget({ fraction: 0.01 }, 20), 1);
  assert.equal(resolveBudget({ fraction: 0.01 }, 20, "floor"), 1);
  assert.throws(() => resolveBudget({ fraction: Infinity }, 20, "floor"), /not finite/);
});

Deno.test("resolveBudget: max/min of terms, each resolved by the same rule (RazorAttention's L_h)", () => {
  // L_h = max(S0, N/C) with S0 = 251, C = 10: 10 % of 1000 is 100 < 251; of 4000 it is 400.
  const razor = { max: [{ tokens: 251 }, { fraction: 0.1 }] };
  assert.equal(resolveBudget(razor, 1000), 251);
  assert.equal(resolveBudget(razor, 4000), 400);
  assert.equal(resolveBudget(razor, 2510), 251); // 251 either way
  // A cap: min(20 %, 4k) is 20 % of short prompts and 4096 of long ones.
  const cap = { min: [{ fraction: 0.2 }, { tokens: 4096 }] };
  assert.equal(resolveBudget(cap, 100000), 4096);
  assert.equal(resolveBudget(cap, 1000), 200);
  // Each term rounds (or floors) before the comparison: 35 % of 8 = 2.8 → 3 (round) or 2 (floor).
  assert.equal(resolveBudget({ max: [{ fraction: 0.35 }, { tokens: 2 }] }, 8), 3);
  assert.equal(resolveBudget({ max: [{ fraction: 0.35 }, { tokens: 2 }] }, 8, "floor"), 2);
  assert.equal(resolveBudget({ min: [{ fraction: 0.25 }, { fraction: 0.35 }] }, 10), 3);
  // Three terms; never below 1 (1 % of 20 resolves to 1 before the min).
  assert.equal(resolveBudget({ max: [{ tokens: 5 }, { fraction: 0.5 }, { tokens: 7 }] }, 10), 7);
  assert.equal(resolveBudget({ min: [{ fraction: 0.01 }, { tokens: 9 }] }, 20), 1);
  assert.throws(() => resolveBudget({ max: [] }, 20), /no terms/);
  assert.throws(() => resolveBudget({ min: [{ tokens: 3 }, { fraction: NaN }] }, 20), /not finite/);
});
