/**
 * The real model through `deno task` (with the tasks' own permissions) on SmolLM2-135M-Instruct:
 * a chat answer that stops at the end of the assistant's turn, and `run --json`'s load report
 * (README's own commands, setup and the needle demos included, run in `readme_test.ts`). Skipped
 * visibly when the model has not been fetched (`.ci/run` fetches it).
 */
import assert from "node:assert/strict";
import { smollm2Missing } from "../runtime/_smollm2.ts";
import { runDeno, STACK_TRACE } from "./_helpers.ts";

Deno.test({
  name: "run --chat --json on SmolLM2 answers, stops at <|im_end|> and reports the load",
  ignore: smollm2Missing(),
  async fn() {
    const r = await runDeno([
      "task",
      "-q",
      "run",
      "--model",
      "models/smollm2-135m-instruct",
      "--chat",
      "What is the capital of France?",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    const out = JSON.parse(r.stdout);
    assert.match(out.text, /Paris/);
    assert.equal(out.stop_reason, "stop", `stopped by ${out.stop_reason}: ${out.text}`);
    assert.equal(out.tokens.at(-1), 2, "the last token is <|im_end|>");
    assert.ok(out.load.ms > 0 && out.load.peak_rss_bytes > out.load.weight_bytes);
    // Q4_1/Q8_0 matrices as block-int8 (40 bytes per 32 weights), the 61 norm vectors in F32.
    assert.equal(
      out.load.weight_bytes,
      (30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 576 * 1536) + 49152 * 576) * 40 / 32 +
        4 * 576 * (2 * 30 + 1),
    );
  },
});

Deno.test({
  name: "run: --system without --chat, and --chat on a model without a template, are clear errors",
  async fn() {
    const a = await runDeno(["task", "-q", "run", "--system", "be brief", "--prompt", "hi"]);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /--system goes with --chat/);
    const b = await runDeno(["task", "-q", "run", "--chat", "hi"]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /has no chat template/);
    assert.doesNotMatch(a.stderr + b.stderr, STACK_TRACE);
  },
});
