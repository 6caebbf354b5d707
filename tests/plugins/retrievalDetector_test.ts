/** RazorAttention retrieval heads: probe, echo/induction scores, global selection. */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import {
  headCount,
  retrievalKvHeadScores,
  retrievalProbe,
  retrievalQueryHeadScores,
  selectRetrievalHeads,
} from "../../src/plugins/retrievalDetector.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const CONFIG = { vocabSize: 300, maxPositions: 128, bosTokenId: 1, eosTokenIds: [2] };

Deno.test("retrieval: the probe is BOS + 4 copies of a distinct, non-special block", () => {
  const probe = retrievalProbe(CONFIG, 5);
  assert.equal(probe.block, 31); // ⌊127 / 4⌋
  assert.equal(probe.offset, 1);
  assert.equal(probe.tokens.length, 1 + 4 * 31);
  assert.equal(probe.tokens[0], 1);
  const block = probe.tokens.slice(1, 32);
  assert.equal(new Set(block).size, 31);
  for (const id of block) assert.ok(id !== 1 && id !== 2 && id >= 0 && id < 300);
  for (let c = 1; c < 4; c++) assert.deepEqual(probe.tokens.slice(1 + 31 * c, 32 + 31 * c), block);
  assert.deepEqual(retrievalProbe(CONFIG, 5), probe);
  assert.notDeepEqual(retrievalProbe(CONFIG, 6).tokens, probe.tokens);
  // Capped by 2500 and by the vocabulary; no BOS → offset 0.
  assert.equal(retrievalProbe({ ...CONFIG, maxPositions: 1 << 20, vocabSize: 50000 }).block, 2500);
  assert.equal(retrievalProbe({ ...CONFIG, maxPositions: 4096, vocabSize: 40 }).block, 38);
  const noBos = retrievalProbe({ ...CONFIG, bosTokenId: null });
  assert.equal(noBos.offset, 0);
  assert.equal(noBos.block, 32);
  assert.throws(() => retrievalProbe({ ...CONFIG, maxPositions: 8 }), /needs ≥ 2/);
});

Deno.test("retrieval: echo/induction of synthetic heads", () => {
  const probe = retrievalProbe({ ...CONFIG, maxPositions: 41 }); // block 10, 41 tokens
  const B = probe.block;
  assert.equal(B, 10);
  const oneHot = (i: number, j: number) => {
    const row = new Array(i + 1).fill(0);
    row[j] = 1;
    return row;
  };
  const heads = [
    (i: number) => oneHot(i, i - B + 1), // induction head
    (i: number) => oneHot(i, i - B), // echo head
    (i: number) => oneHot(i, 0), // sink head
    (i: number) => new Array(i + 1).fill(1 / (i + 1)), // uniform
  ];
  const scores = retrievalQueryHeadScores(probe, 4, (h, i) => heads[h](i));
  assert.deepEqual(scores.induction.slice(0, 3), [1, 0, 0]);
  assert.deepEqual(scores.echo.slice(0, 3), [0, 1, 0]);
  // Uniform: copy c (1..3) has c earlier occurrences; mean over i of c/(i+1).
  let expected = 0;
  for (let i = 1 + B; i < 41; i++) expected += Math.floor((i - 1) / B) / (i + 1);
  expected /= 41 - 1 - B;
  assert.ok(Math.abs(scores.echo[3] - expected) < 1e-12);
  assert.ok(Math.abs(scores.induction[3] - expected) < 1e-12);
  // KV heads: max over groups of 2.
  const kv = retrievalKvHeadScores(scores, 2);
  assert.deepEqual(kv.induction, [1, Math.max(0, scores.induction[3])]);
  assert.deepEqual(kv.echo, [1, scores.echo[3]]);
});

Deno.test("retrieval: global top by induction ∪ top by echo; counts and ties", () => {
  assert.equal(headCount(0.14, 256), 36);
  assert.equal(headCount(0.01, 256), 3);
  assert.equal(headCount(0.01, 10), 1);
  assert.equal(headCount(0, 10), 0);
  assert.equal(headCount(0.5, 6), 3);
  const scores = [
    { induction: [0.9, 0.1, 0.5], echo: [0, 0.8, 0] },
    { induction: [0.5, 0.2, 0.7], echo: [0, 0, 0.1] },
  ];
  // 6 heads; induction 1/3 → 2 heads: 0.9 (0,0), 0.7 (1,2); echo 1/6 → 1: (0,1).
  assert.deepEqual(selectRetrievalHeads(scores, { induction: 1 / 3, echo: 1 / 6, top: null }), [
    [true, true, false],
    [false, false, true],
  ]);
  // 3 by induction: third place is a 0.5 tie between (0,2) and (1,0) → lower layer.
  assert.deepEqual(selectRetrievalHeads(scores, { induction: 0.5, echo: 0, top: null }), [
    [true, false, true],
    [false, false, true],
  ]);
  // top overrides induction: top 0.5 − echo 1/6 → 2 by induction.
  assert.deepEqual(
    selectRetrievalHeads(scores, { induction: 0.99, echo: 1 / 6, top: 0.5 }),
    selectRetrievalHeads(scores, { induction: 1 / 3, echo: 1 / 6, top: null }),
  );
});

Deno.test({
  name: "retrieval: scores on the CPU reference model are well-formed",
  ignore: sharedMissing(),
  async fn() {
    const model = new CpuReferenceModel(await loadModel(`${SHARED_DIR}/fixtures/llama-gqa-f32`));
    const probe = retrievalProbe(model.config, 0);
    model.forward(probe.tokens, { logits: "last" });
    const { numHeads, numKvHeads, headDim, numLayers } = model.config;
    const group = numHeads / numKvHeads;
    const perLayer = [];
    for (let l = 0; l < numLayers; l++) {
      const q = model.lastQueries[l];
      const row = (head: number, i: number) => {
        const offset = (i * numHeads + head) * headDim;
        const visible = Array.from({ length: i + 1 }, (_, j) => j);
        return model.attendSubset(
          l,
          Math.floor(head / group),
          q.subarray(offset, offset + headDim),
          visible,
        )
          .probabilities;
      };
      perLayer.push(retrievalKvHeadScores(retrievalQueryHeadScores(probe, numHeads, row), group));
    }
    for (const { echo, induction } of perLayer) {
      for (const x of [...echo, ...induction]) assert.ok(x >= 0 && x <= 1);
      assert.equal(echo.length, numKvHeads);
    }
    const marked = selectRetrievalHeads(perLayer, { induction: 0.14, echo: 0.01, top: null });
    // 6 heads: 1 by induction, 1 by echo → 1 or 2 heads.
    const count = marked.flat().filter(Boolean).length;
    assert.ok(count === 1 || count === 2);
  },
});
