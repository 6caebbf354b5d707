/**
 * Which checkpoints `eval --resume` goes on from (`src/eval/checkpoint.ts`): the same model and
 * suite up to the grid's extent, whatever the order of the header's keys; anything that shapes a
 * prompt must match, and a file that is not a checkpoint is refused.
 */
import assert from "node:assert/strict";
import { checkpointHeader, openCheckpoint, sameRun } from "../../src/eval/checkpoint.ts";
import { defaultSuite } from "../../src/eval/suite.ts";
import { UserError } from "../../src/userError.ts";

const suite = defaultSuite("pretrained");
const header = checkpointHeader("/models/m.gguf", suite);

Deno.test("checkpoint: the same run up to the grid's lengths, depths, samples and tasks", () => {
  const wider = checkpointHeader("/models/m.gguf", {
    ...suite,
    lengths: [...suite.lengths, 8192],
    depths: [50],
    samples: suite.samples + 4,
    tasks: ["needle"],
  });
  assert.ok(sameRun(header, wider));
  // Key order does not matter (a header written by another version of the code).
  const parsed = JSON.parse(header);
  const reordered = JSON.stringify({
    suite: Object.fromEntries(Object.entries(parsed.suite).reverse()),
    model: parsed.model,
    kvpolicy_eval_checkpoint: 1,
  });
  assert.ok(sameRun(reordered, header));
});

Deno.test("checkpoint: another model, seed, template or chat setting is another run", () => {
  for (
    const other of [
      checkpointHeader("/models/other.gguf", suite),
      checkpointHeader("/models/m.gguf", { ...suite, seed: suite.seed + 1 }),
      checkpointHeader("/models/m.gguf", { ...suite, chat: !suite.chat }),
      checkpointHeader("/models/m.gguf", {
        ...suite,
        templates: { ...suite.templates, needle: "The key {key} is {value}." },
      }),
      checkpointHeader("/models/m.gguf", { ...suite, multiValue: { values: 9 } }),
      "not json",
      "{}",
      JSON.stringify({ kvpolicy_eval_checkpoint: 2, model: "/models/m.gguf", suite }),
    ]
  ) {
    assert.ok(!sameRun(other, header), other.slice(0, 80));
  }
});

Deno.test("checkpoint: resuming rewrites the file with this run's header and every outcome read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-checkpoint-" });
  try {
    const path = `${dir}/outcomes.jsonl`;
    const outcome = { policy: "full", score: 1 };
    await Deno.writeTextFile(
      path,
      `${header}\n${JSON.stringify({ key: "a", outcome })}\n{"key": "b", "outc`,
    );
    const wider = checkpointHeader("/models/m.gguf", { ...suite, samples: suite.samples + 1 });
    const cp = openCheckpoint(path, wider, true);
    assert.deepEqual([...cp.done.keys()], ["a"]);
    const lines = (await Deno.readTextFile(path)).trim().split("\n");
    assert.deepEqual(lines, [wider, JSON.stringify({ key: "a", outcome })]);
    await Deno.writeTextFile(path, "hello\n");
    assert.throws(() => openCheckpoint(path, header, true), UserError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
