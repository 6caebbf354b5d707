import assert from "node:assert/strict";
import { resolve } from "node:path";
import { UserError } from "../../src/cli/errors.ts";
import { parseDepths, parseLengths } from "../../src/eval/gridSpec.ts";
import {
  defaultSuite,
  modelKindOf,
  parseSuiteYaml,
  parseTaskList,
  RULER_TASKS,
} from "../../src/eval/suite.ts";
import { PLANTED_NEEDLE_TEMPLATES, TINY_NEEDLE_TEMPLATES } from "../../src/eval/templates.ts";

Deno.test("grid: lengths with k suffix and depth ranges", () => {
  assert.deepEqual(parseLengths("1k,2k,4k"), [1024, 2048, 4096]);
  assert.deepEqual(parseLengths("4096,512,512"), [512, 4096]);
  assert.deepEqual(parseLengths(["1k", 300]), [300, 1024]);
  assert.deepEqual(parseDepths("0:100:10"), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  assert.deepEqual(parseDepths("0:100:25"), [0, 25, 50, 75, 100]);
  assert.deepEqual(parseDepths("0:100:30"), [0, 30, 60, 90]);
  assert.deepEqual(parseDepths("50,0,100"), [0, 50, 100]);
  assert.equal(parseDepths("0:100:0.1").length, 1001, "the largest grid allowed");
  assert.throws(() => parseDepths("0:100:0.09"), /makes 1112 depths; at most 1001/);
  assert.throws(() => parseDepths(Array(1002).fill(5)), /lists 1002 depths; at most 1001/);
  for (const bad of ["", "1x", "0.1k", "8"]) assert.throws(() => parseLengths(bad), UserError);
  for (const bad of ["0:100", "0:100:0", "50:10:10", "0:120:10", "abc"]) {
    assert.throws(() => parseDepths(bad), UserError, bad);
  }
});

Deno.test("suite: task lists accept repeats, commas and 'ruler'", () => {
  assert.deepEqual(parseTaskList(["needle", "ppl"]), ["needle", "ppl"]);
  assert.deepEqual(parseTaskList(["needle,ruler"]), ["needle", ...RULER_TASKS]);
  assert.deepEqual(parseTaskList(["multi-key", "multi_key"]), ["multi_key"]);
  assert.throws(() => parseTaskList(["needles"]), /unknown task 'needles'/);
  assert.throws(() => parseTaskList([""]), UserError);
});

Deno.test("suite: model kinds choose their built-in templates", () => {
  assert.equal(modelKindOf("/x/shared/models/planted-needle/"), "planted-needle");
  assert.equal(modelKindOf("models/tiny-needle"), "tiny-needle");
  assert.equal(modelKindOf("/somewhere/llama"), "tiny-needle");
  assert.deepEqual(defaultSuite("tiny-needle").templates, TINY_NEEDLE_TEMPLATES);
  assert.deepEqual(defaultSuite("planted-needle").templates, PLANTED_NEEDLE_TEMPLATES);
});

Deno.test("suite: a YAML file overrides tasks, grid, seed, samples and templates", () => {
  const yaml = `
name: my suite
seed: 7
samples: 2
lengths: [1k, 2048]
depths: "0:100:50"
tasks: [needle, ruler]
templates:
  needle: "The secret code of {key} is {value}."
  question: "\\nQ: what is the secret code of {key}?"
  answer_prefix: " A:"
multi_key: { needles: 3, share_word: 0.5 }
variable_tracking: { hops: 2 }
`;
  const base = defaultSuite("tiny-needle");
  const suite = parseSuiteYaml(yaml, "my.yaml", base);
  assert.equal(suite.name, "my suite");
  assert.equal(suite.seed, 7);
  assert.equal(suite.samples, 2);
  assert.deepEqual(suite.lengths, [1024, 2048]);
  assert.deepEqual(suite.depths, [0, 50, 100]);
  assert.deepEqual(suite.tasks, ["needle", ...RULER_TASKS]);
  assert.equal(suite.templates.needle, "The secret code of {key} is {value}.");
  assert.equal(suite.templates.question, "\nQ: what is the secret code of {key}?");
  assert.equal(suite.templates.answerPrefix, " A:");
  assert.equal(suite.templates.multiValueQuestion, TINY_NEEDLE_TEMPLATES.multiValueQuestion);
  assert.deepEqual(suite.multiKey, { needles: 3, shareWord: 0.5 });
  assert.deepEqual(suite.variableTracking, { hops: 2, chains: 2 });
  assert.deepEqual(base, defaultSuite("tiny-needle"), "the base is not modified");
  const planted = parseSuiteYaml("base: planted-needle\n", "p.yaml", base);
  // ppl.text is a path against the suite file's folder.
  const ppl = parseSuiteYaml("ppl: { from: 64, text: essay.txt }\n", "suites/s.yaml", base);
  assert.deepEqual(ppl.perplexity, { from: 64, text: resolve("suites", "essay.txt") });
  assert.equal(base.perplexity.text, undefined);
  assert.deepEqual(planted.templates, PLANTED_NEEDLE_TEMPLATES);
});

Deno.test("suite: malformed YAML files are user errors naming file and key", () => {
  const base = defaultSuite("tiny-needle");
  const cases: [string, RegExp][] = [
    ["seed: [1", /bad\.yaml: not valid YAML/],
    ["- 1\n- 2", /bad\.yaml must be a mapping/],
    ["sampels: 3", /unknown key 'sampels'/],
    ["samples: 0", /'samples' must be an integer in 1..10000/],
    ["samples: 100000000", /'samples' must be an integer in 1..10000, not 100000000/],
    ["templates: { needle: 'x {nope}' }", /templates\.needle uses \{nope\}/],
    ["templates: { qestion: 'x' }", /unknown key 'qestion'/],
    ["multi_key: { share_word: 2 }", /'share_word' must be a number in 0\.\.1/],
    ["tasks: [needle, hay]", /unknown task 'hay'/],
    ["base: llama", /'base' must be/],
    ["ppl: { text: 3 }", /bad\.yaml: ppl\.text must be the path of a text file/],
    ["ppl: { txt: a.txt }", /unknown key 'txt'/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseSuiteYaml(text, "bad.yaml", base), (e: Error) => {
      assert.ok(e instanceof UserError, `${text}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
});
