/**
 * `quant` (KIVI) on the real runtime with the bundled tiny-needle model: 8-bit keeps the full
 * cache's greedy tokens, the bytes held are exactly the reference layout's (`quantizedBytes`),
 * and it composes with a selecting press (snap) — the savings multiply.
 */
import assert from "node:assert/strict";
import { quantizedBytes } from "../../src/plugins/quantPress.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import type { KvReport } from "../../src/runtime/kvReport.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;
const NEW = 16;

/** Bytes the reference layout gives every head of `kv` (residual at 4 bytes: an f32 cache). */
function formulaBytes(kv: KvReport, headDim: number, kbits: number, vbits = kbits): number {
  const p = { kbits, vbits, group: 32, residual: 32 };
  return kv.layers.reduce(
    (s, layer) => s + layer.lengths.reduce((a, n) => a + quantizedBytes(n, headDim, p, 4).total, 0),
    0,
  );
}

Deno.test("quant on tiny-needle: 8-bit tokens, exact packed bytes, snap + quant", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const c = engine.config;
    const ids = demoPrompt(engine.tokenizer!, "question", 300, 3).ids;
    const full = await runPolicy(engine, "else -> full", ids, NEW);
    const q8 = await runPolicy(engine, "else -> quant(bits=8)", ids, NEW);
    assert.deepEqual(q8.tokens, full.tokens, "8-bit KIVI keeps the greedy tokens");

    const q4 = await runPolicy(engine, "else -> quant(bits=4)", ids, NEW);
    const T = ids.length + NEW - 1;
    for (const layer of q4.kv.layers) {
      assert.deepEqual(layer.lengths, Array(c.numKvHeads).fill(T));
      for (const head of layer.quant!) {
        assert.deepEqual(
          head,
          quantizedBytes(T, c.headDim, { kbits: 4, vbits: 4, group: 32, residual: 32 }, 4),
        );
      }
    }
    assert.equal(q4.kv.keptBytes, formulaBytes(q4.kv, c.headDim, 4));
    // 4-bit codes are 1/8 of f32 plus scales, 0–31 full keys and 32 full values.
    assert.ok(q4.kv.ratio < 0.35 && q4.kv.ratio > 0.125, `4-bit ratio ${q4.kv.ratio}`);
    assert.ok(q4.kv.allocatedBytes < 0.4 * full.kv.allocatedBytes, "the allocation shrinks too");

    const snap = await runPolicy(engine, "else -> snap(k=128)", ids, NEW);
    const both = await runPolicy(engine, "else -> snap(k=128) + quant(bits=4)", ids, NEW);
    for (let l = 0; l < c.numLayers; l++) {
      assert.deepEqual(
        both.trace[l].heads.map((h) => h.kept),
        snap.trace[l].heads.map((h) => h.kept),
      );
      assert.deepEqual(both.kv.layers[l].lengths, Array(c.numKvHeads).fill(128 + NEW - 1));
    }
    assert.equal(both.kv.keptBytes, formulaBytes(both.kv, c.headDim, 4));
    const product = snap.kv.ratio * q4.kv.ratio;
    assert.ok(
      both.kv.ratio < snap.kv.ratio / 2 && both.kv.ratio < product * 1.5,
      `${both.kv.ratio}`,
    );
    assert.equal(both.tokens.length, NEW);

    // KIVI's separate key / value bits: 2-bit keys, 4-bit values, exact bytes, fewer than 4/4.
    const k2v4 = await runPolicy(engine, "else -> quant(kbits=2, vbits=4)", ids, NEW);
    assert.equal(k2v4.kv.keptBytes, formulaBytes(k2v4.kv, c.headDim, 2, 4));
    assert.ok(k2v4.kv.keptBytes < q4.kv.keptBytes);
  } finally {
    engine.close();
  }
});

Deno.test("quant next to a window: other layers run, a shared layer is refused clearly", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 60, 3).ids;
    const message = /'quant' cannot share a layer with the bounded press 'window'/;
    await assert.rejects(
      () => runPolicy(engine, "else -> window(sink=4, recent=32) + quant(bits=4)", ids, 2),
      message,
    );
    await assert.rejects(
      () => runPolicy(engine, "heads 1 -> window(sink=4, recent=32); else -> quant", ids, 2),
      message,
    );
    const split = await runPolicy(
      engine,
      "layers 0 -> window(sink=4, recent=32); else -> quant",
      ids,
      4,
    );
    assert.equal(split.tokens.length, 4);
    assert.equal(split.kv.layers[0].quant, undefined, "layer 0 is a plain window cache");
    assert.ok(split.kv.layers[1].quant, "layer 1 is quantised");
  } finally {
    engine.close();
  }
});
