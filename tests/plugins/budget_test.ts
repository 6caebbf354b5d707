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
