/**
 * Ground truth on models/planted-needle (heads set by construction; README numbers): what each
 * method keeps decides whether the needle comes back, on the real runtime.
 */
import assert from "node:assert/strict";
import { Engine } from "../../src/runtime/engine.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/planted-needle", import.meta.url).pathname;

Deno.test("planted-needle, 512-token prompts, budget 64 (8×): full and snap(pool=21) answer; window and snap(pool=7) do not", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const tok = engine.tokenizer!;
    const answered: Record<string, number> = {};
    const policies = [
      "else -> full",
      "else -> window(sink=4, recent=60)",
      "else -> snap(k=64, pool=21)",
      "else -> snap(k=64, pool=7)",
    ];
    for (let seed = 0; seed < 4; seed++) {
      const d = demoPrompt(tok, "copy", 512, seed);
      for (const policy of policies) {
        const r = await runPolicy(engine, policy, d.ids, 8);
        const text = tok.decode(r.tokens, { skipSpecialTokens: true });
        answered[policy] = (answered[policy] ?? 0) + (text.includes(d.answer) ? 1 : 0);
        if (policy !== "else -> full") {
          // 8× compression after prefill: exactly 64 entries per KV head.
          for (const layer of r.trace) for (const h of layer.heads) assert.equal(h.kept.length, 64);
        }
      }
    }
    assert.deepEqual(answered, {
      "else -> full": 4,
      "else -> window(sink=4, recent=60)": 0,
      "else -> snap(k=64, pool=21)": 4,
      "else -> snap(k=64, pool=7)": 0,
    });
  } finally {
    engine.close();
  }
});

Deno.test("planted-needle: the lazy detector flags exactly layers 0, 2, 3 on a 2048-token needle prompt", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const d = demoPrompt(engine.tokenizer!, "copy", 2048, 3);
    // README: last query's mass on the first 4 + last 1024 positions: 1.000, 0.252, 1.000, 1.000.
    const r = await runPolicy(
      engine,
      "layers lazy(threshold=0.9) -> window(sink=4, recent=1024); else -> full",
      d.ids,
      2,
    );
    assert.deepEqual(r.trace.map((l) => l.lazy), [true, false, true, true]);
    const scores = r.trace.map((l) => l.lazy_score!);
    for (const l of [0, 2, 3]) assert.ok(scores[l] > 0.99, `layer ${l}: ${scores[l]}`);
    assert.ok(scores[1] < 0.5, `layer 1: ${scores[1]}`);
    // Lazy layers keep sink + recent; layer 1 keeps everything.
    assert.equal(r.trace[1].heads[0].kept.length, d.ids.length);
    assert.equal(r.trace[0].heads[0].kept.length, 4 + 1024 - 1); // the first generated token is the newest
  } finally {
    engine.close();
  }
});
