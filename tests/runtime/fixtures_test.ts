/**
 * GPU runtime vs the five tiny Hugging Face fixtures (`shared/fixtures/*`, see its README):
 * logits at all 48 positions through chunked prefill (an odd chunk, so chunk boundaries fall
 * mid-prompt and later chunks attend to cached entries), and the 16-token greedy continuation
 * through the GPU decode loop with different readback batch sizes.
 */
import assert from "node:assert/strict";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { GREEDY, maxAbsDiff, seededRandom, withEngine } from "./_helpers.ts";
import { writeRandomModel } from "./_checkpoint.ts";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";

const FIXTURES = [
  "llama-gqa-f32",
  "llama-bf16-sharded",
  "qwen2-tied-f16",
  "mistral-f32",
  "llama-tied-linear-rope-f32",
];

/** Suggested float32 tolerance of shared/fixtures/README.md. */
const LOGIT_TOLERANCE = 1e-4;

/** The parts of golden.json these tests read. */
interface FixtureGolden {
  input_ids: number[];
  logits: number[][];
  greedy: { prompt_ids: number[]; new_ids: number[] };
}

/** Reads a fixture's golden.json; values are float32 printed with 9 digits, exact as doubles. */
async function readGolden(name: string): Promise<FixtureGolden> {
  return JSON.parse(await Deno.readTextFile(`${SHARED_DIR}/fixtures/${name}/golden.json`));
}

for (const fixture of FIXTURES) {
  Deno.test({
    name: `runtime: ${fixture} logits (chunked prefill) and greedy decode match golden.json`,
    ignore: sharedMissing(),
    async fn(t) {
      const golden = await readGolden(fixture);
      await withEngine(`${SHARED_DIR}/fixtures/${fixture}`, async (engine) => {
        for (const chunk of [13, 48]) {
          await t.step(`all 48 positions' logits, prefill chunk ${chunk}`, async () => {
            const logits = await engine.promptLogits(golden.input_ids, chunk);
            assert.equal(logits.length, golden.input_ids.length);
            logits.forEach((row, pos) => {
              const d = maxAbsDiff(row, golden.logits[pos]);
              assert.ok(d <= LOGIT_TOLERANCE, `position ${pos}: max abs logit diff ${d}`);
            });
          });
        }
        for (const [readEvery, prefillChunk] of [[1, 5], [5, 13], [16, 512]]) {
          await t.step(`16 greedy ids, readEvery ${readEvery}, chunk ${prefillChunk}`, async () => {
            const batches: number[][] = [];
            const result = await engine.generate({
              promptIds: golden.greedy.prompt_ids,
              maxNewTokens: golden.greedy.new_ids.length,
              sampling: GREEDY,
              stopIds: [],
              readEvery,
              prefillChunk,
              onTokens: (ids) => batches.push(ids),
            });
            assert.deepEqual(result.tokens, golden.greedy.new_ids);
            assert.equal(result.stopReason, "length");
            assert.deepEqual(batches.flat(), result.tokens, "onTokens saw every id once, in order");
            // The first id comes from prefill, the rest in batches of at most readEvery.
            assert.equal(batches[0].length, 1);
            for (const b of batches.slice(1)) assert.ok(b.length >= 1 && b.length <= readEvery);
          });
        }
        await t.step("stop ids end generation at the stop id, kept in tokens", async () => {
          const stopAt = 6;
          const stopId = golden.greedy.new_ids[stopAt];
          const first = golden.greedy.new_ids.indexOf(stopId);
          const result = await engine.generate({
            promptIds: golden.greedy.prompt_ids,
            maxNewTokens: 16,
            stopIds: [stopId],
            readEvery: 4,
          });
          assert.equal(result.stopReason, "stop");
          assert.deepEqual(result.tokens, golden.greedy.new_ids.slice(0, first + 1));
        });
      });
    },
  });
}

Deno.test("runtime: a vocabulary too large for 512 rows of logits in one binding is read in fewer", async () => {
  // 70,000 logits a row: 512 rows would be 143 MB, over the 128 MiB storage binding WebGPU
  // grants by default, so the prefill takes fewer rows per chunk (a Gemma 3 vocabulary is
  // 262,144). Every row is checked against the CPU reference.
  const dir = await Deno.makeTempDir();
  try {
    await writeRandomModel(dir, {
      arch: "llama",
      dtype: "F32",
      hidden: 8,
      heads: 2,
      kvHeads: 1,
      headDim: 4,
      inter: 8,
      vocab: 70_000,
      layers: 1,
      tied: true,
      seed: 3,
      maxPositions: 1024,
    });
    const rand = seededRandom(9);
    const ids = Array.from({ length: 600 }, () => Math.floor(rand() * 70_000));
    await withEngine(dir, async (engine) => {
      const got = await engine.promptLogits(ids, 512);
      const want = new CpuReferenceModel(engine.weights).forward(ids);
      assert.equal(got.length, ids.length);
      got.forEach((row, pos) => {
        const d = maxAbsDiff(row, want[pos]);
        assert.ok(d <= LOGIT_TOLERANCE, `position ${pos}: max abs logit diff ${d}`);
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
