/**
 * stories260K (Karpathy's llama2.c model, converted to HF safetensors): the CPU reference's
 * greedy continuation from BOS must equal that of an independent llama2.c-format implementation
 * reading the original `stories260K.bin` (pair RoPE, unpermuted weights). Like llama2.c's
 * `run -t 0 -n 200`, it feeds BOS at position 0, then each greedy token, for 200 positions
 * (200 new tokens), stopping early if BOS is sampled.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { Llama2cModel } from "./llama2cReference.ts";

const STEPS = 200;
const BOS = 1;

Deno.test({
  name: "cpu reference: stories260K greedy decode from BOS matches a llama2.c-format reference",
  ignore: sharedMissing(),
  async fn() {
    const dir = `${SHARED_DIR}/models/stories260K`;
    const hf = new CpuReferenceModel(await loadModel(dir));
    const original = new Llama2cModel(await Deno.readFile(`${dir}/stories260K.bin`));
    assert.equal(original.config.vocabSize, hf.config.vocabSize);
    assert.equal(original.config.nKvHeads, hf.config.numKvHeads);

    const hfIds: number[] = [];
    const originalIds: number[] = [];
    let maxLogitDifference = 0;
    let token = BOS;
    for (let pos = 0; pos < STEPS; pos++) {
      const [hfLogits] = hf.forward([token]);
      const originalLogits = original.step(token, pos);
      for (let i = 0; i < hfLogits.length; i++) {
        maxLogitDifference = Math.max(
          maxLogitDifference,
          Math.abs(hfLogits[i] - originalLogits[i]),
        );
      }
      hfIds.push(argmax(hfLogits));
      originalIds.push(argmax(originalLogits));
      token = hfIds.at(-1)!;
      if (token === BOS) break;
    }
    assert.deepEqual(hfIds, originalIds);
    assert.ok(hfIds.length > 100, `only ${hfIds.length} tokens before BOS`);
    assert.ok(new Set(hfIds).size > 30, "a real continuation, not one repeated token");
    assert.ok(maxLogitDifference < 1e-3, `max logit difference ${maxLogitDifference}`);
  },
});
