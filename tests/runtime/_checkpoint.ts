/**
 * Test helper: writes a small random Llama-family (or Gemma 3) checkpoint (config.json +
 * model.safetensors) in the Hugging Face layout, for property tests of the GPU runtime against the
 * CPU reference.
 *
 * @module
 */

import { expectedTensorShapes } from "../../src/model/tensorShapes.ts";
import { parseConfig } from "../../src/model/config.ts";
/** The dtypes a safetensors checkpoint holds. */
export type FileDType = "F32" | "F16" | "BF16";
import { encode, randomF32, rng } from "../gpu/_reference.ts";
import { buildSafetensors } from "../model/safetensorsWriter.ts";

/** The shape and storage of a random checkpoint. */
export interface RandomModelSpec {
  /** `model_type`. */
  arch: "llama" | "mistral" | "qwen2" | "gemma3";
  /** Storage dtype of every tensor. */
  dtype: FileDType;
  hidden: number;
  heads: number;
  kvHeads: number;
  /** Written as `head_dim` unless `hidden / heads` equals it. */
  headDim: number;
  inter: number;
  vocab: number;
  layers: number;
  tied: boolean;
  /** Seed of the weights. */
  seed: number;
  /** `max_position_embeddings` (default 256). */
  maxPositions?: number;
  /** Gemma 3 only: `query_pre_attn_scalar` (default head_dim) and `layer_types` (all global). */
  gemma3?: { queryPreAttnScalar?: number; layerTypes?: ("sliding" | "full")[]; window?: number };
}

/** The `config.json` object of `spec`. */
export function configJson(spec: RandomModelSpec): Record<string, unknown> {
  const implicit = spec.hidden % spec.heads === 0 && spec.hidden / spec.heads === spec.headDim;
  const g = spec.gemma3 ?? {};
  const gemma3 = spec.arch !== "gemma3" ? {} : {
    query_pre_attn_scalar: g.queryPreAttnScalar ?? spec.headDim,
    sliding_window: g.window ?? 4,
    layer_types: (g.layerTypes ?? Array(spec.layers).fill("full")).map((t) => `${t}_attention`),
    hidden_activation: "gelu_pytorch_tanh",
  };
  return {
    model_type: spec.arch === "gemma3" ? "gemma3_text" : spec.arch,
    architectures: [
      {
        llama: "LlamaForCausalLM",
        mistral: "MistralForCausalLM",
        qwen2: "Qwen2ForCausalLM",
        gemma3: "Gemma3ForCausalLM",
      }[spec.arch],
    ],
    hidden_size: spec.hidden,
    intermediate_size: spec.inter,
    num_hidden_layers: spec.layers,
    num_attention_heads: spec.heads,
    num_key_value_heads: spec.kvHeads,
    ...(implicit ? {} : { head_dim: spec.headDim }),
    vocab_size: spec.vocab,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    max_position_embeddings: spec.maxPositions ?? 256,
    tie_word_embeddings: spec.tied,
    hidden_act: "silu",
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[spec.dtype],
    ...(spec.arch === "mistral" ? { sliding_window: null } : {}),
    ...(spec.arch === "qwen2" ? { use_sliding_window: false, sliding_window: 4096 } : {}),
    ...gemma3,
  };
}

/**
 * Writes `spec` into `dir`: norms ≈ 1 ± 0.2, biases ±0.5, other weights ±0.25 (large enough that
 * attention is far from uniform, so position and masking errors show in the logits).
 */
export async function writeRandomModel(dir: string, spec: RandomModelSpec): Promise<void> {
  const config = configJson(spec);
  const shapes = expectedTensorShapes(parseConfig(config, `${dir}/config.json`));
  const rand = rng(spec.seed);
  const tensors = [...shapes].map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (name.endsWith("norm.weight")) values = randomF32(rand, n, 0.2).map((x) => 1 + x);
    else if (name.endsWith(".bias")) values = randomF32(rand, n, 0.5);
    else values = randomF32(rand, n, name.includes("embed") ? 1 : 0.25);
    return { name, dtype: spec.dtype, shape, data: encode(values, spec.dtype).bytes };
  });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2));
  await Deno.writeFile(`${dir}/model.safetensors`, buildSafetensors(tensors));
}

/**
 * Writes a small random Gemma 3 checkpoint (hidden 32, 4 query and 2 KV heads of 16, F32, tied
 * embeddings, vocabulary 61) with `layers` layers and the given Gemma details into a temporary
 * folder, runs `fn` on that folder, and removes it.
 */
export async function withRandomGemma<T>(
  seed: number,
  layers: number,
  gemma3: NonNullable<RandomModelSpec["gemma3"]>,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-gemma3-" });
  try {
    await writeRandomModel(dir, {
      arch: "gemma3",
      dtype: "F32",
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 16,
      inter: 48,
      vocab: 61,
      layers,
      tied: true,
      seed,
      gemma3,
    });
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
