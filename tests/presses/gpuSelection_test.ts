/**
 * The runtime's selections equal the plugins' algorithms run on an independent CPU reference of
 * the same model and prompt (float64 forward pass, scores computed from its own attention): the
 * GPU-recorded observation window, the key read-back and the compaction keep exactly the entries
 * the reference keeps.
 */
import assert from "node:assert/strict";
import { loadModel } from "../../src/model/loadModel.ts";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { lazyDecodeScore, lazyPrefillScore } from "../../src/plugins/lazyDetector.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import { rescoreSelect } from "../../src/plugins/press.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;
const POLICIES = [
  "else -> snap(k=64, window=16, pool=7)",
  "else -> snap(k=40, window=8, pool=5, reduce=avg)",
  "else -> pyramid(k=64, window=16)",
  "else -> adakv(k=64, window=16, floor=0.2)",
  "else -> knorm(k=30%)",
  "else -> keydiff(k=30%)",
  "else -> keydiff(k=50, block=16)",
  "else -> tova(k=64)",
  "else -> expected(k=64)",
  "else -> expected(k=30%, sink=0, cov=false, vnorm=false)",
  "else -> snap(k=40%, window=16, pool=5, reduce=avg) + chunkkv(chunk=8)",
  "else -> keydiff(k=100%) + dms(threshold=-0.2, window=16)",
  "else -> snap(k=64, window=16, pool=7) + critical",
  "else -> keydiff(k=40%) + critical(adaptive=true)",
  "else -> expected(k=30%, eps=0.01) + adaptive",
  "else -> random(k=50, seed=3)",
  "else -> window(sink=4, recent=40)",
];

Deno.test("GPU selections equal the CPU reference's, head by head, for every executable press", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 200, 11).ids;
    const cpu = new CpuReferenceModel(await loadModel(MODEL));
    cpu.forward(ids, { logits: "last" });
    const registry = defaultRegistry();
    const c = engine.config;
    for (const policy of POLICIES) {
      const [press, rescore] = compileOrThrow(policy).rules[0].pipeline;
      // The runtime records the first generated token's entry too (window selects over it).
      const gpu = await runPolicy(engine, policy, ids, 1);
      for (let l = 0; l < c.numLayers; l++) {
        // Expected Attention's statistics start at its own sink.
        const scores = cpuLayerScores(cpu, l, (press.params.sink as number | undefined) ?? 4);
        const schema = registry.press(press.name)!;
        const expected = rescore
          ? rescoreSelect(
            scores,
            schema,
            press.params,
            registry.press(rescore.name)!,
            rescore.params,
          )
          : schema.select!(scores, press.params);
        for (let h = 0; h < c.numKvHeads; h++) {
          assert.deepEqual(
            gpu.trace[l].heads[h].kept,
            expected[h],
            `${policy}: layer ${l} head ${h}`,
          );
        }
      }
    }
  } finally {
    engine.close();
  }
});

Deno.test("with a budget at least the prompt, every press generates exactly the full cache's tokens", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 120, 5).ids;
    const full = await runPolicy(engine, "else -> full", ids, 12);
    for (
      const policy of [
        "else -> snap(k=4k)",
        "else -> pyramid(k=4k)",
        "else -> adakv(k=4k)",
        "else -> knorm(k=100%)",
        "else -> keydiff(k=100%)",
        "else -> tova(k=4k)",
        "else -> expected(k=100%)",
        // KVzip runs its repeat passes and drops them again: the cache is exactly the prompt's.
        "else -> kvzip(k=100%, chunk=64)",
        "else -> snap(k=4k) + critical(adaptive=true)",
        "else -> keydiff(k=100%) + dms(threshold=-2)",
        "heads duo(ratio=0) -> full; else -> window(sink=4, recent=8)",
        "else -> random(k=4k)",
        "else -> window(sink=4, recent=4k)",
        "layers lazy -> window(sink=4, recent=4k); else -> snap(k=4k)",
      ]
    ) {
      const r = await runPolicy(engine, policy, ids, 12);
      assert.deepEqual(r.tokens, full.tokens, policy);
      assert.equal(r.kv.keptBytes, full.kv.keptBytes, policy);
    }
  } finally {
    engine.close();
  }
});

Deno.test("KV bytes match the plan: snap(k=256) on a 2048-token prompt keeps 256 entries per KV head", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 2048, 2).ids;
    assert.ok(ids.length >= 2000);
    const maxNew = 4;
    const r = await runPolicy(engine, "else -> snap(k=256)", ids, maxNew);
    const c = engine.config;
    const fed = maxNew - 1;
    for (const layer of r.kv.layers) assert.deepEqual(layer.lengths, [256 + fed, 256 + fed]);
    for (const layer of r.trace) for (const h of layer.heads) assert.equal(h.kept.length, 256);
    const row = 2 * c.headDim * 4; // K and V, f32
    assert.equal(r.kv.keptBytes, c.numLayers * c.numKvHeads * (256 + fed) * row);
    assert.equal(r.kv.fullBytes, c.numLayers * c.numKvHeads * (ids.length + fed) * row);
    // The memory is really returned: the allocation is the compacted size.
    assert.equal(r.kv.allocatedBytes, r.kv.keptBytes);
    // A window stays bounded while decoding: sink + recent entries, no more.
    const w = await runPolicy(engine, "else -> window(sink=4, recent=60)", ids, 10);
    for (const layer of w.kv.layers) assert.deepEqual(layer.lengths, [64, 64]);
    assert.equal(w.kv.allocatedBytes, c.numLayers * c.numKvHeads * 64 * row);
    // SimLayerKV's lazy layers (sail-sg/SimLayerKV, decode path): cut once to sink + recent, then
    // one more entry per generated token. At the first decoding step (at=decode) the cut keeps
    // 4 + the last 60 of the N + 1 entries; the 8 tokens fed after it are all kept.
    const lazy = await runPolicy(
      engine,
      "layers lazy(threshold=0) -> window(sink=4, recent=60)",
      ids,
      10,
    );
    for (const layer of lazy.kv.layers) assert.deepEqual(layer.lengths, [64 + 8, 64 + 8]);
    // The same window elsewhere rolls (StreamingLLM), unless asked to grow after the prefill cut.
    const grow = await runPolicy(engine, "else -> window(sink=4, recent=60, decode=grow)", ids, 10);
    for (const layer of grow.kv.layers) assert.deepEqual(layer.lengths, [64 + 9, 64 + 9]);
    const roll = await runPolicy(
      engine,
      "layers lazy(threshold=0) -> window(sink=4, recent=60, decode=roll)",
      ids,
      10,
    );
    for (const layer of roll.kv.layers) assert.deepEqual(layer.lengths, [64, 64]);
    // A window larger than the prompt keeps everything and sizes the cache from the prompt and
    // the tokens still to come, not from the policy (900,004 rows would not even bind).
    const big = await runPolicy(engine, "else -> window(sink=900000)", ids, 4);
    for (const layer of big.kv.layers) {
      assert.deepEqual(layer.lengths, [ids.length + 3, ids.length + 3]);
    }
    assert.ok(big.kv.allocatedBytes <= c.numLayers * c.numKvHeads * (ids.length + 4) * row);
  } finally {
    engine.close();
  }
});

Deno.test("lazy scores on the default model equal the CPU reference's (prefill and first-decode-step variants)", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 200, 11).ids;
    const N = ids.length;
    const c = engine.config;
    const cpu = new CpuReferenceModel(await loadModel(MODEL));
    const logits = cpu.forward(ids, { logits: "last" });
    const g = c.numHeads / c.numKvHeads;
    const prefillScores = Array.from({ length: c.numLayers }, (_, l) => {
      // the official prefill variant: the last 32 queries, each over sink 4 + the 64 before it
      const last = cpuLayerScores(cpu, l).windowAttention(32);
      return lazyPrefillScore(last, N, N - 32, 4, 64);
    });
    // The first decoding step: the greedy token at position N, attending to all N + 1 entries.
    const first = argmax(logits.at(-1)!);
    cpu.forward([first], { positions: [N], logits: "last" });
    const decodeScores = Array.from({ length: c.numLayers }, (_, l) => {
      const q = cpu.lastQueries[l];
      const all = Array.from({ length: N + 1 }, (_, j) => j);
      const perHead = Array.from({ length: c.numHeads }, (_, h) =>
        Float32Array.from(
          cpu.attendSubset(
            l,
            Math.floor(h / g),
            q.subarray(h * c.headDim, (h + 1) * c.headDim),
            all,
          )
            .probabilities,
        ));
      return lazyDecodeScore(perHead, N + 1, 4, 64);
    });
    for (const [at, expected] of [["prefill", prefillScores], ["decode", decodeScores]] as const) {
      const r = await runPolicy(
        engine,
        `layers lazy(recent=64, at=${at}) -> full; else -> full`,
        ids,
        2,
      );
      r.trace.forEach((layer, l) =>
        assert.ok(
          Math.abs(layer.lazy_score! - expected[l]) < 1e-4,
          `${at} layer ${l}: ${layer.lazy_score} vs ${expected[l]}`,
        )
      );
    }
  } finally {
    engine.close();
  }
});

Deno.test("full gives exactly the tokens and cache of running with no policy", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 150, 4).ids;
    const plain = await engine.generate({ promptIds: ids, maxNewTokens: 16, stopIds: [] });
    const full = await runPolicy(engine, "else -> full", ids, 16);
    assert.deepEqual(full.tokens, plain.tokens);
    assert.deepEqual(full.kv, plain.kv);
  } finally {
    engine.close();
  }
});
