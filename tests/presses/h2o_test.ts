/**
 * H2O on the real runtime equals `h2oPrefill` / `h2oDecodeStep` (src/plugins/h2oPress.ts) run on
 * the float64 CPU reference of the same model and prompt: the prefill selection from the GPU's
 * accumulated column sums, and then — with heavy + recent small enough that every decoding step
 * evicts — the set of positions each KV head holds after D steps of GPU-side eviction. On
 * tiny-needle, and on a random Gemma 3 model whose query scale (`query_pre_attn_scalar^-1/2`) is
 * not 1/√head_dim: H2O's scores are the model's own attention weights.
 */
import assert from "node:assert/strict";
import { loadModel } from "../../src/model/loadModel.ts";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import {
  h2oDecodeStep,
  type H2oHeadState,
  h2oPrefill,
  selectH2o,
} from "../../src/plugins/h2oPress.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import type { H2oStepHook } from "../../src/runtime/h2oRuntime.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { runPolicy } from "./_run.ts";
import { withRandomGemma } from "../runtime/_checkpoint.ts";
import { randomInt, seededRandom } from "../runtime/_helpers.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;
const POLICY = "else -> h2o(heavy=24, recent=8)";
const PARAMS = { heavy: { tokens: 24 }, recent: { tokens: 8 } };
const DECODE = 12;

/** The CPU trajectory: prefill selection, then D greedy steps each evicting one entry. */
function cpuTrajectory(cpu: CpuReferenceModel, ids: number[]) {
  const c = cpu.config;
  const g = c.numHeads / c.numKvHeads;
  let [row] = cpu.forward(ids, { logits: "last" });
  const states: H2oHeadState[][] = [];
  for (let l = 0; l < c.numLayers; l++) {
    states.push(h2oPrefill(cpuLayerScores(cpu, l), PARAMS));
    states[l].forEach((s, h) => cpu.keep(l, h, s.positions));
  }
  const tokens = [argmax(row)];
  let evictions = 0;
  for (let step = 0; step < DECODE; step++) {
    [row] = cpu.forward([tokens.at(-1)!]);
    for (let l = 0; l < c.numLayers; l++) {
      const q = cpu.lastQueries[l];
      for (let h = 0; h < c.numKvHeads; h++) {
        const all = Array.from({ length: cpu.cache.length(l, h) }, (_, i) => i);
        const attention = Array.from({ length: g }, (_, j) => {
          const at = (h * g + j) * c.headDim;
          return cpu.attendSubset(l, h, q.subarray(at, at + c.headDim), all).probabilities;
        });
        const evict = h2oDecodeStep(states[l][h], attention, ids.length + step);
        if (evict === null) continue;
        evictions++;
        cpu.keep(l, h, all.filter((i) => i !== evict));
      }
    }
    tokens.push(argmax(row));
  }
  return { tokens, states, evictions };
}

Deno.test("h2o: GPU prefill selection and per-step GPU eviction equal the CPU reference", async () => {
  await checkH2o(MODEL, (engine) => demoPrompt(engine.tokenizer!, "question", 200, 11).ids);
});

Deno.test("h2o: on Gemma 3 with query_pre_attn_scalar ≠ head_dim, the scores use the model's scale", async () => {
  // Scale 1/√5, where 1/√16 would be 0.25.
  await withRandomGemma(21, 2, { queryPreAttnScalar: 5 }, (dir) => {
    const rand = seededRandom(22);
    return checkH2o(dir, () => Array.from({ length: 45 }, () => randomInt(rand, 3, 60)));
  });
});

/** The check on the model in `dir`, with the prompt `promptOf` gives. */
async function checkH2o(dir: string, promptOf: (engine: Engine) => number[]): Promise<void> {
  const engine = await Engine.open(dir);
  try {
    const ids = promptOf(engine);
    const c = engine.config;
    const cpu = new CpuReferenceModel(await loadModel(dir));
    cpu.forward(ids, { logits: "last" });

    // Prefill: the kept sets from the GPU column sums equal selectH2o on the CPU's.
    const prefill = await runPolicy(engine, POLICY, ids, 1);
    for (let l = 0; l < c.numLayers; l++) {
      const expected = selectH2o(cpuLayerScores(cpu, l), PARAMS);
      for (let h = 0; h < c.numKvHeads; h++) {
        assert.deepEqual(prefill.trace[l].heads[h].kept, expected[h], `layer ${l} head ${h}`);
      }
    }

    // Decode: every step evicts; the held positions follow h2oDecodeStep exactly.
    cpu.reset();
    const ref = cpuTrajectory(cpu, ids);
    assert.equal(ref.evictions, DECODE * c.numLayers * c.numKvHeads, "every step evicts");
    const executor = new PolicyExecutor(compileOrThrow(POLICY), c, engine.ctx);
    let hook: H2oStepHook | undefined;
    try {
      const r = await engine.generate({
        promptIds: ids,
        maxNewTokens: DECODE + 1,
        readEvery: 5,
        observe: executor.observeRequest(),
        afterPrefill: async (state) => {
          await executor.apply(state);
          // Keep the hook's state alive past the generation to read it.
          hook = state.cache.stepHook as H2oStepHook;
          state.cache.stepHook = { op: hook.op, buffers: () => [], release() {} };
        },
      });
      assert.deepEqual(r.tokens, ref.tokens);
      const lengths = r.kv.layers.map((layer) => layer.lengths);
      const held = await hook!.positions(lengths);
      for (let l = 0; l < c.numLayers; l++) {
        assert.deepEqual(lengths[l], Array(c.numKvHeads).fill(32));
        for (let h = 0; h < c.numKvHeads; h++) {
          const want = ref.states[l][h].positions.slice().sort((a, b) => a - b);
          const got = held[l][h]!.slice().sort((a, b) => a - b);
          assert.deepEqual(got, want, `layer ${l} head ${h} after ${DECODE} steps`);
        }
      }
      assert.equal(r.kv.allocatedBytes, c.numLayers * c.numKvHeads * 33 * 2 * c.headDim * 4);
    } finally {
      hook?.release();
    }
  } finally {
    engine.close();
  }
}
