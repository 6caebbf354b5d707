/** SimLayerKV lazy-layer detector: scores, thresholds, families. */
import assert from "node:assert/strict";
import {
  LAZY_THRESHOLDS,
  lazyFamily,
  lazyLayers,
  lazyLayerScore,
  lazyThresholdFor,
} from "../../src/plugins/lazyDetector.ts";

Deno.test("lazy: score = mean over heads of sink + recent mass (hand-computed)", () => {
  // length 8, sink 2, recent 3: counted positions 0, 1, 5, 6, 7.
  const a = [0.4, 0.1, 0.1, 0.1, 0, 0.1, 0.1, 0.1]; // 0.8
  const b = [0, 0, 0.5, 0.3, 0, 0, 0, 0.2]; // 0.2
  assert.ok(Math.abs(lazyLayerScore([a, b], 8, 2, 3) - 0.5) < 1e-12);
  // sink + recent ≥ length: every position counted once → 1.
  assert.ok(Math.abs(lazyLayerScore([a, b], 8, 4, 6) - 1) < 1e-12);
  assert.ok(Math.abs(lazyLayerScore([a], 8, 0, 8) - 1) < 1e-12);
  // sink 0.
  assert.ok(Math.abs(lazyLayerScore([b], 8, 0, 1) - 0.2) < 1e-12);
  // Several rows per head (prefill variant): mean over rows too.
  assert.ok(Math.abs(lazyLayerScore([[...a, ...b]], 8, 2, 3) - 0.5) < 1e-12);
  assert.deepEqual(lazyLayers([0.5, 0.9, 0.91, 1], 0.9), [false, false, true, true]);
});

Deno.test("lazy: random attention matches a set-based reference", () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  for (let trial = 0; trial < 50; trial++) {
    const length = 1 + Math.floor(rand() * 30);
    const sink = Math.floor(rand() * 6), recent = 1 + Math.floor(rand() * 12);
    const heads = Array.from({ length: 3 }, () => {
      const raw = Array.from({ length }, () => rand());
      const sum = raw.reduce((x, y) => x + y, 0);
      return raw.map((x) => x / sum);
    });
    const counted = new Set<number>();
    for (let j = 0; j < length; j++) if (j < sink || j >= length - recent) counted.add(j);
    const expected = heads.map((p) => [...counted].reduce((m, j) => m + p[j], 0))
      .reduce((x, y) => x + y, 0) / 3;
    assert.ok(Math.abs(lazyLayerScore(heads, length, sink, recent) - expected) < 1e-12);
  }
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
