/**
 * Number literals in every position (press and detector arguments, index lists and ranges,
 * `let` constants) stand for finite values, with integers exact: anything beyond 2^53 − 1 (the
 * `k` multiple included) is an error at the literal.
 */
import assert from "node:assert/strict";
import { compileOrThrow, compilePolicy } from "../../src/plan/compile.ts";
import { renderDiagnostics } from "../../src/policy/diagnostics.ts";
import { parsePolicy } from "../../src/policy/parse.ts";
import { errorsOf, messages } from "./_helpers.ts";

const TOO_LARGE = "is too large (the largest is 9007199254740991)";
const K_TOO_LARGE = "× 1024 is above 9007199254740991 (the largest is 8796093022207k)";
const OVERFLOW = "9".repeat(400);

/** Policies with one bad literal, and the one error each must give. */
const BAD_LITERALS: [source: string, error: string][] = [
  [
    "else -> snap(k=99999999999999999999999999999);",
    `1:16 integer 99999999999999999999999999999 ${TOO_LARGE}`,
  ],
  ["else -> snap(k=9007199254740992)", `1:16 integer 9007199254740992 ${TOO_LARGE}`],
  [
    "else -> snap(k=8796093022208k)",
    `1:16 8796093022208k is too large: 8796093022208 ${K_TOO_LARGE}`,
  ],
  ["else -> window 9007199254740993", `1:16 integer 9007199254740993 ${TOO_LARGE}`],
  ["else -> window(4, 9007199254740992.5)", `1:19 number 9007199254740992.5 ${TOO_LARGE}`],
  [
    `else -> snap(k=1024) + quant(group=${OVERFLOW})`,
    `1:36 integer 9999999999999999…9999 ${TOO_LARGE}`,
  ],
  [
    `layers lazy(threshold=${OVERFLOW}.5) -> full`,
    `1:23 number 9999999999999999…99.5 ${TOO_LARGE}`,
  ],
  [
    "heads retrieval(top=99999999999999999999%) -> full",
    "1:21 percentage 99999999999999999999% is too large (the largest is 9007199254740991%)",
  ],
  ["layers 0..9007199254740992 -> full", `1:11 integer 9007199254740992 ${TOO_LARGE}`],
  ["layers 9007199254740992.. -> full", `1:8 integer 9007199254740992 ${TOO_LARGE}`],
  ["heads 0, 2, 99999999999999999999 -> full", `1:13 integer 99999999999999999999 ${TOO_LARGE}`],
  [
    "else -> full;\nlet budget = 8796093022208k",
    `2:14 8796093022208k is too large: 8796093022208 ${K_TOO_LARGE}`,
  ],
  [
    "let floor = -9007199254740992",
    "1:13 integer -9007199254740992 is too small (the smallest is -9007199254740991)",
  ],
  [
    "let floor = -8796093022208k",
    "1:13 -8796093022208k is too small: -8796093022208 × 1024 is below -9007199254740991 " +
    "(the smallest is -8796093022207k)",
  ],
];

Deno.test("out-of-range literals: one error at the literal, in every position", () => {
  for (const [source, error] of BAD_LITERALS) {
    assert.deepEqual(messages(errorsOf(source)), [error], source);
  }
});

Deno.test("out-of-range literals: rendered with the literal underlined", () => {
  const source = "else -> snap(k=99999999999999999999999999999);";
  const { diagnostics } = compilePolicy(source);
  assert.equal(
    renderDiagnostics("<inline>", source, diagnostics.filter((d) => d.severity === "error")),
    [
      `<inline>:1:16: error: integer 99999999999999999999999999999 ${TOO_LARGE}`,
      "  |",
      "1 | else -> snap(k=99999999999999999999999999999);",
      "  |                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    ].join("\n"),
  );
});

/** What `else -> snap(k=LITERAL)` compiles `k` to. */
function snapBudget(literal: string): unknown {
  return compileOrThrow(`else -> snap(k=${literal})`).rules[0].pipeline[0].params.k;
}

Deno.test("literals up to the edge compile to their exact values", () => {
  assert.deepEqual(snapBudget("9007199254740991"), {
    tokens: 9007199254740991,
  });
  assert.deepEqual(snapBudget("8796093022207k"), {
    tokens: 8796093022207 * 1024,
  });
  assert.deepEqual(snapBudget("4k"), { tokens: 4096 });
  assert.deepEqual(snapBudget("10%"), { fraction: 0.1 });
  assert.deepEqual(snapBudget(`${"0".repeat(400)}1024`), { tokens: 1024 });
  const plan = compileOrThrow(
    "layers lazy(threshold=0.5) -> full;\nlayers 0..9007199254740991 -> full;\nelse -> full",
  );
  assert.deepEqual(plan.detectors[0].params.threshold, 0.5);
  assert.deepEqual(plan.rules[1].layers, { kind: "indices", ranges: [[0, 9007199254740991]] });
  const constant = parsePolicy("let floor = -9007199254740991").ast.statements[0];
  assert.ok(constant.kind === "constant" && constant.value.kind === "number");
  assert.equal(constant.value.value, -9007199254740991);
});

Deno.test("decimals with more digits than a float64 holds are rounded, not refused", () => {
  const plan = compileOrThrow(
    "layers lazy(threshold=0.1000000000000000000000000000001) -> full; else -> full",
  );
  assert.equal(plan.detectors[0].params.threshold, 0.1);
  assert.deepEqual(snapBudget("0.5k"), { tokens: 512 });
});
