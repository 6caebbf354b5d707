/**
 * `generateWithPlan(…, warmUp = true)` runs the plan once, untimed, on a short prefix, so that the
 * timed generation compiles no kernel (shader compilation is lazy and would land in prefill or
 * decode time); the warm-up happens once per plan and engine. Counted through the device's
 * pipeline cache, on the bundled tiny-needle.
 */
import assert from "node:assert/strict";
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { generateWithPlan } from "../../src/runtime/planGeneration.ts";
import { withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

/** Records the device's pipeline count when each `engine.generate` call starts and ends. */
function spyGenerate(engine: Engine): Array<[number, number]> {
  const calls: Array<[number, number]> = [];
  const generate = engine.generate.bind(engine);
  engine.generate = async (req) => {
    const call: [number, number] = [engine.ctx.pipelineCount, -1];
    calls.push(call);
    try {
      return await generate(req);
    } finally {
      call[1] = engine.ctx.pipelineCount;
    }
  };
  return calls;
}

Deno.test("runtime: a warmed-up plan compiles nothing inside the timed generation", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const calls = spyGenerate(engine);
    const promptIds = Array.from({ length: 300 }, (_, i) => 3 + (i * 29) % 500);
    const plan = compileOrThrow(
      "layers 0..1 -> snap(k=40) + quant(bits=4); else -> h2o(heavy=24, recent=24)",
    );
    const req = { promptIds, maxNewTokens: 6, stopIds: [] };
    const first = await generateWithPlan(engine, plan, req, undefined, true);
    assert.equal(first.result.tokens.length, 6);
    assert.equal(calls.length, 2, "one warm-up run, then the timed one");
    const [warm, timed] = calls;
    assert.ok(warm[1] > warm[0], "the warm-up compiled the plan's kernels");
    assert.equal(timed[1], timed[0], "the timed run compiled nothing new");
    await generateWithPlan(engine, plan, req, undefined, true);
    assert.equal(calls.length, 3, "no second warm-up for the same plan on the same engine");
    await generateWithPlan(engine, compileOrThrow("else -> window(sink=4, recent=60)"), req);
    assert.equal(calls.length, 4, "without warmUp, no extra run");
  });
});
