/**
 * What `GenerationResult.timing` counts (SnapKV/kvpress accounting): the press runs inside the
 * prefill stage, so its time shows in `prefillMs` and `pressMs`, never in the decode rate, and
 * the decode rate counts only the tokens generated after the press. A press that waits a known
 * time makes the split visible; runs on the bundled `models/tiny-needle` (no ../shared needed).
 */
import assert from "node:assert/strict";
import { withEngine } from "./_helpers.ts";
import { decodeSubmissions } from "../../src/runtime/workSizes.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;
const PRESS_WAIT_MS = 150;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

Deno.test("runtime: press time is prefill time, the decode rate counts only later tokens", async (t) => {
  await withEngine(MODEL_DIR, async (engine) => {
    const promptIds = Array.from({ length: 40 }, (_, i) => 5 + (i * 37) % 200);
    for (const firstStep of [false, true]) {
      await t.step(
        firstStep ? "with a first-step observation" : "prompt observation only",
        async () => {
          const maxNew = 12;
          const r = await engine.generate({
            promptIds,
            maxNewTokens: maxNew,
            stopIds: [],
            readEvery: 4,
            observe: { promptWindow: 4, firstStep },
            afterPrefill: () => sleep(PRESS_WAIT_MS),
          });
          const t = r.timing;
          assert.equal(r.tokens.length, maxNew);
          assert.ok(t.pressMs >= PRESS_WAIT_MS - 5, `pressMs ${t.pressMs}`);
          assert.ok(t.prefillMs >= t.ttftMs + t.pressMs - 1, JSON.stringify(t));
          // Tokens after the prefill stage: all but the first (and the observed step's).
          const after = maxNew - (firstStep ? 2 : 1);
          const counted = (t.decodeTokensPerSecond * t.decodeMs) / 1000;
          assert.ok(Math.abs(counted - after) < 1e-6, `counted ${counted}, expected ${after}`);
          assert.ok(t.decodeMs < PRESS_WAIT_MS * 20, "decode time is finite and measured");
          assert.ok(
            Math.abs(t.prefillTokensPerSecond - promptIds.length / (t.prefillMs / 1000)) < 1e-6,
          );
        },
      );
    }
    await t.step("no press: pressMs is 0", async () => {
      const r = await engine.generate({ promptIds, maxNewTokens: 3, stopIds: [] });
      assert.equal(r.timing.pressMs, 0);
      assert.ok(r.timing.prefillMs >= r.timing.ttftMs);
    });
  });
});

Deno.test("runtime: a read batch is one command buffer on CPU adapters, 8 steps each on GPUs", () => {
  assert.deepEqual(decodeSubmissions(64, true), [64]);
  assert.deepEqual(decodeSubmissions(64, false), [8, 8, 8, 8, 8, 8, 8, 8]);
  assert.deepEqual(decodeSubmissions(19, false), [8, 8, 3]);
  assert.deepEqual(decodeSubmissions(3, false), [3]);
  assert.deepEqual(decodeSubmissions(1, true), [1]);
});
