/**
 * Teacher-forced scoring through the decode steps (`src/runtime/forcedDecode.ts`, used by
 * `scoreTokens` for policies that act while decoding): the log-probabilities equal the float64
 * CPU reference's under a rolling window, and KIVI's quantized layers, which perplexity refused
 * before, are scored.
 */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { quantizedBytes } from "../../src/plugins/quantPress.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { scoreTokens } from "../../src/runtime/scoreTokens.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { logSoftmaxAt, maxAbsDiff, withEngine } from "./_helpers.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
const TINY = new URL("../../models/tiny-needle", import.meta.url).pathname;

/** The golden prompt, then a fixed pseudo-random tail: `n` ids below the fixture's vocabulary. */
async function fixtureIds(n: number): Promise<number[]> {
  const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
  const ids: number[] = golden.input_ids.slice(0, n);
  let x = 12345;
  while (ids.length < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    ids.push(3 + (x % 290));
  }
  return ids;
}

/**
 * CPU reference, float64: prefill `ids[..from)`, keep `sink` + the last `recent` entries, then
 * feed the rest one token at a time; once a head holds `sink + recent` entries, its oldest
 * non-sink entry goes before the next token comes in (`window(decode=roll)`). Without `roll`,
 * the full cache.
 */
function cpuScores(
  engine: Engine,
  ids: number[],
  from: number,
  roll?: { sink: number; recent: number },
): number[] {
  const c = engine.config;
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(ids.slice(0, from), { logits: "last" });
  if (roll) {
    const kept = Array.from({ length: from }, (_, i) => i)
      .filter((i) => i < roll.sink || i >= from - roll.recent);
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) cpu.keep(l, h, kept);
    }
  }
  const out = [logSoftmaxAt(row, ids[from])];
  for (let t = from; t < ids.length - 1; t++) {
    for (let l = 0; roll && l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const n = cpu.cache.length(l, h);
        if (n >= roll.sink + roll.recent) {
          cpu.keep(l, h, Array.from({ length: n }, (_, i) => i).filter((i) => i !== roll.sink));
        }
      }
    }
    [row] = cpu.forward([ids[t]], { logits: "last" });
    out.push(logSoftmaxAt(row, ids[t + 1]));
  }
  return out;
}

async function score(engine: Engine, policy: string, ids: number[], from: number, bounded = true) {
  const executor = new PolicyExecutor(compileOrThrow(policy), engine.config, engine.ctx);
  return await scoreTokens(engine, ids, from, executor, bounded);
}

Deno.test({
  name: "forced decoding: a rolling window's log-probabilities equal the CPU reference's",
  ignore: sharedMissing(),
  async fn() {
    const ids = await fixtureIds(100);
    const from = 40;
    await withEngine(FIXTURE, async (engine) => {
      const roll = { sink: 4, recent: 14 };
      const policy = `else -> window(sink=${roll.sink}, recent=${roll.recent}, decode=roll)`;
      const got = await score(engine, policy, ids, from);
      const want = cpuScores(engine, ids, from, roll);
      const full = cpuScores(engine, ids, from);
      assert.equal(got.logprobs.length, ids.length - from);
      const d = maxAbsDiff(got.logprobs, want);
      assert.ok(d < 1e-4, `window log-probabilities differ from the CPU reference by ${d}`);
      // The window matters here: the full cache scores the same tokens differently.
      assert.ok(maxAbsDiff(want, full) > 100 * d, "the window changed nothing");
      // The ring held sink + recent entries per head at the end.
      for (const layer of got.kv.layers) assert.deepEqual(layer.lengths, [18, 18]);
      // The same path without a window (forced through the decode steps) is the full cache's.
      const fullGot = await score(engine, "else -> full", ids, from, true);
      const dFull = maxAbsDiff(fullGot.logprobs, full);
      assert.ok(dFull < 1e-4, `full-cache forced scores differ by ${dFull}`);
    });
  },
});

Deno.test("forced decoding: KIVI's quantized cache is scored, 8-bit close to full, 2-bit not", async () => {
  await withEngine(TINY, async (engine) => {
    const c = engine.config;
    const ids = demoPrompt(engine.tokenizer!, "question", 300, 3).ids;
    const from = ids.length - 48;
    const full = await score(engine, "else -> full", ids, from, false);
    const q8 = await score(engine, "else -> quant(bits=8)", ids, from, false);
    const q2 = await score(engine, "else -> quant(bits=2)", ids, from, false);
    for (const r of [full, q8, q2]) {
      assert.equal(r.logprobs.length, 48);
      assert.ok(r.logprobs.every((x) => Number.isFinite(x) && x <= 0));
    }
    const d8 = maxAbsDiff(q8.logprobs, full.logprobs);
    const d2 = maxAbsDiff(q2.logprobs, full.logprobs);
    assert.ok(d8 < 0.05, `8-bit KIVI moved a log-probability by ${d8}`);
    assert.ok(d2 > 4 * d8, `2-bit (${d2}) should cost more than 8-bit (${d8})`);
    // Every head holds all T entries in KIVI's packed layout (fp32 residual).
    const T = ids.length - 1;
    for (const layer of q2.kv.layers) {
      assert.deepEqual(layer.lengths, Array(c.numKvHeads).fill(T));
      for (const head of layer.quant!) {
        assert.deepEqual(
          head,
          quantizedBytes(T, c.headDim, { kbits: 2, vbits: 2, group: 32, residual: 32 }, 4),
        );
      }
    }
  });
});
