/**
 * stories260K (a real pretrained llama2.c model in HF format, `shared/models/stories260K`): the
 * GPU decode loop's 200 greedy tokens from BOS equal the CPU reference's, which
 * tests/model/stories260K_test.ts cross-checks against an independent llama2.c implementation.
 * Like llama2.c's `run -t 0 -n 200`: BOS at position 0, up to 200 new tokens, stop at BOS.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { withEngine } from "./_helpers.ts";

const STEPS = 200;
const BOS = 1;

Deno.test({
  name: "runtime: stories260K greedy 200 tokens from BOS equal the CPU reference's",
  ignore: sharedMissing(),
  async fn() {
    await withEngine(`${SHARED_DIR}/models/stories260K`, async (engine) => {
      const cpu = new CpuReferenceModel(engine.weights);
      const expected: number[] = [];
      let token = BOS;
      while (expected.length < STEPS) {
        const [logits] = cpu.forward([token]);
        token = argmax(logits);
        expected.push(token);
        if (token === BOS) break;
      }
      assert.ok(expected.length > 100 && new Set(expected).size > 30, "a real continuation");

      const r = await engine.generate({
        promptIds: [BOS],
        maxNewTokens: STEPS,
        stopIds: [BOS],
        readEvery: 32,
      });
      assert.deepEqual(r.tokens, expected);
      assert.equal(r.stopReason, expected.at(-1) === BOS ? "stop" : "length");
    });
  },
});
