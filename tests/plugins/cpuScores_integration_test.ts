/**
 * Presses on the CPU reference model (llama-gqa-f32 fixture: 3 layers, 4 query heads over 2 KV
 * heads): scores from the model, selection, `keep`, then decoding attends exactly the kept set.
 */
import assert from "node:assert/strict";
import { selectAdakv } from "../../src/plugins/adakvPress.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import { selectH2o } from "../../src/plugins/h2oPress.ts";
import { selectKnorm } from "../../src/plugins/knormPress.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import { selectPyramid } from "../../src/plugins/pyramidPress.ts";
import { selectSnap } from "../../src/plugins/snapPress.ts";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const PROMPT = [
  1,
  17,
  250,
  3,
  99,
  42,
  42,
  7,
  180,
  5,
  66,
  201,
  13,
  8,
  120,
  77,
  91,
  33,
  4,
  250,
  17,
  3,
];
const NEXT = [61, 62, 63];

type Selector = (input: LayerScoresInput) => number[][];

const SELECTORS: Record<string, Selector> = {
  snap: (input) => selectSnap(input, { k: { tokens: 10 }, window: 4, pool: 3, reduce: "max" }),
  pyramid: (input) => selectPyramid(input, { k: { tokens: 10 }, beta: 4, window: 4, pool: 3 }),
  adakv: (input) => selectAdakv(input, { k: { tokens: 10 }, floor: 0.2, window: 4, pool: 3 }),
  h2o: (input) => selectH2o(input, { heavy: { tokens: 4 }, recent: { tokens: 4 } }),
  knorm: (input) => selectKnorm(input, { k: { tokens: 9 } }),
};

async function prefilled(): Promise<CpuReferenceModel> {
  const model = new CpuReferenceModel(await loadModel(`${SHARED_DIR}/fixtures/llama-gqa-f32`));
  model.forward(PROMPT, { logits: "last" });
  return model;
}

for (const [name, select] of Object.entries(SELECTORS)) {
  Deno.test({
    name: `${name}: selection on the CPU reference, keep(), decode attends only the kept set`,
    ignore: sharedMissing(),
    async fn() {
      const model = await prefilled();
      const { numLayers, numKvHeads, numHeads, headDim } = model.config;
      const kept = Array.from({ length: numLayers }, (_, l) => select(cpuLayerScores(model, l)));
      let total = 0;
      for (let l = 0; l < numLayers; l++) {
        for (let kv = 0; kv < numKvHeads; kv++) {
          const positions = kept[l][kv];
          assert.ok(positions.length >= 1 && positions.length < PROMPT.length);
          positions.forEach((p, i) => assert.ok(i === 0 || p > positions[i - 1]));
          total += positions.length;
          model.keep(l, kv, positions);
        }
      }
      if (name !== "pyramid") assert.ok(total <= numLayers * numKvHeads * 10);
      const full = await prefilled();
      let fullLogits: Float32Array = new Float32Array();
      let pressedLogits: Float32Array = new Float32Array();
      for (const id of NEXT) {
        [pressedLogits] = model.forward([id], { logits: "last" });
        [fullLogits] = full.forward([id], { logits: "last" });
        assert.ok(pressedLogits.every(Number.isFinite));
      }
      // Dropping entries really changed what decoding attends to.
      assert.notDeepEqual(pressedLogits, fullLogits);
      // The cache holds exactly the kept prompt positions, then the decoded tokens; the new
      // tokens' positions continue from N.
      const decoded = NEXT.map((_, i) => PROMPT.length + i);
      for (let l = 0; l < numLayers; l++) {
        for (let kv = 0; kv < numKvHeads; kv++) {
          assert.deepEqual(Array.from(model.cache.positions(l, kv)), [...kept[l][kv], ...decoded]);
        }
      }
      // Last query's attention over the compacted cache is a distribution over those entries.
      const q = model.lastQueries[0].subarray(0, headDim);
      const length = model.cache.length(0, 0);
      const { probabilities } = model.attendSubset(0, 0, q, Array.from({ length }, (_, i) => i));
      assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-12);
      assert.equal(numHeads / numKvHeads, 2);
    },
  });
}

Deno.test({
  name: "snap with k ≥ N changes nothing: decode logits equal the full cache's",
  ignore: sharedMissing(),
  async fn() {
    const full = await prefilled();
    const pressed = await prefilled();
    for (let l = 0; l < pressed.config.numLayers; l++) {
      const kept = selectSnap(cpuLayerScores(pressed, l), {
        k: { tokens: 64 },
        window: 4,
        pool: 3,
        reduce: "max",
      });
      kept.forEach((positions, kv) => pressed.keep(l, kv, positions));
    }
    const [a] = full.forward([NEXT[0]], { logits: "last" });
    const [b] = pressed.forward([NEXT[0]], { logits: "last" });
    assert.deepEqual(b, a);
  },
});

Deno.test({
  name: "cpuLayerScores: window rows are causal distributions; column sums add to N",
  ignore: sharedMissing(),
  async fn() {
    const model = await prefilled();
    const input = cpuLayerScores(model, 1);
    const n = PROMPT.length;
    const rows = input.windowAttention(3);
    assert.equal(rows.length, 4);
    for (const probs of rows) {
      for (let r = 0; r < 3; r++) {
        const row = probs.subarray(r * n, (r + 1) * n);
        assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
        for (let j = n - 3 + r + 1; j < n; j++) assert.equal(row[j], 0);
      }
    }
    for (const sums of input.attentionColumnSums()) {
      assert.ok(Math.abs(sums.reduce((a, b) => a + b, 0) - n) < 1e-4);
    }
  },
});
