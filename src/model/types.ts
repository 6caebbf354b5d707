/**
 * Shared data types of the model layer: what a loaded Hugging Face checkpoint looks like to the
 * rest of kvpolicy (the CPU reference, the GPU runtime, the CLI).
 *
 * @module
 */

/**
 * Storage dtypes: F32, F16 and BF16 (safetensors and GGUF), and the block-int8 forms GGUF's
 * quantized tensors are loaded as (`blockInt8.ts`).
 */
export type DType = "F32" | "F16" | "BF16" | "I8x32" | "I8x16";

/** One tensor as stored in the checkpoint: raw little-endian bytes in its own dtype. */
export interface Tensor {
  /** Hugging Face tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  /** Storage dtype; 16-bit tensors stay 16-bit (never inflated on load). */
  dtype: DType;
  /** Shape, row-major; Linear weights are `[out_features, in_features]`. */
  shape: number[];
  /** Raw bytes (length = product(shape) × bytes per element). */
  data: Uint8Array;
}

/** Supported decoder families (`config.json` → `model_type`; Gemma 3's is `gemma3_text`). */
export type Architecture = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma3";

/**
 * What a Gemma 3 decoder (arXiv 2503.19786; transformers' `Gemma3ForCausalLM`) does beyond the
 * Llama layout: RMSNorm scales by `1 + weight`; embeddings are multiplied by √hidden; every layer
 * normalises its attention output and its MLP output (`post_attention_layernorm`,
 * `post_feedforward_layernorm`) before the residual add, and its MLP input with
 * `pre_feedforward_layernorm`; the MLP is GeGLU (`gelu_pytorch_tanh(gate) · up`); q and k are
 * RMS-normalised per head before RoPE (`qkNorm`); attention logits are scaled by
 * `query_pre_attn_scalar^-1/2`; and most layers attend through a sliding window with their own
 * RoPE base.
 */
export interface Gemma3Details {
  /** √hidden_size, as float32: the factor on every embedding row. */
  embedScale: number;
  /** `query_pre_attn_scalar ** -0.5`: the factor on q·k. */
  attentionScale: number;
  /**
   * Per layer, its sliding window W (a query at position p sees keys at positions > p − W), or
   * null for a global layer (`layer_types`).
   */
  layerWindows: (number | null)[];
  /** RoPE inverse frequencies of the sliding layers (their own base, `rope_local_base_freq`). */
  localRopeInvFreq: Float64Array;
}

/** A validated, normalised `config.json`. All sizes are checked positive integers. */
export interface ModelConfig {
  /** `model_type`. */
  architecture: Architecture;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `intermediate_size`. */
  intermediateSize: number;
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `num_attention_heads` (query heads). */
  numHeads: number;
  /** `num_key_value_heads` (defaults to `num_attention_heads`). */
  numKvHeads: number;
  /** `head_dim`, or `hidden_size / num_attention_heads`. */
  headDim: number;
  /** `vocab_size`. */
  vocabSize: number;
  /** `rms_norm_eps`. */
  rmsNormEps: number;
  /** `rope_theta`. */
  ropeTheta: number;
  /** RoPE inverse frequencies (headDim / 2 entries) after any `rope_scaling`. */
  ropeInvFreq: Float64Array;
  /** `max_position_embeddings`. */
  maxPositions: number;
  /** `tie_word_embeddings`: lm_head is the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2, or `attention_bias: true`). */
  attentionBias: boolean;
  /**
   * Qwen3: every query and key head is RMS-normalised over `head_dim` (weights `q_norm`,
   * `k_norm`) after the projection and before RoPE.
   */
  qkNorm: boolean;
  /** `bos_token_id`, if any. */
  bosTokenId: number | null;
  /** `eos_token_id` (a number or a list in HF configs), normalised to a list. */
  eosTokenIds: number[];
  /**
   * Mistral `sliding_window`: a query at position p attends only to keys at positions
   * `> p - slidingWindow`. Absent when no window applies (null, or not smaller than
   * `maxPositions`). Runtimes that do not implement it must refuse such a config.
   */
  slidingWindow?: number;
  /** Gemma 3's differences from the Llama layout; absent for every other family. */
  gemma3?: Gemma3Details;
}

/** A loaded checkpoint: its config and its tensors by HF name. */
export interface ModelWeights {
  /** The folder it was loaded from. */
  dir: string;
  /** The validated config. */
  config: ModelConfig;
  /** Returns the named tensor or throws a clear error naming it. */
  get(name: string): Tensor;
  /** Whether the checkpoint holds the named tensor. */
  has(name: string): boolean;
}
