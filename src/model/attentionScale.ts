/**
 * The factor on q·k in a model's attention: `1/√head_dim` (Vaswani et al., arXiv 1706.03762), or
 * Gemma 3's `query_pre_attn_scalar^-1/2` (transformers' `Gemma3Attention.scaling`), which differs
 * from `1/√head_dim` in some checkpoints (Gemma 3 27B: head_dim 128, scalar 168). Every kernel
 * and score that reads attention weights the model computes uses this factor.
 *
 * @module
 */

import type { ModelConfig } from "./types.ts";

/** The scale of `config`'s attention logits. */
export function attentionScale(config: ModelConfig): number {
  return config.gemma3?.attentionScale ?? 1 / Math.sqrt(config.headDim);
}
