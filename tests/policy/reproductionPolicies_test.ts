import assert from "node:assert/strict";
import { compilePolicy } from "../../src/plan/compile.ts";
import { formatPolicy } from "../../src/policy/format.ts";
import { defaultSuite, parseSuiteYaml } from "../../src/eval/suite.ts";

const DIR = new URL("../../docs/reproduction/", import.meta.url);

for (const entry of [...Deno.readDirSync(DIR)].filter((e) => e.name.endsWith(".kvp"))) {
  Deno.test(`docs/reproduction/${entry.name}: checks clean, is canonical, named after its file`, () => {
    const text = Deno.readTextFileSync(new URL(entry.name, DIR));
    const result = compilePolicy(text, entry.name);
    assert.deepEqual(result.diagnostics, []);
    assert.equal(result.plan?.name, entry.name.replace(/\.kvp$/, ""));
    assert.equal(formatPolicy(result.ast), text);
  });
}

for (const entry of [...Deno.readDirSync(DIR)].filter((e) => e.name.endsWith(".yaml"))) {
  Deno.test(`docs/reproduction/${entry.name}: parses as an eval suite`, () => {
    const text = Deno.readTextFileSync(new URL(entry.name, DIR));
    const suite = parseSuiteYaml(text, entry.name, defaultSuite("tiny-needle"));
    assert.ok(suite.tasks.length > 0 && suite.lengths.length > 0);
  });
}
