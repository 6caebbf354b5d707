/** Limits on a model config's dimensions. @module */

/**
 * The largest value each dimension may have, checked before anything is allocated: far above
 * every released model (Llama 3.1 405B: 126 layers, hidden 16384, 128 heads; Gemma 3: head_dim
 * 256, vocabulary 262,144), far below what would overflow a buffer size or a kernel's index.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  hidden_size: 65536,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 512,
  vocab_size: 1 << 24,
  max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
};
