/**
 * The CPU reference's KV cache: compaction to index sets (`keep`), attention restricted to an
 * index set (`attendSubset`), explicit positions, the sliding window, and input checks.
 */
import assert from "node:assert/strict";
import { CpuKvCache } from "../../src/model/cpuKvCache.ts";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import type { ModelWeights } from "../../src/model/types.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const IDS = [1, 17, 250, 3, 99, 42, 42, 7, 180, 5, 66, 201, 13, 8];

let weightsPromise: Promise<ModelWeights> | undefined;
/** The mistral fixture: 8 query heads over 2 KV heads of dim 8, 2 layers. */
function mistralWeights(): Promise<ModelWeights> {
  weightsPromise ??= loadModel(`${SHARED_DIR}/fixtures/mistral-f32`);
  return weightsPromise;
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Attention written out directly from the definition, for one query over chosen entries. */
function naiveAttention(
  query: Float64Array,
  keys: Float64Array,
  values: Float64Array,
  indices: number[],
  headDim: number,
): Float64Array {
  const scores = indices.map((j) => {
    let dot = 0;
    for (let d = 0; d < headDim; d++) dot += query[d] * keys[j * headDim + d];
    return Math.exp(dot / Math.sqrt(headDim));
  });
  const total = scores.reduce((a, b) => a + b, 0);
  const out = new Float64Array(headDim);
  indices.forEach((j, n) => {
    for (let d = 0; d < headDim; d++) out[d] += (scores[n] / total) * values[j * headDim + d];
  });
  return out;
}

Deno.test({
  name: "cpu cache: attendSubset is softmax attention over exactly the given entries",
  ignore: sharedMissing(),
  async fn() {
    const model = new CpuReferenceModel(await mistralWeights());
    model.forward(IDS);
    const { headDim, numHeads } = model.config;
    const layer = 1, kvHead = 1;
    // Query heads 4..7 use KV head 1; take the last token's four queries.
    const last = IDS.length - 1;
    const offset = (last * numHeads + 4) * headDim;
    const queries = model.lastQueries[layer].subarray(offset, offset + 4 * headDim);
    const indices = [0, 3, 4, 9, 13];
    const result = model.attendSubset(layer, kvHead, queries, indices);
    assert.equal(result.probabilities.length, 4 * indices.length);
    for (let row = 0; row < 4; row++) {
      const expected = naiveAttention(
        queries.subarray(row * headDim, (row + 1) * headDim),
        model.cache.keys(layer, kvHead),
        model.cache.values(layer, kvHead),
        indices,
        headDim,
      );
      const got = result.output.subarray(row * headDim, (row + 1) * headDim);
      assert.ok(maxAbsDifference(got, expected) < 1e-12);
      const rowSum = result.probabilities
        .subarray(row * indices.length, (row + 1) * indices.length)
        .reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(rowSum - 1) < 1e-12);
    }
    assert.throws(() => model.attendSubset(layer, kvHead, queries, [14]), /index 14 is outside/);
  },
});

Deno.test({
  name: "cpu cache: one batch equals token-by-token decoding, and explicit positions shift RoPE",
  ignore: sharedMissing(),
  async fn() {
    const weights = await mistralWeights();
    const batch = new CpuReferenceModel(weights).forward(IDS);
    const stepwise = new CpuReferenceModel(weights);
    const split = [...stepwise.forward(IDS.slice(0, 5)), ...stepwise.forward(IDS.slice(5))];
    batch.forEach((row, t) => assert.ok(maxAbsDifference(row, split[t]) < 1e-6, `token ${t}`));

    // RoPE sees only relative positions: shifting all by 1000 changes logits only by rounding.
    const shifted = new CpuReferenceModel(weights);
    const positions = IDS.map((_, t) => 1000 + t);
    shifted.forward(IDS, { positions }).forEach((row, t) => {
      assert.ok(maxAbsDifference(row, batch[t]) < 1e-5, `token ${t}`);
    });
    assert.equal(shifted.nextPosition, 1000 + IDS.length);
    assert.deepEqual([...shifted.cache.positions(0, 0)], positions);
    // A position gap is not a shift: logits after the gap must change.
    const gapped = new CpuReferenceModel(weights);
    gapped.forward(IDS.slice(0, 7));
    const [afterGap] = gapped.forward([IDS[7]], { positions: [40] });
    assert.ok(maxAbsDifference(afterGap, batch[7]) > 1e-3);
  },
});

Deno.test({
  name: "cpu cache: keep compacts to an index set and kept entries keep their positions",
  ignore: sharedMissing(),
  async fn() {
    const weights = await mistralWeights();
    const full = new CpuReferenceModel(weights);
    full.forward(IDS);
    const [fullNext] = full.forward([77]);

    const keptAll = new CpuReferenceModel(weights);
    keptAll.forward(IDS);
    const everything = IDS.map((_, i) => i);
    for (let l = 0; l < 2; l++) for (let g = 0; g < 2; g++) keptAll.keep(l, g, everything);
    assert.deepEqual(keptAll.forward([77])[0], fullNext, "keeping everything changes nothing");

    const compact = new CpuReferenceModel(weights);
    compact.forward(IDS);
    const keysBefore = compact.cache.keys(1, 0).slice();
    const kept = [0, 2, 5, 11, 13];
    compact.keep(1, 0, kept);
    assert.equal(compact.cache.length(1, 0), kept.length);
    assert.equal(compact.cache.length(1, 1), IDS.length, "other heads untouched");
    assert.deepEqual([...compact.cache.positions(1, 0)], kept);
    const d = compact.config.headDim;
    kept.forEach((index, n) => {
      assert.deepEqual(
        compact.cache.keys(1, 0).subarray(n * d, (n + 1) * d),
        keysBefore.subarray(index * d, (index + 1) * d),
      );
    });
    const [compactNext] = compact.forward([77]);
    assert.equal(compact.nextPosition, IDS.length + 1, "positions continue after compaction");
    assert.equal(compact.cache.positions(1, 0).at(-1), IDS.length);
    assert.ok(maxAbsDifference(compactNext, fullNext) > 1e-6, "dropping entries changes logits");

    assert.throws(() => compact.keep(0, 0, [3, 2]), /strictly increasing/);
    assert.throws(() => compact.keep(0, 0, [0, 99]), /index 99 is outside/);
    assert.throws(() => compact.keep(5, 0, [0]), /no cache for layer 5/);
  },
});

Deno.test({
  name: "cpu cache: a sliding window equals keeping the last window-1 entries before each token",
  ignore: sharedMissing(),
  async fn() {
    const weights = await mistralWeights();
    const window = 4;
    const windowed = new CpuReferenceModel({
      ...weights,
      config: { ...weights.config, slidingWindow: window },
    });
    const batch = windowed.forward(IDS);

    const evicting = new CpuReferenceModel(weights);
    IDS.forEach((id, t) => {
      for (let l = 0; l < 2; l++) {
        for (let g = 0; g < 2; g++) {
          const length = evicting.cache.length(l, g);
          const start = Math.max(0, length - (window - 1));
          evicting.keep(l, g, Array.from({ length: length - start }, (_, i) => start + i));
        }
      }
      const [row] = evicting.forward([id]);
      assert.ok(maxAbsDifference(row, batch[t]) < 1e-6, `token ${t}`);
    });
    const unwindowed = new CpuReferenceModel(weights).forward(IDS);
    assert.ok(maxAbsDifference(unwindowed.at(-1)!, batch.at(-1)!) > 1e-4, "the window matters");
  },
});

Deno.test({
  name: "cpu reference: bad inputs are refused",
  ignore: sharedMissing(),
  async fn() {
    const model = new CpuReferenceModel(await mistralWeights());
    assert.throws(() => model.forward([]), /at least one token/);
    assert.throws(() => model.forward([256]), /token id 256 is outside the vocabulary \[0, 256\)/);
    assert.throws(() => model.forward([1, 2], { positions: [0] }), /2 tokens but 1 positions/);
    assert.throws(() => model.forward([1], { positions: [-1] }), /position -1/);
    assert.equal(model.nextPosition, 0, "nothing was fed");
    model.forward([1, 2], { logits: "last" });
    model.reset();
    assert.equal(model.cache.length(0, 0), 0);
    assert.equal(model.nextPosition, 0);
  },
});

Deno.test("cpu cache: grows past its initial capacity", () => {
  const cache = new CpuKvCache(1, 1, 2);
  for (let i = 0; i < 40; i++) {
    cache.append(0, 0, new Float64Array([i, -i]), new Float64Array([2 * i, 0]), 100 + i);
  }
  assert.equal(cache.length(0, 0), 40);
  assert.equal(cache.keys(0, 0)[2 * 39 + 1], -39);
  assert.equal(cache.values(0, 0)[2 * 20], 40);
  assert.equal(cache.positions(0, 0)[39], 139);
  cache.clear();
  assert.equal(cache.length(0, 0), 0);
});
