/**
 * Chunked prefill with compression between chunks (`chunked`, src/runtime/chunkedPrefill.ts):
 * SnapKV chunk by chunk against the float64 CPU reference running the same definition, Knorm
 * chunked against Knorm in one shot (the same set by construction), and the peak bytes the cache
 * held against the full prompt's.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { withEngine } from "../runtime/_helpers.ts";
import { runPolicy } from "./_run.ts";
import { cpuReselect } from "./_cpuReselect.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
const K = 12, C = 16, W = 4, STEPS = 12;

async function prompt(): Promise<number[]> {
  const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
  return golden.input_ids.slice(0, 44);
}

/**
 * CPU: feed the prompt C tokens at a time; after each chunk, every head keeps SnapKV's selection
 * over its whole cache, scored by the chunk's last W queries; then decode greedily.
 */
function cpuChunked(engine: Engine, ids: number[], policy: string) {
  const c = engine.config, D = c.headDim;
  const cpu = new CpuReferenceModel(engine.weights);
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const snap = defaultRegistry().press("snap")!;
  let row = new Float32Array() as Float32Array;
  for (let start = 0; start < ids.length; start += C) {
    const chunk = ids.slice(start, start + C);
    [row] = cpu.forward(chunk, { logits: "last" });
    for (let l = 0; l < c.numLayers; l++) {
      const q = cpu.lastQueries[l]; // chunk × H × D
      cpuReselect(cpu, l, snap, press.params, W, (j, qh) => {
        const at = ((chunk.length - W + j) * c.numHeads + qh) * D;
        return q.subarray(at, at + D);
      });
    }
  }
  const positions = Array.from(
    { length: c.numLayers },
    (_, l) => Array.from({ length: c.numKvHeads }, (_, h) => Array.from(cpu.cache.positions(l, h))),
  );
  const tokens = [argmax(row)];
  while (tokens.length < STEPS) tokens.push(argmax(cpu.forward([tokens.at(-1)!])[0]));
  return { tokens, positions };
}

Deno.test({
  name: "chunked SnapKV: kept set and tokens match the CPU reference compressing chunk by chunk",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt();
    await withEngine(FIXTURE, async (engine) => {
      const policy = `else -> snap(k=${K}, window=${W}, pool=3) + chunked(size=${C})`;
      const cpu = cpuChunked(engine, ids, policy);
      const gpu = await runPolicy(engine, policy, ids, STEPS);
      gpu.trace.forEach((layer, l) =>
        layer.heads.forEach((h, kv) => assert.deepEqual(h.kept, cpu.positions[l][kv], `${l}.${kv}`))
      );
      assert.deepEqual(gpu.tokens, cpu.tokens);
      // One-shot SnapKV keeps another set: chunking is not a no-op here.
      const once = await runPolicy(engine, `else -> snap(k=${K}, window=${W}, pool=3)`, ids, STEPS);
      assert.notDeepEqual(once.trace.map((l) => l.heads.map((h) => h.kept)), cpu.positions);
    });
  },
});

Deno.test({
  name: "chunked Knorm: layer 0 keeps one-shot Knorm's set, at a fraction of the peak bytes",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt();
    await withEngine(FIXTURE, async (engine) => {
      const once = await runPolicy(engine, `else -> knorm(k=${K})`, ids, STEPS);
      const chunked = await runPolicy(
        engine,
        `else -> knorm(k=${K}) + chunked(size=${C})`,
        ids,
        STEPS,
      );
      // Layer 0's keys depend on the tokens and positions alone, and the K lowest norms of the
      // whole prompt are the K lowest of (the K lowest so far + the next chunk). Deeper layers'
      // keys change: later chunks attend to a compressed cache (the price of chunking).
      assert.deepEqual(
        chunked.trace[0].heads.map((h) => h.kept),
        once.trace[0].heads.map((h) => h.kept),
      );
      assert.notDeepEqual(
        chunked.trace.map((l) => l.heads.map((h) => h.kept)),
        once.trace.map((l) => l.heads.map((h) => h.kept)),
      );
      assert.equal(chunked.kv.keptBytes, once.kv.keptBytes);
      // Peak: one-shot holds the whole prompt (+ answer room); chunked at most K + C rows per head,
      // plus one layer being rebuilt beside the others.
      const c = engine.config, row = 2 * c.headDim * 4, heads = c.numKvHeads;
      assert.ok(
        once.kv.peakBytes >= c.numLayers * heads * ids.length * row,
        `${once.kv.peakBytes}`,
      );
      const bound = (c.numLayers + 1) * heads * (K + C) * row;
      assert.ok(chunked.kv.peakBytes <= bound, `peak ${chunked.kv.peakBytes} > ${bound}`);
      assert.ok(chunked.kv.peakBytes < once.kv.peakBytes);
      // The device's peak (weights, activations, scratch, the cache) falls by at least what the
      // cache's peak fell: nothing else grows to make up for it.
      assert.ok(
        once.deviceMemory.peakBytes - chunked.deviceMemory.peakBytes >=
          once.kv.peakBytes - chunked.kv.peakBytes,
        `device peak ${chunked.deviceMemory.peakBytes} chunked vs ${once.deviceMemory.peakBytes}`,
      );
      assert.ok(once.deviceMemory.peakBytes >= once.deviceMemory.weightBytes + once.kv.peakBytes);
    });
  },
});

Deno.test({
  name: "chunked SnapKV on a prompt of one chunk is one-shot SnapKV, scored on the GPU",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt(); // 44 tokens
    await withEngine(FIXTURE, async (engine) => {
      const snap = `else -> snap(k=${K}, window=${W}, pool=3)`;
      const once = await runPolicy(engine, snap, ids, STEPS);
      const oneChunk = await runPolicy(engine, `${snap} + chunked(size=64)`, ids, STEPS);
      assert.deepEqual(
        oneChunk.trace.map((l) => l.heads.map((h) => h.kept)),
        once.trace.map((l) => l.heads.map((h) => h.kept)),
      );
      assert.deepEqual(oneChunk.tokens, once.tokens);
      // It observed the prompt's last W queries on the GPU; no chunk recompressor ran.
      assert.equal(oneChunk.executor.observeRequest(ids.length).promptWindow, W);
      assert.equal(oneChunk.executor.observeRequest(65).promptWindow, 0);
      assert.equal(oneChunk.executor.chunked, undefined);
      // What a chunked policy cannot do is refused at every prompt length.
      await assert.rejects(
        () => runPolicy(engine, `else -> snap(k=${K}, window=32) + chunked(size=16)`, ids, 2),
        /chunked\(size=16\): 'snap' reads the last 32 queries of each chunk/,
      );
      await assert.rejects(
        () => runPolicy(engine, `else -> snap(k=${K}, window=32) + chunked(size=16)`, [1, 2, 3], 2),
        /chunked\(size=16\): 'snap' reads the last 32 queries of each chunk/,
      );
    });
  },
});
