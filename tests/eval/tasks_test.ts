import assert from "node:assert/strict";
import { KEY_A, KEY_B } from "../../src/eval/haystack.ts";
import { type EvalSample, type GenerationSample, taskContext } from "../../src/eval/sample.ts";
import { buildSuiteSamples, buildTaskSamples } from "../../src/eval/samples.ts";
import { defaultSuite, type EvalSuite } from "../../src/eval/suite.ts";
import { multiKeySample } from "../../src/eval/tasks/multiKey.ts";
import { tinyNeedleTokenizer } from "./_fakeEngine.ts";
import { UserError } from "../../src/userError.ts";

const tokenizer = await tinyNeedleTokenizer();
const context = taskContext(tokenizer);

function suiteWith(changes: Partial<EvalSuite>): EvalSuite {
  return { ...defaultSuite("tiny-needle"), ...changes };
}

function generation(samples: EvalSample[]): GenerationSample[] {
  return samples.map((s) => {
    assert.equal(s.kind, "generate");
    return s as GenerationSample;
  });
}

const ALL_TASKS: EvalSuite["tasks"] = [
  "needle",
  "single_key",
  "multi_key",
  "multi_value",
  "variable_tracking",
  "ppl",
  "hitrate",
];

Deno.test("tasks: same seed gives identical prompts, another seed different ones", () => {
  const suite = suiteWith({ tasks: ALL_TASKS, lengths: [300], depths: [0, 50], samples: 2 });
  const a = buildSuiteSamples(tokenizer, suite);
  const b = buildSuiteSamples(tokenizer, structuredClone(suite));
  assert.deepEqual(a, b);
  const c = buildSuiteSamples(tokenizer, { ...suite, seed: suite.seed + 1 });
  assert.equal(a.length, c.length);
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [a[i], c[i]];
    const idsX = x.kind === "score" ? x.ids : x.promptIds;
    const idsY = y.kind === "score" ? y.ids : y.promptIds;
    assert.notDeepEqual(idsX, idsY, `sample ${i} (${x.task}) should change with the seed`);
  }
  // Samples of one cell differ from each other, and a cell does not depend on the others.
  assert.notDeepEqual(a[0], a[1]);
  const alone = buildSuiteSamples(tokenizer, { ...suite, tasks: ["needle"], depths: [50] });
  assert.deepEqual(alone[0], a.find((s) => s.task === "needle" && s.depth === 50));
});

Deno.test("tasks: prompts fit their context length within a few percent (real tokenizer)", () => {
  const suite = suiteWith({ tasks: ALL_TASKS, lengths: [512, 2048], depths: [0, 100], samples: 2 });
  for (const sample of buildSuiteSamples(tokenizer, suite)) {
    const ids = sample.kind === "score" ? sample.ids : sample.promptIds;
    assert.equal(ids[0], 1, "BOS first");
    const total = ids.length + (sample.kind === "score" ? 0 : sample.maxNewTokens);
    assert.ok(total <= sample.length, `${sample.task}@${sample.length}: ${total} tokens`);
    // The prompt's target is the length minus the answer's budget; it lands within 3 % of it.
    const target = sample.length - (sample.kind === "score" ? 0 : sample.maxNewTokens);
    assert.ok(
      ids.length >= target * 0.97,
      `${sample.task}@${sample.length}: only ${ids.length} prompt tokens for ${target}`,
    );
    if (sample.kind === "score") assert.equal(ids.length, sample.length);
    if (sample.kind !== "score") {
      assert.deepEqual(tokenizer.encode(tokenizer.decode(ids, { skipSpecialTokens: true })), ids);
    }
  }
});

Deno.test("needle: the needle sits at the requested depth (± one sentence), question last", () => {
  const depths = [0, 10, 25, 50, 75, 90, 100];
  const suite = suiteWith({ lengths: [1024], depths, samples: 2 });
  const samples = generation(buildTaskSamples(tokenizer, suite, "needle"));
  assert.equal(samples.length, depths.length * 2);
  for (const s of samples) {
    const value = s.references[0];
    assert.match(value, /^\d{7}$/);
    assert.equal(s.expected, `${value}.`);
    assert.equal(s.scoring, "exact_number");
    const needle = new RegExp(`The special magic number for ([a-z]+-[a-z]+) is ${value}\\.`).exec(
      s.promptText,
    );
    assert.ok(needle, "needle sentence present");
    assert.ok(
      s.promptText.endsWith(
        `\nQuestion: What is the special magic number for ${needle[1]}? Answer: `,
      ),
    );
    const haystack = s.promptText.slice(0, s.promptText.lastIndexOf("\nQuestion:"));
    const filler = context.countTokens(haystack) - context.countTokens(" " + needle[0]);
    const before = context.countTokens(haystack.slice(0, needle.index));
    const target = (s.depth! / 100) * filler;
    assert.ok(
      before <= target + 3 && before >= target - 30,
      `depth ${s.depth}%: needle after ${before} of ${filler} filler tokens`,
    );
  }
});

Deno.test("multi-key: distractor needles, 40% of them share one word with the asked key", () => {
  const suite = suiteWith({ lengths: [400], samples: 1 });
  let shared = 0;
  let distractors = 0;
  for (let i = 0; i < 200; i++) {
    const s = multiKeySample(context, suite, 400, i);
    const keys = [
      ...s.promptText.matchAll(/The special magic number for ([a-z]+-[a-z]+) is (\d{7})\./g),
    ];
    assert.equal(keys.length, 4);
    assert.equal(new Set(keys.map((k) => k[1])).size, 4, "distinct keys");
    const asked = /What is the special magic number for ([a-z]+-[a-z]+)\?/.exec(s.promptText)![1];
    const answer = keys.find((k) => k[1] === asked)!;
    assert.deepEqual(s.references, [answer[2]]);
    const [a, b] = asked.split("-");
    for (const k of keys.filter((k) => k[1] !== asked)) {
      const [x, y] = k[1].split("-");
      assert.ok(KEY_A.includes(x) && KEY_B.includes(y));
      distractors++;
      if (x === a || y === b) shared++;
    }
  }
  const share = shared / distractors;
  assert.ok(share > 0.33 && share < 0.47, `share ${share}`);
});

Deno.test("multi-value: every value under the asked key, in order, in the README's question", () => {
  const suite = suiteWith({ lengths: [600], samples: 3 });
  for (const s of generation(buildTaskSamples(tokenizer, suite, "multi_value"))) {
    assert.equal(s.references.length, 3);
    assert.equal(s.expected, `${s.references.join(", ")}.`);
    const key = /What are all the special magic numbers for ([a-z]+-[a-z]+)\? Answer: $/.exec(
      s.promptText,
    )![1];
    const found = [...s.promptText.matchAll(new RegExp(`number for ${key} is (\\d{7})`, "g"))];
    assert.deepEqual(found.map((m) => m[1]), s.references);
    assert.equal(s.scoring, "string_match_all");
  }
});

Deno.test("variable tracking: a chain VAR A = v, VAR B = VAR A, ... asked by its value", () => {
  const suite = suiteWith({ lengths: [600], samples: 3 });
  for (const s of generation(buildTaskSamples(tokenizer, suite, "variable_tracking"))) {
    const value =
      /Which variables are assigned the value (\d{5})\? Answer: $/.exec(s.promptText)![1];
    assert.equal(s.references.length, 4);
    assert.ok(s.promptText.includes(`VAR ${s.references[0]} = ${value}.`));
    let last = s.promptText.indexOf(`VAR ${s.references[0]} = ${value}.`);
    for (let i = 1; i < 4; i++) {
      const at = s.promptText.indexOf(`VAR ${s.references[i]} = VAR ${s.references[i - 1]}.`);
      assert.ok(at > last, "chain in order");
      last = at;
    }
    assert.equal(
      (s.promptText.match(/VAR [A-Z]{5} = \d{5}\./g) ?? []).length,
      2,
      "one distractor chain",
    );
    assert.equal(s.expected, `${s.references.join(", ")}.`);
  }
});

Deno.test("planted-needle template: the question ends with the needle's own prefix", () => {
  const suite = { ...defaultSuite("planted-needle"), lengths: [300], depths: [50], samples: 1 };
  const [s] = generation(buildTaskSamples(tokenizer, suite, "needle"));
  const key = /What is the special magic number for ([a-z]+-[a-z]+)\?/.exec(s.promptText)![1];
  assert.ok(s.promptText.endsWith(`? Answer: The special magic number for ${key} is`));
  assert.equal(s.expected, ` ${s.references[0]}.`);
});

Deno.test("ppl text: consecutive windows of the file, BOS first, each exactly the length", () => {
  const dir = Deno.makeTempDirSync({ prefix: "kvpolicy-ppl-" });
  try {
    const path = `${dir}/text.txt`;
    // Natural text, not the filler grammar: the windows come from the file alone.
    const text = Array.from(
      { length: 60 },
      (_, i) => `Paragraph ${i}: the quick brown fox jumps over the lazy dog near river ${i * 7}.`,
    ).join("\n");
    Deno.writeTextFileSync(path, text);
    const suite = suiteWith({
      tasks: ["ppl"],
      lengths: [100, 200],
      samples: 3,
      perplexity: { from: 50, text: path },
    });
    const samples = buildTaskSamples(tokenizer, suite, "ppl");
    assert.equal(samples.length, 6);
    const body = tokenizer.encode(text, { addSpecialTokens: false });
    for (const s of samples) {
      assert.equal(s.kind, "score");
      if (s.kind !== "score") continue;
      assert.equal(s.ids.length, s.length);
      assert.equal(s.ids[0], 1, "BOS first");
      assert.equal(s.from, 50);
      const run = s.length - 1;
      assert.deepEqual(s.ids.slice(1), body.slice(s.index * run, (s.index + 1) * run));
    }
    // The first window decodes to the file's opening words.
    assert.ok(
      tokenizer.decode(samples[0].kind === "score" ? samples[0].ids : [], {
        skipSpecialTokens: true,
      }).startsWith("Paragraph 0: the quick brown fox"),
    );
    // Too short for the samples asked: a user error naming the file and its token count.
    assert.throws(
      () => buildTaskSamples(tokenizer, { ...suite, samples: 100 }, "ppl"),
      (e: Error) =>
        e instanceof UserError && e.message.includes(path) &&
        e.message.includes(`holds ${body.length} tokens`),
    );
    assert.throws(
      () =>
        buildTaskSamples(
          tokenizer,
          { ...suite, perplexity: { from: 1, text: `${dir}/missing.txt` } },
          "ppl",
        ),
      (e: Error) => e instanceof UserError && /cannot read '.*missing\.txt'/.test(e.message),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
