/**
 * Attention over a compacted cache, at the model level: after prefill, every (layer, KV head)
 * keeps a random, sorted, non-empty index set (`RaggedKvCache.compact`), and decoding continues.
 * The CPU reference does the same with `keep(layer, kvHead, indices)`; the two must agree:
 *
 * - greedy ids of `engine.generate` with an `afterPrefill` hook that compacts;
 * - per-step logits, teacher-forced with the CPU's greedy ids, through the GPU decode kernel
 *   (split-KV over the ragged, compacted cache), built here from `forwardSteps` directly;
 * - memory: `allocatedBytes()` shrinks to Σ (kept + decode budget) rows, and the result's kv
 *   report holds kept + decoded entries per head.
 *
 * GQA ratios 2 (llama-gqa-f32), 4 (mistral-f32) and MQA with biases (qwen2-tied-f16).
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import {
  createActivations,
  destroySteps,
  encodeSteps,
  forwardSteps,
  releaseActivations,
} from "../../src/runtime/forwardPass.ts";
import { RaggedKvCache } from "../../src/runtime/raggedKvCache.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { maxAbsDiff, randomInt, seededRandom, withEngine } from "./_helpers.ts";

const DECODE = 6;
const TOLERANCE = 1e-4;

/** Random sorted index sets, one per (layer, KV head), each of 1..n entries (some 1, some n). */
function randomKeep(seed: number, layers: number, heads: number, n: number): number[][][] {
  const rand = seededRandom(seed);
  return Array.from({ length: layers }, (_, l) =>
    Array.from({ length: heads }, (_, h) => {
      const which = (l * heads + h) % 4;
      const size = which === 0 ? 1 : which === 1 ? n : randomInt(rand, 1, n);
      const all = Array.from({ length: n }, (_, i) => i);
      for (let i = 0; i < size; i++) {
        const j = randomInt(rand, i, n - 1);
        [all[i], all[j]] = [all[j], all[i]];
      }
      return all.slice(0, size).sort((a, b) => a - b);
    }));
}

/** CPU: prefill, keep the index sets, greedy-decode; returns the ids and each step's logits. */
function cpuRun(engine: Engine, prompt: number[], keep: number[][][]) {
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(prompt, { logits: "last" });
  const promptLogits = row;
  keep.forEach((heads, l) => heads.forEach((idx, h) => cpu.keep(l, h, idx)));
  const ids = [argmax(row)];
  const logits: Float32Array[] = [];
  while (ids.length < DECODE) {
    [row] = cpu.forward([ids.at(-1)!]);
    logits.push(row);
    ids.push(argmax(row));
  }
  // The index sets must matter, or this test could not see a compaction that keeps the wrong rows.
  const full = new CpuReferenceModel(engine.weights);
  full.forward(prompt, { logits: "last" });
  const [uncompacted] = full.forward([ids[0]]);
  assert.ok(maxAbsDiff(uncompacted, logits[0]) > 50 * TOLERANCE, "compaction changes the logits");
  return { ids, promptLogits, logits };
}

/**
 * GPU: prefill into a fresh cache, compact it to `keep`, then feed `fed` one at a time through
 * the decode-mode forward pass; returns the last prompt logits and each fed token's logits.
 */
async function gpuTeacherForced(
  engine: Engine,
  prompt: number[],
  keep: number[][][],
  fed: number[],
) {
  const { ctx, config: c } = engine;
  const N = prompt.length;
  const cache = new RaggedKvCache(ctx, c, N + fed.length, engine.kvDtype);
  const acts = createActivations(ctx, engine.gpu, 1, 1);
  let steps: ReturnType<typeof forwardSteps> = [];
  try {
    const pre = await engine.prefill(cache, prompt, 11, "last");
    const promptLogits = await ctx.readF32(pre.acts.logits, 0, c.vocabSize);
    releaseActivations(ctx, pre.acts);
    const before = cache.allocatedBytes();
    assert.equal(before, c.numLayers * c.numKvHeads * (N + fed.length) * 2 * cache.rowBytes);
    keep.forEach((heads, l) => cache.compact(l, heads, fed.length));
    const keptRows = keep.flat().reduce((s, k) => s + k.length + fed.length, 0);
    assert.equal(cache.allocatedBytes(), keptRows * 2 * cache.rowBytes);
    assert.ok(cache.allocatedBytes() < before, "compaction returns memory");
    assert.deepEqual(await cache.lengths(), keep.map((hs) => hs.map((k) => k.length)));

    steps = forwardSteps(ctx, engine.gpu, cache.layers, acts, {
      m: 1,
      mode: "decode",
      logits: "last",
      source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
    });
    const logits: Float32Array[] = [];
    for (const [i, id] of fed.entries()) {
      ctx.device.queue.writeBuffer(acts.ids, 0, Uint32Array.of(id));
      ctx.device.queue.writeBuffer(acts.positions, 0, Uint32Array.of(N + i));
      const encoder = ctx.device.createCommandEncoder();
      encodeSteps(encoder, steps);
      ctx.device.queue.submit([encoder.finish()]);
      logits.push(await ctx.readF32(acts.logits, 0, c.vocabSize));
    }
    assert.deepEqual(
      await cache.lengths(),
      keep.map((hs) => hs.map((k) => k.length + fed.length)),
    );
    return { promptLogits, logits };
  } finally {
    destroySteps(steps);
    releaseActivations(ctx, acts);
    cache.release();
  }
}

for (const fixture of ["llama-gqa-f32", "mistral-f32", "qwen2-tied-f16"]) {
  Deno.test({
    name:
      `runtime: decoding over a randomly compacted cache matches the CPU reference (${fixture})`,
    ignore: sharedMissing(),
    async fn(t) {
      const dir = `${SHARED_DIR}/fixtures/${fixture}`;
      const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
      await withEngine(dir, async (engine) => {
        const c = engine.config;
        for (const [seed, n] of [[1, 40], [2, 47]]) {
          const prompt = golden.input_ids.slice(0, n);
          const keep = randomKeep(seed * 7919 + n, c.numLayers, c.numKvHeads, n);
          const cpu = cpuRun(engine, prompt, keep);

          await t.step(`seed ${seed}, prompt ${n}: teacher-forced decode logits`, async () => {
            const gpu = await gpuTeacherForced(engine, prompt, keep, cpu.ids.slice(0, -1));
            const d0 = maxAbsDiff(gpu.promptLogits, cpu.promptLogits);
            assert.ok(d0 <= TOLERANCE, `last prompt logits: ${d0}`);
            cpu.logits.forEach((row, i) => {
              const d = maxAbsDiff(gpu.logits[i], row);
              assert.ok(d <= TOLERANCE, `decode step ${i + 1}: max abs logit diff ${d}`);
            });
          });

          await t.step(
            `seed ${seed}, prompt ${n}: generate with an afterPrefill compaction`,
            async () => {
              let sizes: [number, number] = [0, 0];
              const r = await engine.generate({
                promptIds: prompt,
                maxNewTokens: DECODE,
                stopIds: [],
                readEvery: 4,
                prefillChunk: 13,
                afterPrefill: (state) => {
                  assert.equal(state.promptLength, n);
                  assert.equal(state.decodeBudget, DECODE - 1);
                  const before = state.cache.allocatedBytes();
                  keep.forEach((heads, l) => state.cache.compact(l, heads, state.decodeBudget));
                  sizes = [before, state.cache.allocatedBytes()];
                },
              });
              assert.deepEqual(r.tokens, cpu.ids);
              assert.ok(sizes[1] < sizes[0], `allocated ${sizes[0]} -> ${sizes[1]}`);
              const row = 2 * c.headDim * 4;
              const fed = DECODE - 1;
              assert.deepEqual(
                r.kv.layers.map((l) => l.lengths),
                keep.map((hs) => hs.map((k) => k.length + fed)),
              );
              const kept = keep.flat().reduce((s, k) => s + k.length + fed, 0);
              assert.equal(r.kv.keptBytes, kept * row);
              assert.equal(r.kv.allocatedBytes, sizes[1]);
              assert.equal(r.kv.allocatedBytes, kept * row, "capacity = kept + decode budget");
              assert.equal(r.kv.fullBytes, c.numLayers * c.numKvHeads * (n + fed) * row);
              assert.ok(r.kv.ratio < 1);
            },
          );
        }
      });
    },
  });
}
