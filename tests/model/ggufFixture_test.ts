/**
 * GGUF checkpoints against an independent reference: `gguf_fixture.py` builds random-weight
 * Llama (GQA, Q/K rows permuted as llama.cpp does), Qwen3 (per-head q/k norm) and Gemma 3
 * (sliding and global layers, GeGLU, four norms per layer, norms stored as 1 + w) models whose
 * weight matrices cover every supported ggml type, writes them with the `gguf` package, and
 * records the logits Hugging Face transformers computes when it loads those GGUF files. Our
 * loader (renaming, dequantization, un-permutation, config from metadata) must reproduce them,
 * through the CPU reference and on the GPU; the Qwen3 and Gemma 3 Hugging Face folders too.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { openModel } from "../../src/model/openModel.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { answerWithPlan, generateWithPlan } from "../../src/runtime/planGeneration.ts";
import type { KvReport } from "../../src/runtime/kvReport.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { scoreTokens } from "../../src/runtime/scoreTokens.ts";
import { kvRowBytes } from "../../src/gpu/kvCache.ts";
import { pythonMissing, runPython } from "../_python.ts";
import { logSoftmaxAt, maxAbsDiff, range, withEngine } from "../runtime/_helpers.ts";

const SCRIPT = new URL("./gguf_fixture.py", import.meta.url).pathname;
const MODULES = ["gguf", "torch", "transformers", "numpy"];

/** Logits of CpuReferenceModel or the GPU are within this fraction of each row's range. */
const RELATIVE_TOLERANCE = 1e-4;

interface Reference {
  ids: number[];
  [model: string]: number[] | number[][];
}

function assertClose(actual: Float32Array[], expected: number[][], label: string): void {
  assert.equal(actual.length, expected.length, `${label}: rows`);
  expected.forEach((row, i) => {
    const d = maxAbsDiff(actual[i], row);
    assert.ok(
      d <= RELATIVE_TOLERANCE * range(row),
      `${label}: token ${i} max |Δlogit| ${d} (row range ${range(row)})`,
    );
  });
}

Deno.test({
  name: "gguf: synthetic Llama, Qwen3 and Gemma 3 files match transformers loading the same files",
  ignore: pythonMissing(MODULES, "GGUF fixtures against transformers"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-gguf-" });
    try {
      await runPython(SCRIPT, [dir]);
      const ref: Reference = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
      for (
        const [name, path] of [
          ["llama", `${dir}/llama.gguf`],
          ["qwen3", `${dir}/qwen3.gguf`],
          ["qwen3-hf", `${dir}/qwen3-hf`],
          ["gemma3", `${dir}/gemma3.gguf`],
          ["gemma3-hf", `${dir}/gemma3-hf`],
        ]
      ) {
        const expected = ref[name] as number[][];
        await t.step(`${name}: CPU reference`, async () => {
          const { weights } = await openModel(path);
          const cpu = new CpuReferenceModel(weights);
          assertClose(cpu.forward(ref.ids), expected, `${name} (CPU)`);
        });
        await t.step(`${name}: GPU`, async () => {
          await withEngine(path, async (engine) => {
            assertClose(await engine.promptLogits(ref.ids), expected, `${name} (GPU)`);
            if (!name.startsWith("gemma3")) return;
            // Decoding past the sliding window (5 and 4 here): greedy tokens as the CPU
            // reference's, whose logits were just checked against transformers.
            const cpu = new CpuReferenceModel(engine.weights);
            let [row] = cpu.forward(ref.ids, { logits: "last" });
            const want: number[] = [];
            for (let i = 0; i < 10; i++) {
              want.push(argmax(row));
              [row] = cpu.forward([want.at(-1)!], { logits: "last" });
            }
            const got = await engine.generate({ promptIds: ref.ids, maxNewTokens: 10 });
            assert.deepEqual(got.tokens, want, `${name}: greedy decoding`);
            // Its sliding layers held their window only: a ring of W rows, the model's own cache.
            assertSlidingRings(engine, got.kv, ref.ids.length + 9, name);
            assert.equal(got.kv.ratio, 1, `${name}: the full cache keeps all of the model's own`);
            await checkGemmaPolicy(engine, ref.ids, name);
            await checkGemmaScores(engine, ref.ids, name);
            await checkGemmaQuestions(engine, ref.ids, name);
          });
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * After a generation of `total` cached tokens, each sliding layer of window W holds W entries per
 * head in W allocated rows (a ring), each global layer `global` entries (default `total`).
 */
function assertSlidingRings(
  engine: Engine,
  kv: KvReport,
  total: number,
  name: string,
  global = total,
): void {
  const c = engine.config;
  const row = 2 * kvRowBytes(c.headDim, engine.kvDtype);
  c.gemma3!.layerWindows.forEach((w, l) => {
    const { lengths, allocated } = kv.layers[l];
    if (w === null) {
      assert.deepEqual(lengths, Array(c.numKvHeads).fill(global), `${name}: layer ${l} entries`);
      return;
    }
    assert.ok(total > w, "the test must run past the window");
    assert.deepEqual(lengths, Array(c.numKvHeads).fill(w), `${name}: sliding layer ${l} entries`);
    assert.deepEqual(allocated, Array(c.numKvHeads).fill(w * row), `${name}: layer ${l} bytes`);
  });
}

/**
 * A policy on Gemma 3 compresses only its global layers (as kvpress does); the sliding layers
 * keep their window, the model's own cache. The CPU reference, given the kept sets of the global
 * layers, decodes the same greedy tokens.
 */
async function checkGemmaPolicy(engine: Engine, ids: number[], name: string): Promise<void> {
  const c = engine.config;
  const { result, executor } = await generateWithPlan(
    engine,
    compileOrThrow("else -> snap(k=6, window=3, pool=1)"),
    { promptIds: ids, maxNewTokens: 6 },
  );
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(ids, { logits: "last" });
  const total = ids.length + 5; // the prompt and every generated token but the last
  assertSlidingRings(engine, result.kv, total, name, 6 + 5);
  c.gemma3!.layerWindows.forEach((w, l) => {
    const kept = executor.trace[l].heads.map((h) => h.kept);
    if (w !== null) {
      const last = ids.map((_, i) => i).slice(-w);
      kept.forEach((k) => assert.deepEqual(k, last, `${name}: layer ${l} kept`));
    } else {
      kept.forEach((k) => assert.equal(k.length, 6, `${name}: layer ${l} compressed`));
      kept.forEach((k, h) => cpu.keep(l, h, k));
    }
  });
  const want: number[] = [];
  for (let i = 0; i < 6; i++) {
    want.push(argmax(row));
    [row] = cpu.forward([want.at(-1)!], { logits: "last" });
  }
  assert.deepEqual(result.tokens, want, `${name}: greedy decoding under SnapKV`);
}

/** The CPU reference's global layers keep the sets `executor` chose (sliding layers: masked). */
function keepGlobal(cpu: CpuReferenceModel, engine: Engine, executor: PolicyExecutor): void {
  engine.config.gemma3!.layerWindows.forEach((w, l) => {
    if (w === null) executor.trace[l].heads.forEach((h, kv) => cpu.keep(l, kv, h.kept));
  });
}

/**
 * Perplexity's teacher-forced scores past the window (through the sliding layers' rings, one
 * token per step) equal the CPU reference's, for the full cache and for SnapKV.
 */
async function checkGemmaScores(engine: Engine, ids: number[], name: string): Promise<void> {
  const from = 5;
  for (const policy of ["else -> full", "else -> snap(k=3, window=2, pool=1)"]) {
    const executor = new PolicyExecutor(compileOrThrow(policy), engine.config, engine.ctx);
    const got = await scoreTokens(engine, ids, from, executor, executor.actsWhileDecoding);
    const cpu = new CpuReferenceModel(engine.weights);
    let [row] = cpu.forward(ids.slice(0, from), { logits: "last" });
    keepGlobal(cpu, engine, executor);
    const want = [logSoftmaxAt(row, ids[from])];
    for (let t = from; t < ids.length - 1; t++) {
      [row] = cpu.forward([ids[t]], { logits: "last" });
      want.push(logSoftmaxAt(row, ids[t + 1]));
    }
    const d = maxAbsDiff(got.logprobs, want);
    assert.ok(d < 1e-3, `${name}, ${policy}: log-probabilities differ by ${d}`);
    const kept = policy.includes("snap") ? 3 + ids.length - 1 - from : ids.length - 1;
    assertSlidingRings(engine, got.kv, ids.length - 1, `${name}, ${policy}`, kept);
  }
}

/**
 * The query-agnostic protocol: each question goes through the sliding layers' rings one token per
 * step (in one chunk it would overwrite entries its own earlier queries need); every answer equals
 * the CPU reference's from the same compressed context.
 */
async function checkGemmaQuestions(engine: Engine, ids: number[], name: string): Promise<void> {
  const context = ids.slice(0, 8);
  const questions = [ids.slice(8, 11), ids.slice(6, 9)];
  const { result, executor } = await answerWithPlan(
    engine,
    compileOrThrow("else -> snap(k=4, window=2, pool=1)"),
    { contextIds: context, questions, maxNewTokens: 4 },
  );
  questions.forEach((q, i) => {
    const cpu = new CpuReferenceModel(engine.weights);
    cpu.forward(context, { logits: "last" });
    keepGlobal(cpu, engine, executor);
    let [row] = cpu.forward(q, { logits: "last" });
    const want: number[] = [];
    for (let t = 0; t < 4; t++) {
      want.push(argmax(row));
      [row] = cpu.forward([want.at(-1)!], { logits: "last" });
    }
    assert.deepEqual(result.answers[i].tokens, want, `${name}: answer ${i}`);
  });
}
