/**
 * GGUF checkpoints against an independent reference: `gguf_fixture.py` builds random-weight
 * Llama (GQA, Q/K rows permuted as llama.cpp does), Qwen3 (per-head q/k norm) and Gemma 3
 * (sliding and global layers, GeGLU, four norms per layer, norms stored as 1 + w) models whose
 * weight matrices cover every supported ggml type, writes them with the `gguf` package, and
 * records the logits Hugging Face transformers computes when it loads those GGUF files. Our
 * loader (renaming, dequantization, un-permutation, config from metadata) must reproduce them,
 * through the CPU reference and on the GPU (Gemma 3: the CPU reference; the GPU runtime refuses
 * it for now); the Qwen3 and Gemma 3 Hugging Face folders too.
 */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { openModel } from "../../src/model/openModel.ts";
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
        if (name.startsWith("gemma3")) {
          await t.step(`${name}: the GPU runtime refuses it clearly`, async () => {
            await assert.rejects(
              withEngine(path, () => Promise.resolve()),
              /Gemma 3 is not supported by the WebGPU runtime yet/,
            );
          });
          continue;
        }
        await t.step(`${name}: GPU`, async () => {
          await withEngine(path, async (engine) => {
            assertClose(await engine.promptLogits(ref.ids), expected, `${name} (GPU)`);
          });
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
