import assert from "node:assert/strict";
import { parseConfig } from "../../src/model/config.ts";
import { ModelError } from "../../src/model/errors.ts";
import { loadModel } from "../../src/model/loadModel.ts";
import { expectedTensorShapes } from "../../src/model/tensorShapes.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { buildSafetensors, f32Tensor } from "./safetensorsWriter.ts";

const FIXTURES = [
  "llama-gqa-f32",
  "llama-bf16-sharded",
  "qwen2-tied-f16",
  "mistral-f32",
  "llama-tied-linear-rope-f32",
];

const TINY_CONFIG = {
  model_type: "llama",
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 10,
  hidden_act: "silu",
  tie_word_embeddings: true,
};

/** Writes a model folder whose tensors match `config`, with `edit` applied to the shape list. */
async function writeTinyModel(
  dir: string,
  config: Record<string, unknown>,
  edit?: (shapes: Map<string, number[]>) => void,
): Promise<void> {
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const shapes = expectedTensorShapes(parseConfig(TINY_CONFIG, "c.json"));
  edit?.(shapes);
  const tensors = [...shapes].map(([name, shape]) => f32Tensor(name, shape, 0.01));
  await Deno.writeFile(`${dir}/model.safetensors`, buildSafetensors(tensors));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-load-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const fixture of FIXTURES) {
  Deno.test({
    name: `loadModel: ${fixture} loads with every expected tensor`,
    ignore: sharedMissing(),
    async fn() {
      const dir = `${SHARED_DIR}/fixtures/${fixture}`;
      const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
      const progress: number[] = [];
      const weights = await loadModel(dir, {
        onProgress: (done, total) => progress.push(done / total),
      });
      assert.equal(weights.dir, dir);
      assert.equal(weights.config.vocabSize, golden.vocab_size);
      for (const [name, shape] of expectedTensorShapes(weights.config)) {
        assert.deepEqual(weights.get(name).shape, shape, name);
        assert.equal(weights.get(name).dtype, golden.storage_dtype, name);
      }
      assert.equal(weights.has("lm_head.weight"), !weights.config.tieWordEmbeddings);
      assert.equal(progress.at(-1), 1);
      assert.throws(
        () => weights.get("nope"),
        (error: unknown) =>
          error instanceof ModelError &&
          error.message === `${dir}: tensor "nope" is missing from the checkpoint`,
      );
    },
  });
}

Deno.test("loadModel: a config that lies about sizes is refused, naming the tensor", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModel(dir, { ...TINY_CONFIG, intermediate_size: 16 });
    await assert.rejects(
      () => loadModel(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${dir}: tensor "model.layers.0.mlp.gate_proj.weight" has shape [12, 8] but config.json ` +
            `implies [16, 8]`,
    );
  });
});

Deno.test("loadModel: missing tensors are named", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModel(dir, { ...TINY_CONFIG, tie_word_embeddings: false });
    await assert.rejects(
      () => loadModel(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${dir}: tensor "lm_head.weight" is missing from the checkpoint ` +
            `(or set "tie_word_embeddings": true)`,
    );
    await writeTinyModel(dir, TINY_CONFIG, (shapes) => shapes.delete("model.norm.weight"));
    await assert.rejects(
      () => loadModel(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message === `${dir}: tensor "model.norm.weight" is missing from the checkpoint`,
    );
    await writeTinyModel(dir, { ...TINY_CONFIG, model_type: "qwen2" });
    await assert.rejects(
      () => loadModel(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message ===
          `${dir}: tensor "model.layers.0.self_attn.q_proj.bias" is missing from the checkpoint`,
    );
  });
});

Deno.test("loadModel: a well-formed tiny model loads", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModel(dir, TINY_CONFIG);
    const weights = await loadModel(dir);
    assert.equal(weights.config.numKvHeads, 1);
    assert.deepEqual(weights.get("model.embed_tokens.weight").shape, [10, 8]);
  });
});
