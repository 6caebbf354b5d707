/**
 * The tensors a Llama-family (or Gemma 3) checkpoint must hold for a given config, with their shapes
 * (Hugging Face names; Linear weights are `[out_features, in_features]`).
 *
 * @module
 */

import type { ModelConfig } from "./types.ts";

/** Hugging Face names of the tensors of decoder layer `layer`. */
export function layerTensorNames(layer: number): {
  inputNorm: string;
  q: string;
  k: string;
  v: string;
  o: string;
  qBias: string;
  kBias: string;
  vBias: string;
  qNorm: string;
  kNorm: string;
  postAttentionNorm: string;
  preFeedforwardNorm: string;
  postFeedforwardNorm: string;
  gate: string;
  up: string;
  down: string;
} {
  const prefix = `model.layers.${layer}`;
  return {
    inputNorm: `${prefix}.input_layernorm.weight`,
    q: `${prefix}.self_attn.q_proj.weight`,
    k: `${prefix}.self_attn.k_proj.weight`,
    v: `${prefix}.self_attn.v_proj.weight`,
    o: `${prefix}.self_attn.o_proj.weight`,
    qBias: `${prefix}.self_attn.q_proj.bias`,
    kBias: `${prefix}.self_attn.k_proj.bias`,
    vBias: `${prefix}.self_attn.v_proj.bias`,
    qNorm: `${prefix}.self_attn.q_norm.weight`,
    kNorm: `${prefix}.self_attn.k_norm.weight`,
    postAttentionNorm: `${prefix}.post_attention_layernorm.weight`,
    preFeedforwardNorm: `${prefix}.pre_feedforward_layernorm.weight`,
    postFeedforwardNorm: `${prefix}.post_feedforward_layernorm.weight`,
    gate: `${prefix}.mlp.gate_proj.weight`,
    up: `${prefix}.mlp.up_proj.weight`,
    down: `${prefix}.mlp.down_proj.weight`,
  };
}

/** Name of the token embedding matrix `[vocab, hidden]`. */
export const EMBEDDING = "model.embed_tokens.weight";
/** Name of the final RMSNorm weight `[hidden]`. */
export const FINAL_NORM = "model.norm.weight";
/** Name of the output projection `[vocab, hidden]` (absent when embeddings are tied). */
export const LM_HEAD = "lm_head.weight";

/**
 * Every tensor the forward pass reads, with its expected shape, in checkpoint order:
 * embedding, then per layer norms / attention (+ q/k/v biases when `attentionBias`, q/k norms
 * when `qkNorm`, Gemma 3's MLP norms) / MLP,
 * then the final norm and, unless tied, `lm_head.weight`.
 */
export function expectedTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: inter, vocabSize: vocab, headDim } = config;
  const qRows = config.numHeads * headDim;
  const kvRows = config.numKvHeads * headDim;
  const shapes = new Map<string, number[]>();
  shapes.set(EMBEDDING, [vocab, h]);
  for (let layer = 0; layer < config.numLayers; layer++) {
    const names = layerTensorNames(layer);
    shapes.set(names.inputNorm, [h]);
    shapes.set(names.q, [qRows, h]);
    shapes.set(names.k, [kvRows, h]);
    shapes.set(names.v, [kvRows, h]);
    if (config.attentionBias) {
      shapes.set(names.qBias, [qRows]);
      shapes.set(names.kBias, [kvRows]);
      shapes.set(names.vBias, [kvRows]);
    }
    if (config.qkNorm) {
      shapes.set(names.qNorm, [headDim]);
      shapes.set(names.kNorm, [headDim]);
    }
    shapes.set(names.o, [h, qRows]);
    shapes.set(names.postAttentionNorm, [h]);
    if (config.gemma3) {
      shapes.set(names.preFeedforwardNorm, [h]);
      shapes.set(names.postFeedforwardNorm, [h]);
    }
    shapes.set(names.gate, [inter, h]);
    shapes.set(names.up, [inter, h]);
    shapes.set(names.down, [h, inter]);
  }
  shapes.set(FINAL_NORM, [h]);
  if (!config.tieWordEmbeddings) shapes.set(LM_HEAD, [vocab, h]);
  return shapes;
}
