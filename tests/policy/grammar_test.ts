import assert from "node:assert/strict";
import { railroadHtml } from "../../grammar/railroad.ts";
import { policyParser } from "../../grammar/parser.ts";

const EBNF = Deno.readTextFileSync(new URL("../../grammar/policy.ebnf", import.meta.url));

Deno.test("grammar/policy.ebnf defines exactly the parser's rules", () => {
  const ebnfRules = [...EBNF.replace(/\(\*[\s\S]*?\*\)/g, "").matchAll(/^([a-z][A-Za-z]*)\s*=/gm)]
    .map((m) => m[1]).filter((r) => r !== "comment").sort();
  const parserRules = policyParser.getGAstProductions();
  assert.deepEqual(ebnfRules, Object.keys(parserRules).sort());
});

Deno.test("grammar/railroad.html is generated from the current parser (run: deno task railroad)", () => {
  const committed = Deno.readTextFileSync(new URL("../../grammar/railroad.html", import.meta.url));
  assert.equal(committed, railroadHtml());
});
