/**
 * Every policy the project ships (`policies/`, `docs/reproduction/`) runs end to end: a short
 * greedy generation on models/planted-needle under the policy, so that a shipped policy the
 * executor refuses (as `lazy-quant` once was) fails here.
 */
import assert from "node:assert/strict";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/planted-needle", import.meta.url).pathname;
const DIRS = ["../../policies/", "../../docs/reproduction/"];

Deno.test("every shipped policy generates on planted-needle", async (t) => {
  const files: URL[] = [];
  for (const dir of DIRS) {
    for (const e of Deno.readDirSync(new URL(dir, import.meta.url))) {
      if (e.name.endsWith(".kvp")) files.push(new URL(dir + e.name, import.meta.url));
    }
  }
  files.sort((a, b) => a.pathname.localeCompare(b.pathname));
  assert.ok(files.length >= 25, `${files.length} shipped policies`);
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 400, 3).ids;
    for (const file of files) {
      const name = file.pathname.split("/").slice(-2).join("/");
      await t.step(name, async () => {
        const r = await runPolicy(engine, await Deno.readTextFile(file), ids, 4);
        assert.equal(r.tokens.length, 4);
        assert.ok(r.kv.keptBytes > 0 && r.kv.keptBytes <= r.kv.fullBytes, name);
      });
    }
    // lazy-quant's combination on layers that really are lazy (threshold 0 flags every layer):
    // SimLayerKV's window cut at the first decoding step, then growing, stored 4-bit (KIVI).
    await t.step("window + quant on lazy layers", async () => {
      const policy = "layers lazy(threshold=0) -> window(sink=4, recent=60) + quant(bits=4);";
      const r = await runPolicy(engine, policy + " else -> quant(bits=4)", ids, 4);
      for (const layer of r.kv.layers) assert.deepEqual(layer.lengths, [64 + 2, 64 + 2]);
      const quant = await runPolicy(engine, "else -> quant(bits=4)", ids, 4);
      const window = await runPolicy(engine, policy.replace(" + quant(bits=4)", ""), ids, 4);
      // fewer bytes than either the window alone (f32) or the whole prompt quantised
      assert.ok(
        r.kv.keptBytes < window.kv.keptBytes,
        `${r.kv.keptBytes} vs ${window.kv.keptBytes}`,
      );
      assert.ok(r.kv.keptBytes < quant.kv.keptBytes, `${r.kv.keptBytes} vs ${quant.kv.keptBytes}`);
    });
  } finally {
    engine.close();
  }
});
