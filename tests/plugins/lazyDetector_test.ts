/** SimLayerKV lazy-layer detector: scores, thresholds, families. */
import assert from "node:assert/strict";
import {
  LAZY_THRESHOLDS,
  lazyDecodeScore,
  lazyFamily,
  lazyLayers,
  lazyPrefillScore,
  lazyRecentFor,
  lazyThresholdFor,
} from "../../src/plugins/lazyDetector.ts";

Deno.test("lazy at=decode: first-4 mass + last-recent mass, mean over heads (official sums)", () => {
  // length 8, sink 2, recent 3: positions 0, 1 and 5, 6, 7.
  const a = [0.4, 0.1, 0.1, 0.1, 0, 0.1, 0.1, 0.1]; // 0.5 + 0.3
  const b = [0, 0, 0.5, 0.3, 0, 0, 0, 0.2]; // 0 + 0.2
  assert.ok(Math.abs(lazyDecodeScore([a, b], 8, 2, 3) - 0.5) < 1e-12);
  // The official code adds attn[..., 0:sink].sum() and attn[..., -recent:].sum(): a position in
  // both spans counts twice. sink 4 + recent 6 over 8 positions: a = 0.7 + 0.5, b = 0.8 + 1.0.
  assert.ok(Math.abs(lazyDecodeScore([a, b], 8, 4, 6) - 1.5) < 1e-12);
  // recent beyond the length takes every position (Python's [-1024:] on 8 values).
  assert.ok(Math.abs(lazyDecodeScore([a], 8, 0, 1024) - 1) < 1e-12);
  assert.ok(Math.abs(lazyDecodeScore([b], 8, 0, 1) - 0.2) < 1e-12);
  assert.throws(() => lazyDecodeScore([a], 7, 2, 3), /must hold 7 values/);
  assert.deepEqual(lazyLayers([0.5, 0.9, 0.91, 1], 0.9), [false, false, true, true]);
});

Deno.test("lazy at=prefill: per query, first-sink mass + the band before it (itself excluded)", () => {
  // compute_attention_sink_weights on 6 keys, sink 2, band 2, rows at positions 4 and 5:
  // row 4 counts j ∈ {0, 1} ∪ {2, 3} (4 − j ∈ [1, 2]); row 5 counts {0, 1} ∪ {3, 4}.
  const row4 = [0.1, 0.2, 0.3, 0.1, 0.3, 0]; // 0.3 + 0.4 = 0.7 (itself, 0.3, excluded)
  const row5 = [0.05, 0.05, 0.4, 0.1, 0.2, 0.2]; // 0.1 + 0.3 = 0.4
  const head = [...row4, ...row5];
  assert.ok(Math.abs(lazyPrefillScore([head], 6, 4, 2, 2) - 0.55) < 1e-12);
  // Two heads: the mean over rows and heads.
  const other = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]; // 0 and 0 (diagonals only)
  assert.ok(Math.abs(lazyPrefillScore([head, other], 6, 4, 2, 2) - 0.275) < 1e-12);
  // The band never reaches into the sink twice: sink 4, band 512 on row 5 → {0..3} ∪ {4}.
  assert.ok(Math.abs(lazyPrefillScore([row5], 6, 5, 4, 512) - 0.8) < 1e-12);
});

Deno.test("lazy at=prefill: random attention matches the official masks written out", () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  for (let trial = 0; trial < 50; trial++) {
    const length = 2 + Math.floor(rand() * 30);
    const rows = 1 + Math.floor(rand() * Math.min(length, 6));
    const sink = Math.floor(rand() * 6), band = 1 + Math.floor(rand() * 12);
    const heads = Array.from({ length: 3 }, () =>
      Array.from({ length: rows * length }, (_, x) => {
        const i = length - rows + Math.floor(x / length), j = x % length;
        return j <= i ? rand() : 0; // causal
      }));
    // The official masks: mask_first4 = j ≤ sink − 1; mask_close = 0 < i − j ≤ band and j ≥ sink.
    let expected = 0;
    for (const h of heads) {
      for (let r = 0; r < rows; r++) {
        const i = length - rows + r;
        for (let j = 0; j < length; j++) {
          const first = j <= sink - 1, close = i - j > 0 && i - j <= band && j >= sink;
          if (first || close) expected += h[r * length + j];
        }
      }
    }
    expected /= 3 * rows;
    const got = lazyPrefillScore(heads, length, length - rows, sink, band);
    assert.ok(Math.abs(got - expected) < 1e-12, `trial ${trial}`);
  }
});

Deno.test("lazy: recent=auto is 1024 at decode and 512 at prefill", () => {
  assert.equal(lazyRecentFor({ recent: null, at: "decode" }), 1024);
  assert.equal(lazyRecentFor({ recent: null, at: "prefill" }), 512);
  assert.equal(lazyRecentFor({ recent: 64, at: "prefill" }), 64);
});

Deno.test("lazy: families and auto thresholds", () => {
  const llama2 = { architecture: "llama" as const, ropeTheta: 10000, vocabSize: 32000 };
  assert.equal(lazyFamily(llama2), "llama-2");
  assert.equal(lazyThresholdFor(llama2), 0.65);
  assert.equal(lazyFamily({ ...llama2, ropeTheta: 500000 }), "llama-3");
  assert.equal(lazyFamily({ ...llama2, vocabSize: 128256 }), "llama-3");
  assert.equal(lazyThresholdFor({ ...llama2, vocabSize: 128256 }), 0.9);
  assert.equal(
    lazyThresholdFor({ architecture: "mistral", ropeTheta: 1e6, vocabSize: 32000 }),
    0.8,
  );
  assert.equal(
    lazyThresholdFor({ architecture: "qwen2", ropeTheta: 1e6, vocabSize: 151936 }),
    0.85,
  );
  assert.equal(Object.keys(LAZY_THRESHOLDS).length, 4);
});
