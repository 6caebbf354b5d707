/**
 * Golden tests of the CPU reference forward pass on the five tiny Hugging Face fixtures
 * (`shared/fixtures/*`): logits for all 48 positions, and the 16-token greedy continuation
 * decoded incrementally with the KV cache.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const FIXTURES = [
  "llama-gqa-f32",
  "llama-bf16-sharded",
  "qwen2-tied-f16",
  "mistral-f32",
  "llama-tied-linear-rope-f32",
];

/** Suggested tolerance of shared/fixtures/README.md for float32 compute. */
const LOGIT_TOLERANCE = 1e-4;

interface FixtureGolden {
  input_ids: number[];
  logits: number[][];
  greedy: { prompt_ids: number[]; new_ids: number[] };
}

function maxAbsDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++) max = Math.max(max, Math.abs(actual[i] - expected[i]));
  return max;
}

async function loadFixture(
  name: string,
): Promise<{ model: CpuReferenceModel; golden: FixtureGolden }> {
  const dir = `${SHARED_DIR}/fixtures/${name}`;
  const model = new CpuReferenceModel(await loadModel(dir));
  const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`)) as FixtureGolden;
  return { model, golden };
}

for (const fixture of FIXTURES) {
  Deno.test({
    name: `cpu reference: ${fixture} logits at all 48 positions match golden.json`,
    ignore: sharedMissing(),
    async fn() {
      const { model, golden } = await loadFixture(fixture);
      const logits = model.forward(golden.input_ids);
      assert.equal(logits.length, golden.input_ids.length);
      logits.forEach((row, t) => {
        const diff = maxAbsDifference(row, golden.logits[t]);
        assert.ok(diff <= LOGIT_TOLERANCE, `position ${t}: max abs logit difference ${diff}`);
      });
    },
  });

  Deno.test({
    name: `cpu reference: ${fixture} token-by-token decoding matches golden logits`,
    ignore: sharedMissing(),
    async fn() {
      const { model, golden } = await loadFixture(fixture);
      golden.input_ids.forEach((id, t) => {
        const [row] = model.forward([id]);
        const diff = maxAbsDifference(row, golden.logits[t]);
        assert.ok(diff <= LOGIT_TOLERANCE, `position ${t}: max abs logit difference ${diff}`);
      });
      assert.equal(model.nextPosition, golden.input_ids.length);
      assert.equal(model.cache.length(0, 0), golden.input_ids.length);
    },
  });

  Deno.test({
    name: `cpu reference: ${fixture} greedy continuation with the KV cache`,
    ignore: sharedMissing(),
    async fn() {
      const { model, golden } = await loadFixture(fixture);
      let [row] = model.forward(golden.greedy.prompt_ids, { logits: "last" });
      const generated: number[] = [];
      for (let step = 0; step < golden.greedy.new_ids.length; step++) {
        const next = argmax(row);
        generated.push(next);
        [row] = model.forward([next]);
      }
      assert.deepEqual(generated, golden.greedy.new_ids);
    },
  });
}
