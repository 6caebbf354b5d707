/**
 * `eval` and `check --explain` on a real GGUF checkpoint (SmolLM2-135M-Instruct, 30 layers,
 * 3 KV heads), through the tasks with their permissions, as users run them. Skipped, visibly,
 * when `deno task setup` has not fetched the model. Short prompts keep llvmpipe runs short.
 */
import assert from "node:assert/strict";
import { runDeno, STACK_TRACE } from "./_helpers.ts";
import { smollm2Missing } from "../runtime/_smollm2.ts";

const MODEL = "models/smollm2-135m-instruct";
const NEEDLE = ["--task", "needle", "--model", MODEL, "--lengths", "256", "--depths", "50"];

interface EvalJson {
  model: string;
  suite: { name: string };
  results: { policy: string; task: string; length: number; depth: number; samples: number }[];
  outputs: { output: string }[];
}

async function evalJson(extra: string[]): Promise<EvalJson> {
  const run = await runDeno([
    "task",
    "-q",
    "eval",
    ...NEEDLE,
    "--samples",
    "1",
    "--policy",
    "full",
    "--json",
    ...extra,
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.doesNotMatch(run.stderr, STACK_TRACE);
  return JSON.parse(run.stdout);
}

function assertOneNeedleRow(json: EvalJson): void {
  assert.equal(json.model, "SmolLM2-135M-Instruct.Q4_1.gguf");
  assert.equal(json.suite.name, "pretrained default", "a GGUF gets RULER's templates");
  assert.equal(json.results.length, 1, "one row per policy × cell");
  const [row] = json.results;
  assert.equal(row.policy, "full");
  assert.equal(row.task, "needle");
  assert.equal(row.length, 256);
  assert.equal(row.depth, 50);
  assert.equal(row.samples, 1);
  assert.equal(json.outputs.length, 1);
  assert.equal(typeof json.outputs[0].output, "string");
}

// (The raw-prompt path is the same runner as on every other model; one SmolLM2 eval run costs
// ~20 s here, so only the chat form, which only a GGUF with a template has, runs on it.)
Deno.test({
  name:
    "eval --chat on a GGUF folder: RULER's templates in the model's chat template, one JSON row",
  ignore: smollm2Missing(),
  async fn() {
    assertOneNeedleRow(await evalJson(["--chat"]));
  },
});

Deno.test({
  name: "check --explain --model on a GGUF folder: a 30-layer × 3-head table",
  ignore: smollm2Missing(),
  async fn() {
    const run = await runDeno([
      "task",
      "-q",
      "check",
      "--explain",
      "--model",
      MODEL,
      // a short prompt: the table's shape is the point, and each prompt token costs ~25 ms here
      "--prompt",
      "The grass is green. The sky is blue. The special magic number is 9792168. ".repeat(4),
      "else -> snap(k=64)",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const head = run.stdout.match(
      /smollm2-135m-instruct: 30 layers × 3 KV heads, (\d+)-token prompt/,
    );
    assert.ok(head && Number(head[1]) < 100, `the given prompt, not the demo's: ${head?.[0]}`);
    assert.match(run.stdout, /\nlayer\s+detectors\s+KV head 0\s+KV head 1\s+KV head 2\n/);
    const rows = run.stdout.split("\n").filter((line) => /^\d+\s+r1 snap 64 → 64/.test(line));
    assert.deepEqual(rows.map((line) => Number(line.split(/\s+/)[0])), [...Array(30).keys()]);
  },
});
