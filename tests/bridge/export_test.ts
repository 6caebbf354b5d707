/**
 * `deno task export --to kvpress`: the script it writes runs under kvpress and generates what
 * kvpolicy generates for the same policy; bad input is a clear error from the exporter or from the
 * bridge inside the script.
 */

import assert from "node:assert/strict";
import { ROOT, runDeno, STACK_TRACE } from "../cli/_helpers.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { kvpressMissing, runBridge } from "./_kvpress.ts";

const IDS = Array.from({ length: 96 }, (_, i) => (i * 37 + 11) % 300).join(",");

Deno.test("export: errors for a bad target, a bad policy, plugins and a bad --out", async () => {
  const cases: [string[], RegExp][] = [
    [["--to", "vllm", "snapkv"], /the one target is kvpress/],
    [["snapkv"], /--to \(missing\)/],
    [["--to", "kvpress", "else -> snap(k=);"], /inline.*:1:/s],
    [["--to", "kvpress", 'use "./x.ts"; else -> full;'], /kvpress cannot run kvpolicy plugins/],
    [["--to", "kvpress", "snapkv", "--out", "/etc/x.py"], /export --out/],
    [["--to", "kvpress", "snapkv", "streaming"], /exactly one policy/],
    [["--to", "kvpress", "razor"], /'retrieval', which is found per model: give --model/],
    [
      ["--to", "kvpress", "razor-lazy", "--model", "models/planted-needle"],
      /export: the 'lazy' detector decides per prompt/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = await runDeno(["task", "export", ...args]);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, pattern, args.join(" "));
    assert.doesNotMatch(r.stderr, STACK_TRACE);
  }
});

Deno.test({
  name: "export --to kvpress: the script runs on kvpress and generates kvpolicy's tokens",
  ignore: sharedMissing() || kvpressMissing("running an exported script"),
  async fn() {
    const out = `out/export-test-${crypto.randomUUID().slice(0, 8)}.py`;
    const policy = "else -> snap(k=40%, window=8, pool=5, reduce=avg) + chunkkv(chunk=10);";
    try {
      const e = await runDeno(["task", "export", "--to", "kvpress", policy, "--out", out]);
      assert.equal(e.code, 0, e.stderr);
      const model = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
      const theirs = await runBridge([
        out,
        "--model",
        model,
        "--prompt-ids",
        IDS,
        "--max-new-tokens",
        "8",
        "--json",
      ]);
      assert.equal(theirs.code, 0, theirs.stderr);
      const ours = await runDeno([
        "task",
        "run",
        "--model",
        model,
        "--policy",
        policy,
        "--prompt-ids",
        IDS,
        "--max-new-tokens",
        "8",
        "--json",
      ]);
      assert.equal(ours.code, 0, ours.stderr);
      assert.deepEqual(JSON.parse(theirs.stdout).tokens, JSON.parse(ours.stdout).tokens);
      // A rule kvpress cannot express: the script stops with the bridge's message, exit 1.
      const h2o = `${out}.h2o.py`;
      assert.equal(
        (await runDeno(["task", "export", "--to", "kvpress", "h2o", "--out", h2o])).code,
        0,
      );
      const refused = await runBridge([h2o, "--model", model, "--prompt-ids", IDS]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /error: rule `else -> h2o\(heavy=10%, recent=10%\)` \(line 6\): .*No exact counterpart/,
      );
      assert.doesNotMatch(refused.stderr, /Traceback/);
      // A model kvpress cannot load, and ids outside the vocabulary.
      const noModel = await runBridge([out, "--model", `${ROOT}policies`, "--prompt-ids", IDS]);
      assert.equal(noModel.code, 1);
      assert.match(noModel.stderr, /error: .*policies/);
      const badIds = await runBridge([out, "--model", model, "--prompt-ids", "1,2,300"]);
      assert.equal(badIds.code, 1);
      assert.match(badIds.stderr, /id 300 is outside the vocabulary/);
    } finally {
      for (const f of [out, `${out}.h2o.py`]) await Deno.remove(`${ROOT}${f}`).catch(() => {});
    }
  },
});
