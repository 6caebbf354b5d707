/**
 * Random-weight checkpoints at realistic shapes, built in memory, for speed runs (the numbers
 * then measure the runtime, not a model's quality; tables say so).
 *
 * @module
 */

import { parseConfig } from "../src/model/config.ts";
import { weightsFromTensors } from "../src/model/loadModel.ts";
import { expectedTensorShapes } from "../src/model/tensorShapes.ts";
import type { ModelConfig, ModelWeights, Tensor } from "../src/model/types.ts";

/** Named shapes for benchmarks. */
export const BENCH_SHAPES: Record<string, Record<string, number>> = {
  /** ~26M parameters: hidden 512, 8 layers, 8 query / 2 KV heads of 64. */
  small: {
    hidden_size: 512,
    intermediate_size: 1536,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    vocab_size: 4096,
  },
  /**
   * ~27M parameters: 'small' with multi-head attention (8 query = 8 KV heads of 64), the layout of
   * the Llama-2-7B-architecture model SnapKV's speed figure was measured on (LWM-Text-Chat-1M):
   * 4× the KV bytes per token of 'small', so attention weighs more in a decode step.
   */
  "small-mha": {
    hidden_size: 512,
    intermediate_size: 1376,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    vocab_size: 4096,
  },
  /**
   * ~2.5M parameters: 4 layers, hidden 256, 4 query / 2 KV heads of 64. For peak-memory sweeps
   * to 64K-token prompts, where one-shot prefill attention (quadratic) would take hours at
   * 'small'; the KV bytes per token are a quarter of 'small''s.
   */
  tiny: {
    hidden_size: 256,
    intermediate_size: 768,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 4096,
  },
  /** ~1.2B parameters: a Llama-3.2-1B-like config (hidden 2048, 16 layers, 32/8 heads, 128k vocab). */
  "1b": {
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
  },
};

/** The Llama config of a bench shape (bf16, untied, RoPE θ 5e5) with `maxPositions` positions. */
export function benchConfig(shape: string, maxPositions: number): ModelConfig {
  const dims = BENCH_SHAPES[shape];
  if (!dims) {
    throw new Error(`unknown bench shape '${shape}' (${Object.keys(BENCH_SHAPES).join(", ")})`);
  }
  return parseConfig({
    model_type: "llama",
    hidden_act: "silu",
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    max_position_embeddings: maxPositions,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    ...dims,
  }, `<bench ${shape}>`);
}

/** Bytes of a bench shape's bf16 weights (what a decode step reads once per token). */
export function benchWeightBytes(shape: string): number {
  let n = 0;
  for (const dims of expectedTensorShapes(benchConfig(shape, 1)).values()) {
    n += dims.reduce((a, b) => a * b, 1);
  }
  return 2 * n;
}

/** A random bf16 Llama checkpoint of the named shape with `maxPositions` positions. */
export function randomModel(shape: string, maxPositions: number, seed = 1): ModelWeights {
  const config = benchConfig(shape, maxPositions);
  let state = seed >>> 0;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const tensors = new Map<string, Tensor>();
  for (const [name, shapeOf] of expectedTensorShapes(config)) {
    const n = shapeOf.reduce((a, b) => a * b, 1);
    const bits = new Uint16Array(n);
    const isNorm = name.endsWith("norm.weight");
    for (let i = 0; i < n; i++) {
      // xorshift: a value in [-0.05, 0.05) (norms: ≈ 1), stored as bf16 (the top 16 bits).
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      const u = (state >>> 0) / 4294967296;
      const value = isNorm ? 1 + (u - 0.5) * 0.1 : (u - 0.5) * 0.1;
      f32[0] = value;
      bits[i] = u32[0] >>> 16;
    }
    tensors.set(name, { name, dtype: "BF16", shape: shapeOf, data: new Uint8Array(bits.buffer) });
  }
  return weightsFromTensors(`<bench ${shape}>`, config, tensors);
}
