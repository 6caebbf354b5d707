/**
 * KV-cache accounting of a full-cache generation (`GenerationResult.kv`): with no compaction,
 * full = kept = layers × kvHeads × (prompt + fed decode steps) × headDim × bytes × 2 (K and V),
 * every head holds prompt + generated − 1 entries, and the allocation is the capacities' sum.
 * Run for an f32 and an f16 cache (`kvDtype`), the latter also checked for accuracy.
 */
import assert from "node:assert/strict";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { maxAbsDiff, withEngine } from "./_helpers.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;

/** Generates `maxNew` tokens from `prompt` and checks every number of the kv report. */
async function checkAccounting(
  engine: Engine,
  prompt: number[],
  maxNew: number,
  bytesPerElement: number,
): Promise<void> {
  const c = engine.config;
  const r = await engine.generate({ promptIds: prompt, maxNewTokens: maxNew, stopIds: [] });
  assert.equal(r.tokens.length, maxNew);
  const fed = Math.max(0, maxNew - 1); // the first token comes from prefill, each later one is fed
  const held = prompt.length + fed;
  const row = c.headDim * bytesPerElement * 2;
  const kv = r.kv;
  assert.equal(kv.dtype, bytesPerElement === 4 ? "f32" : "f16");
  assert.equal(kv.fullLength, held);
  assert.equal(kv.fullBytes, c.numLayers * c.numKvHeads * held * row);
  assert.equal(kv.keptBytes, kv.fullBytes);
  assert.equal(kv.ratio, 1);
  assert.equal(kv.layers.length, c.numLayers);
  let capacityRows = 0;
  for (const layer of kv.layers) {
    assert.deepEqual(layer.lengths, Array(c.numKvHeads).fill(held));
    assert.deepEqual(layer.bytes, Array(c.numKvHeads).fill(held * row));
    // Capacity: prompt + every token that could be generated (the last one is never fed).
    assert.deepEqual(layer.allocated, Array(c.numKvHeads).fill((prompt.length + maxNew) * row));
    capacityRows += layer.allocated.reduce((a, b) => a + b, 0) / row;
  }
  assert.equal(kv.allocatedBytes, capacityRows * row);
}

for (const [kvDtype, bytes] of [["f32", 4], ["f16", 2]] as const) {
  Deno.test({
    name: `runtime: full-cache kv report is exact (${kvDtype} cache)`,
    ignore: sharedMissing(),
    async fn(t) {
      const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
      await withEngine(FIXTURE, async (engine) => {
        for (const [n, maxNew] of [[32, 16], [7, 1], [5, 0], [1, 9]]) {
          await t.step(
            `prompt ${n}, ${maxNew} new tokens`,
            () => checkAccounting(engine, golden.input_ids.slice(0, n), maxNew, bytes),
          );
        }
        await t.step(
          "a stop mid-batch: lengths equal fullLength (the steps really fed)",
          async () => {
            const prompt = golden.greedy.prompt_ids;
            const r = await engine.generate({
              promptIds: prompt,
              maxNewTokens: 16,
              stopIds: [golden.greedy.new_ids[2]],
              readEvery: 8,
            });
            assert.equal(r.stopReason, "stop");
            assert.ok(r.kv.fullLength >= prompt.length + r.tokens.length - 1);
            for (const layer of r.kv.layers) {
              for (const len of layer.lengths) assert.equal(len, r.kv.fullLength);
            }
            assert.equal(r.kv.keptBytes, r.kv.fullBytes);
          },
        );
        await t.step("logits through this cache dtype match golden.json", async () => {
          const logits = await engine.promptLogits(golden.input_ids, 11);
          // f16 keys/values round at ~5e-4 relative; logits here span ±0.7.
          const tol = kvDtype === "f32" ? 1e-4 : 2e-3;
          logits.forEach((row, pos) => {
            const d = maxAbsDiff(row, golden.logits[pos]);
            assert.ok(d <= tol, `position ${pos}: ${d}`);
          });
        });
      }, { kvDtype });
    },
  });
}
