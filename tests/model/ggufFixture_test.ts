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
import { generateWithPlan } from "../../src/runtime/planGeneration.ts";
import { pythonMissing, runPython } from "../_python.ts";
import { maxAbsDiff, range, withEngine } from "../runtime/_helpers.ts";

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
            await checkGemmaPolicy(engine, ref.ids, name);
          });
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A policy on Gemma 3 compresses only its global layers (as kvpress does); the sliding layers
 * keep every entry, which their window masks. The CPU reference, given the kept sets of the
 * global layers, decodes the same greedy tokens.
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
  c.gemma3!.layerWindows.forEach((w, l) => {
    const kept = executor.trace[l].heads.map((h) => h.kept);
    const lengths = result.kv.layers[l].lengths;
    const total = ids.length + 5; // the prompt and every generated token but the last
    if (w !== null) {
      kept.forEach((k) => assert.deepEqual(k, ids.map((_, i) => i), `${name}: layer ${l} kept`));
      assert.deepEqual(lengths, Array(c.numKvHeads).fill(total));
    } else {
      kept.forEach((k) => assert.equal(k.length, 6, `${name}: layer ${l} compressed`));
      assert.deepEqual(lengths, Array(c.numKvHeads).fill(6 + 5));
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
