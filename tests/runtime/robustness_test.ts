/**
 * Bad machines and bad checkpoints: a clear error and a non-zero exit, never a crash or a hang —
 * no adapter, a device whose limits cannot hold the cache, a device lost mid-run, NaN weights.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/model/config.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { expectedTensorShapes } from "../../src/model/tensorShapes.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { buildSafetensors } from "../model/safetensorsWriter.ts";
import { configJson, type RandomModelSpec, writeRandomModel } from "./_checkpoint.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
const SPEC: RandomModelSpec = {
  arch: "llama",
  dtype: "F32",
  hidden: 32,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  inter: 48,
  vocab: 64,
  layers: 2,
  tied: false,
  seed: 5,
};

async function cli(env: Record<string, string>, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", MAIN, ...args],
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("no WebGPU adapter: a clear error, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeRandomModel(dir, SPEC);
    const r = await cli({ DENO_WEBGPU_BACKEND: "" }, "run", "--model", dir, "--prompt-ids", "1,2");
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: no WebGPU adapter found; on Linux install mesa-vulkan-drivers/m,
    );
    assert.doesNotMatch(r.stderr, /\s+at\s.*\.ts:\d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a device limit too small for the cache: a clear error naming the limit, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeRandomModel(dir, SPEC);
    const r = await cli(
      { KVPOLICY_MAX_BINDING_BYTES: "4096" },
      "run",
      "--model",
      dir,
      "--prompt-ids",
      "1,2,3",
      "--max-new-tokens",
      "200",
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: the KV cache needs \d+ bytes per layer .* binds at most 4096 bytes/m,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the device lost mid-run: generation rejects with a clear error instead of hanging", async () => {
  const dir = await Deno.makeTempDir();
  const engine = await (async () => {
    await writeRandomModel(dir, SPEC);
    return await Engine.open(dir);
  })();
  try {
    const run = engine.generate({
      promptIds: [1, 2, 3, 4],
      maxNewTokens: 8,
      readEvery: 1,
      afterPrefill: () => engine.ctx.device.destroy(),
    });
    await assert.rejects(run, (e: Error) => {
      assert.equal(e.name, "GpuError");
      assert.match(e.message, /WebGPU device lost/);
      return true;
    });
  } finally {
    try {
      engine.close();
    } catch {
      // the device is gone already
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("NaN or infinite weights are rejected, naming the tensor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = configJson(SPEC);
    const shapes = expectedTensorShapes(parseConfig(config, "config.json"));
    const tensors = [...shapes].map(([name, shape]) => {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01);
      if (name === "model.layers.1.mlp.up_proj.weight") values[17] = NaN;
      return { name, dtype: "F32" as const, shape, data: new Uint8Array(values.buffer) };
    });
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await Deno.writeFile(`${dir}/model.safetensors`, buildSafetensors(tensors));
    await assert.rejects(
      loadModel(dir),
      new RegExp(
        `tensor "model.layers.1.mlp.up_proj.weight" holds a NaN or infinite value \\(element 17\\)`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
