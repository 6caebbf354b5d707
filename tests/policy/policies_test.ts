import assert from "node:assert/strict";
import { compilePolicy } from "../../src/plan/compile.ts";
import { formatPolicy } from "../../src/policy/format.ts";

const DIR = new URL("../../policies/", import.meta.url);
const files = [...Deno.readDirSync(DIR)].filter((e) => e.name.endsWith(".kvp")).map((e) => e.name)
  .sort();

Deno.test("policies/ has one policy per method and at least two combinations", () => {
  for (
    const name of [
      "full",
      "streaming",
      "snapkv",
      "h2o",
      "pyramidkv",
      "simlayerkv",
      "razor",
      "duo",
      "quant4",
    ]
  ) assert.ok(files.includes(`${name}.kvp`), `${name}.kvp is missing`);
  assert.ok(files.length >= 11);
});

for (const name of files) {
  Deno.test(`policies/${name}: checks clean, is canonical, is named after its file, cites its source`, () => {
    const text = Deno.readTextFileSync(new URL(name, DIR));
    const result = compilePolicy(text, name);
    assert.deepEqual(result.diagnostics, []);
    assert.ok(result.plan);
    assert.equal(result.plan.name, name.replace(/\.kvp$/, ""));
    assert.equal(formatPolicy(result.ast), text);
    assert.match(text, /^# /, "starts with a comment header");
  });
}
