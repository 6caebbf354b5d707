/**
 * `deno task run --question …` end to end (subprocesses of `src/cli/main.ts run`, the default
 * model): the query-agnostic JSON, answers equal to one prompt of context + question under the
 * full cache, the compressed context's size under SnapKV, and the user errors.
 */
import assert from "node:assert/strict";
import { type Finished, runDeno, STACK_TRACE } from "./_helpers.ts";

/** `main.ts run ARGS` as a subprocess, the way `deno task run` starts it. */
function run(...args: string[]): Promise<Finished> {
  return runDeno(["run", "--allow-read", "--allow-env", "src/cli/main.ts", "run", ...args], {
    XDG_RUNTIME_DIR: "/tmp",
  });
}

async function json(...args: string[]) {
  const r = await run("--json", ...args);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const CONTEXT = "Tom had a red ball. The special magic number for olive-glacier is 4126573. " +
  "Then Tom went to the park and played with his friend until the sun went down.";
const QUESTIONS = [
  "\nQuestion: What is the special magic number for olive-glacier? Answer: ",
  "\nQuestion: What did Tom have? Answer: ",
];

Deno.test("run --question: agnostic answers under the full cache equal one prompt's", async () => {
  const q = await json(
    "--prompt",
    CONTEXT,
    "--question",
    QUESTIONS[0],
    "--question",
    QUESTIONS[1],
    "--max-new-tokens",
    "6",
  );
  assert.equal(q.protocol, "agnostic");
  assert.equal(q.answers.length, 2);
  for (const [i, question] of QUESTIONS.entries()) {
    const aware = await json("--prompt", CONTEXT + question, "--max-new-tokens", "6");
    assert.equal(q.context.tokens + q.answers[i].question_tokens, aware.prompt_tokens);
    assert.deepEqual(q.answers[i].tokens, aware.tokens, `question ${i + 1}`);
    assert.equal(q.answers[i].question, question);
  }
});

Deno.test("run --question: SnapKV compresses the context once, before any question", async () => {
  const q = await json(
    "--policy",
    "else -> snap(k=16, window=8)",
    "--prompt",
    CONTEXT,
    "--question",
    QUESTIONS[0],
    "--question",
    QUESTIONS[1],
    "--max-new-tokens",
    "4",
  );
  for (const layer of q.context.kv.layers) assert.ok(layer.lengths.every((n: number) => n === 16));
  assert.ok(q.context.snapshot_bytes > 0);
  q.answers.forEach((a: { kv: { layers: { lengths: number[] }[] }; question_tokens: number }) => {
    const n = 16 + a.question_tokens + 4 - 1;
    for (const layer of a.kv.layers) {
      assert.ok(layer.lengths.every((m) => m === n), `${layer.lengths}`);
    }
  });
});

Deno.test("run --question: user errors", async () => {
  for (
    const [args, pattern] of [
      [["--question", "x"], /needs a context as text/],
      [["--prompt-ids", "1,2", "--question", "x"], /needs a context as text/],
      [["--prompt", "a b", "--question", ""], /--question 1 is empty/],
      [["--chat", "a b", "--question", "x"], /has no chat template/],
    ] as [string[], RegExp][]
  ) {
    const r = await run(...args);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
  }
});
