/**
 * Uploads a loaded checkpoint to the GPU in its own dtype (16-bit weights stay 16-bit) and
 * names each layer's tensors.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { uploadInvFreq } from "../gpu/kernels/rope.ts";
import {
  type GpuMatrix,
  type GpuVector,
  releaseMatrix,
  uploadMatrix,
  uploadVector,
} from "../gpu/weights.ts";
import { ModelError } from "../model/errors.ts";
import { gemmaNormScale } from "../model/gemma3Config.ts";
import { EMBEDDING, FINAL_NORM, layerTensorNames, LM_HEAD } from "../model/tensorShapes.ts";
import type { ModelConfig, ModelWeights } from "../model/types.ts";

/** One decoder layer's weights on the GPU. */
export interface GpuLayerWeights {
  /** `input_layernorm`. */
  inputNorm: GpuVector;
  /** `q_proj` `[H·D, hidden]`. */
  q: GpuMatrix;
  /** `k_proj` `[Hkv·D, hidden]`. */
  k: GpuMatrix;
  /** `v_proj` `[Hkv·D, hidden]`. */
  v: GpuMatrix;
  /** `o_proj` `[hidden, H·D]`. */
  o: GpuMatrix;
  /** q/k/v biases (Qwen2). */
  qBias?: GpuVector;
  /** k bias. */
  kBias?: GpuVector;
  /** v bias. */
  vBias?: GpuVector;
  /** Qwen3 per-head query norm `[D]`. */
  qNorm?: GpuVector;
  /** Qwen3 per-head key norm `[D]`. */
  kNorm?: GpuVector;
  /** The MLP's input norm: `post_attention_layernorm` (Gemma 3: `pre_feedforward_layernorm`). */
  postNorm: GpuVector;
  /** Gemma 3: the attention output's norm before the residual add (`post_attention_layernorm`). */
  attnOutNorm?: GpuVector;
  /** Gemma 3: the MLP output's norm before the residual add (`post_feedforward_layernorm`). */
  mlpOutNorm?: GpuVector;
  /** `gate_proj` `[inter, hidden]`. */
  gate: GpuMatrix;
  /** `up_proj` `[inter, hidden]`. */
  up: GpuMatrix;
  /** `down_proj` `[hidden, inter]`. */
  down: GpuMatrix;
}

/** A whole model on the GPU. */
export interface GpuModelWeights {
  /** The model's config. */
  config: ModelConfig;
  /** `embed_tokens` `[vocab, hidden]`. */
  embed: GpuMatrix;
  /** Decoder layers. */
  layers: GpuLayerWeights[];
  /** `model.norm`. */
  finalNorm: GpuVector;
  /** `lm_head` (the embedding when tied). */
  lmHead: GpuMatrix;
  /** RoPE inverse frequencies (f32). */
  invFreq: GPUBuffer;
  /** Gemma 3: the sliding layers' RoPE inverse frequencies (their own base). */
  localInvFreq?: GPUBuffer;
  /** Bytes of weights uploaded. */
  bytes: number;
}

/** Uploads every tensor; `onProgress(done, total)` counts tensors. */
export function uploadWeights(
  ctx: GpuContext,
  weights: ModelWeights,
  onProgress?: (done: number, total: number) => void,
): GpuModelWeights {
  const c = weights.config;
  // The KV cache and attention kernels read heads as vec4s; refuse other shapes up front with a
  // user error (a RangeError from the cache would surface as an internal error).
  if (c.headDim % 4 !== 0) {
    throw new ModelError(
      `head_dim ${c.headDim} is not supported by the GPU runtime (it must be a multiple of 4)`,
    );
  }
  const total = 3 + c.numLayers * 9 + (c.tieWordEmbeddings ? 0 : 1);
  let done = 0;
  let bytes = 0;
  const tick = () => onProgress?.(++done, total);
  const matrix = (name: string) => {
    const t = weights.get(name);
    bytes += t.data.byteLength;
    const m = uploadMatrix(ctx, t);
    tick();
    return m;
  };
  const vector = (name: string) => {
    const t = weights.get(name);
    bytes += t.data.byteLength;
    return uploadVector(ctx, t);
  };
  // Gemma's RMSNorm multiplies by 1 + w: uploaded as such (f32), the norm kernels stay plain.
  const norm = (name: string) => {
    if (!c.gemma3) return vector(name);
    const w = gemmaNormScale(weights.get(name));
    bytes += w.byteLength;
    return uploadVector(ctx, {
      name,
      dtype: "F32",
      shape: [w.length],
      data: new Uint8Array(w.buffer),
    });
  };
  const embed = matrix(EMBEDDING);
  const layers: GpuLayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const n = layerTensorNames(l);
    const bias = (name: string) => (c.attentionBias ? vector(name) : undefined);
    const g3 = c.gemma3 !== undefined;
    layers.push({
      inputNorm: norm(n.inputNorm),
      q: matrix(n.q),
      k: matrix(n.k),
      v: matrix(n.v),
      o: matrix(n.o),
      qBias: bias(n.qBias),
      kBias: bias(n.kBias),
      vBias: bias(n.vBias),
      qNorm: c.qkNorm ? norm(n.qNorm) : undefined,
      kNorm: c.qkNorm ? norm(n.kNorm) : undefined,
      postNorm: norm(g3 ? n.preFeedforwardNorm : n.postAttentionNorm),
      attnOutNorm: g3 ? norm(n.postAttentionNorm) : undefined,
      mlpOutNorm: g3 ? norm(n.postFeedforwardNorm) : undefined,
      gate: matrix(n.gate),
      up: matrix(n.up),
      down: matrix(n.down),
    });
    tick();
    tick();
  }
  const finalNorm = norm(FINAL_NORM);
  tick();
  const lmHead = c.tieWordEmbeddings ? embed : matrix(LM_HEAD);
  const invFreq = uploadInvFreq(ctx, c.ropeInvFreq);
  const localInvFreq = c.gemma3 ? uploadInvFreq(ctx, c.gemma3.localRopeInvFreq) : undefined;
  tick();
  return { config: c, embed, layers, finalNorm, lmHead, invFreq, localInvFreq, bytes };
}

/** Frees every weight buffer. */
export function releaseWeights(ctx: GpuContext, w: GpuModelWeights): void {
  const vectors: (GpuVector | undefined)[] = [w.finalNorm];
  releaseMatrix(ctx, w.embed);
  if (w.lmHead !== w.embed) releaseMatrix(ctx, w.lmHead);
  for (const l of w.layers) {
    for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) releaseMatrix(ctx, m);
    vectors.push(l.inputNorm, l.postNorm, l.qBias, l.kBias, l.vBias, l.qNorm, l.kNorm);
    vectors.push(l.attnOutNorm, l.mlpOutNorm);
  }
  for (const v of vectors) if (v) ctx.release(v.buffer);
  ctx.release(w.invFreq);
  if (w.localInvFreq) ctx.release(w.localInvFreq);
}
