/**
 * Golden tests of the CPU reference on the trained tiny-needle model
 * (`shared/golden/tiny-needle/*.json`): last prompt logits, then the greedy continuation with the
 * KV cache. Runs the prompt of 17, 284 and 1483 tokens (the last takes about 10 s).
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

/** Tolerance suggested by shared/golden/tiny-needle/README.md for float32 runtimes. */
const LOGIT_TOLERANCE = 2e-3;

interface NeedleGolden {
  prompt_ids: number[];
  last_prompt_logits: number[];
  greedy_ids: number[];
  steps: { step: number; top_ids: number[]; top_logits: number[] }[];
}

let model: CpuReferenceModel | undefined;
async function tinyNeedle(): Promise<CpuReferenceModel> {
  model ??= new CpuReferenceModel(await loadModel(`${SHARED_DIR}/models/tiny-needle`));
  model.reset();
  return model;
}

/**
 * Prefills the prompt, then feeds the golden greedy ids one at a time (teacher forcing, so a
 * near-tie cannot send the comparison down another path) and checks each step's top-20 logits.
 * Returns our own argmax at every step: when those equal the golden ids, the teacher-forced path
 * is exactly the free-running greedy decode.
 */
async function runGolden(name: string): Promise<{ golden: NeedleGolden; argmaxes: number[] }> {
  const golden = JSON.parse(
    await Deno.readTextFile(`${SHARED_DIR}/golden/tiny-needle/${name}.json`),
  ) as NeedleGolden;
  const cpu = await tinyNeedle();
  let [row] = cpu.forward(golden.prompt_ids, { logits: "last" });
  let diff = 0;
  for (let i = 0; i < row.length; i++) {
    diff = Math.max(diff, Math.abs(row[i] - golden.last_prompt_logits[i]));
  }
  assert.ok(diff <= LOGIT_TOLERANCE, `last prompt logits: max abs difference ${diff}`);
  const argmaxes: number[] = [];
  golden.greedy_ids.forEach((id, step) => {
    const expected = golden.steps[step];
    expected.top_ids.forEach((topId, k) => {
      const d = Math.abs(row[topId] - expected.top_logits[k]);
      assert.ok(d <= LOGIT_TOLERANCE, `step ${step}, token ${topId}: logit off by ${d}`);
    });
    argmaxes.push(argmax(row));
    [row] = cpu.forward([id]);
  });
  assert.equal(cpu.nextPosition, golden.prompt_ids.length + golden.greedy_ids.length);
  return { golden, argmaxes };
}

Deno.test({
  name: "cpu reference: tiny-needle short.json logits (its 0.002-margin step compared by logits)",
  ignore: sharedMissing(),
  async fn() {
    await runGolden("short");
  },
});

for (const name of ["needle300", "needle1500"]) {
  Deno.test({
    name: `cpu reference: tiny-needle ${name}.json logits and greedy ids`,
    ignore: sharedMissing(),
    async fn() {
      const { golden, argmaxes } = await runGolden(name);
      assert.deepEqual(argmaxes, golden.greedy_ids);
    },
  });
}
