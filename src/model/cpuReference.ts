/**
 * A plain-TypeScript forward pass of Hugging Face `LlamaForCausalLM`, `MistralForCausalLM` and
 * `Qwen2ForCausalLM` and `Qwen3ForCausalLM`, used as the test oracle of the GPU runtime. It reads top to bottom:
 *
 * ```
 * x = embed_tokens[ids]
 * for each layer:
 *   h = rmsnorm(x, input_layernorm)
 *   q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)      split into heads
 *   q, k = rmsnorm(q, q_norm), rmsnorm(k, k_norm)           Qwen3 only, per head
 *   q, k = rope(q, position), rope(k, position)              rotate_half, keys cached after RoPE
 *   append k, v to the cache of each KV head
 *   query head j attends, through KV head j / (nH / nKV), to the cached entries up to its own
 *   x = x + attention Wo^T
 *   h = rmsnorm(x, post_attention_layernorm)
 *   x = x + (silu(h Wgate^T) * h Wup^T) Wdown^T
 * logits = rmsnorm(x, model.norm) lm_head^T                  lm_head = embed_tokens when tied
 * ```
 *
 * Gemma 3 (`config.gemma3`) departs from it: every RMSNorm scales by `1 + weight`; x starts as
 * `embed_tokens[ids] · √hidden`; q and k are normalised per head; sliding layers rotate with
 * their own RoPE base and see only their window; q·k is scaled by `query_pre_attn_scalar^-1/2`;
 * the attention output and the MLP output are normalised (`post_attention_layernorm`,
 * `post_feedforward_layernorm`) before each residual add, the MLP input by
 * `pre_feedforward_layernorm`; the MLP is `gelu_tanh(h Wgate^T) * h Wup^T`.
 *
 * Weights are upcast exactly to float32; activations and sums are float64. The model keeps its
 * own {@link CpuKvCache}, so feeding tokens in several calls (prefill, then one token at a time)
 * gives the same logits as one call.
 *
 * @module
 */

import { attendToEntries, type AttentionResult, type LogitBias } from "./cpuAttention.ts";
import { CpuKvCache } from "./cpuKvCache.ts";
import { addInPlace, applyRope, geglu, matmulTransposed, rmsNorm, swiglu } from "./cpuMath.ts";
import { tensorToFloat32 } from "./dtype.ts";
import { gemmaNormScale } from "./gemma3Config.ts";
import { EMBEDDING, FINAL_NORM, layerTensorNames, LM_HEAD } from "./tensorShapes.ts";
import type { ModelConfig, ModelWeights } from "./types.ts";

/** Weights of one decoder layer, decoded to float32. */
interface CpuLayer {
  inputNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  o: Float32Array;
  postAttentionNorm: Float32Array;
  /** Gemma 3: the MLP's input and output norms (its `postAttentionNorm` is the attention's). */
  preFeedforwardNorm?: Float32Array;
  postFeedforwardNorm?: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/** Options of {@link CpuReferenceModel.forward}. */
export interface ForwardOptions {
  /**
   * Absolute positions of the tokens (for RoPE and the sliding window). Default: continue after
   * the last position fed so far (`nextPosition`, `nextPosition + 1`, ...).
   */
  positions?: readonly number[];
  /** Which logits to compute: one row per token (`"all"`, the default) or only the last. */
  logits?: "all" | "last";
}

/** The CPU reference model: weights, a KV cache, and an incremental forward pass. */
export class CpuReferenceModel {
  /** The model's config. */
  readonly config: ModelConfig;
  /** The KV cache filled by {@link forward}; compact it with {@link keep}. */
  readonly cache: CpuKvCache;
  /**
   * Post-RoPE queries of the last {@link forward} call, per layer: `tokens × numHeads × headDim`
   * (what observation-window scoring needs).
   */
  lastQueries: Float64Array[] = [];
  /** The same queries before RoPE (after any q bias and q_norm), per layer. */
  lastQueriesBeforeRope: Float64Array[] = [];
  /** The last call's keys before RoPE (after any k bias and k_norm), per layer: `tokens × H_kv × d`. */
  lastKeysBeforeRope: Float64Array[] = [];
  /** The position the next token gets when `positions` is not given. */
  nextPosition = 0;

  private readonly biases = new Map<number, LogitBias>();
  private readonly embedding: Float32Array;
  private readonly layers: CpuLayer[];
  private readonly finalNorm: Float32Array;
  private readonly lmHead: Float32Array;

  /** Layer `layer`'s attention output projection (o_proj's weight), `[hidden][H · headDim]`. */
  outputProjection(layer: number): Float32Array {
    return this.layers[layer].o;
  }

  /** Decodes every weight to float32 once (exact for F16 and BF16). */
  constructor(weights: ModelWeights) {
    const config = weights.config;
    this.config = config;
    const decode = (name: string) => tensorToFloat32(weights.get(name));
    // Gemma's RMSNorm multiplies by 1 + w.
    const norm = (name: string) => config.gemma3 ? gemmaNormScale(weights.get(name)) : decode(name);
    this.embedding = decode(EMBEDDING);
    this.layers = [];
    for (let layer = 0; layer < config.numLayers; layer++) {
      const names = layerTensorNames(layer);
      this.layers.push({
        inputNorm: norm(names.inputNorm),
        q: decode(names.q),
        k: decode(names.k),
        v: decode(names.v),
        qBias: config.attentionBias ? decode(names.qBias) : undefined,
        kBias: config.attentionBias ? decode(names.kBias) : undefined,
        vBias: config.attentionBias ? decode(names.vBias) : undefined,
        qNorm: config.qkNorm ? norm(names.qNorm) : undefined,
        kNorm: config.qkNorm ? norm(names.kNorm) : undefined,
        o: decode(names.o),
        postAttentionNorm: norm(names.postAttentionNorm),
        preFeedforwardNorm: config.gemma3 ? norm(names.preFeedforwardNorm) : undefined,
        postFeedforwardNorm: config.gemma3 ? norm(names.postFeedforwardNorm) : undefined,
        gate: decode(names.gate),
        up: decode(names.up),
        down: decode(names.down),
      });
    }
    this.finalNorm = norm(FINAL_NORM);
    this.lmHead = config.tieWordEmbeddings ? this.embedding : decode(LM_HEAD);
    this.cache = new CpuKvCache(config.numLayers, config.numKvHeads, config.headDim);
  }

  /**
   * Runs `ids` through the model after everything fed before (their keys and values are appended
   * to the cache) and returns float32 logits: one `vocabSize` row per token, or only the last
   * token's row with `logits: "last"`.
   */
  forward(ids: readonly number[], opts: ForwardOptions = {}): Float32Array[] {
    const c = this.config;
    const tokens = ids.length;
    const positions = opts.positions ?? ids.map((_, t) => this.nextPosition + t);
    this.checkInputs(ids, positions);
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKvHeads * c.headDim;

    let x = new Float64Array(tokens * c.hiddenSize);
    for (let t = 0; t < tokens; t++) {
      const row = this.embedding.subarray(ids[t] * c.hiddenSize, (ids[t] + 1) * c.hiddenSize);
      x.set(row, t * c.hiddenSize);
    }
    const g3 = c.gemma3;
    if (g3) { for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i] * g3.embedScale); }

    this.lastQueries = [];
    this.lastQueriesBeforeRope = [];
    this.lastKeysBeforeRope = [];
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.layers[l];
      let h = rmsNorm(x, tokens, w.inputNorm, c.rmsNormEps);
      let q = matmulTransposed(h, tokens, w.q, qWidth, c.hiddenSize, w.qBias);
      let k = matmulTransposed(h, tokens, w.k, kvWidth, c.hiddenSize, w.kBias);
      if (w.qNorm && w.kNorm) {
        // Qwen3: RMSNorm over each head's head_dim values, before RoPE.
        q = rmsNorm(q, tokens * c.numHeads, w.qNorm, c.rmsNormEps);
        k = rmsNorm(k, tokens * c.numKvHeads, w.kNorm, c.rmsNormEps);
      }
      const v = matmulTransposed(h, tokens, w.v, kvWidth, c.hiddenSize, w.vBias);
      this.lastQueriesBeforeRope.push(q.slice());
      this.lastKeysBeforeRope.push(k.slice());
      const invFreq = g3?.layerWindows[l] ? g3.localRopeInvFreq : c.ropeInvFreq;
      for (let t = 0; t < tokens; t++) {
        applyRope(q, t * qWidth, c.numHeads, c.headDim, positions[t], invFreq);
        applyRope(k, t * kvWidth, c.numKvHeads, c.headDim, positions[t], invFreq);
      }
      this.lastQueries.push(q);

      const attention = this.attendCausally(l, q, k, v, positions);
      let attnOut = matmulTransposed(attention, tokens, w.o, c.hiddenSize, qWidth);
      if (g3) attnOut = rmsNorm(attnOut, tokens, w.postAttentionNorm, c.rmsNormEps);
      addInPlace(x, attnOut);

      h = rmsNorm(x, tokens, w.preFeedforwardNorm ?? w.postAttentionNorm, c.rmsNormEps);
      const gate = matmulTransposed(h, tokens, w.gate, c.intermediateSize, c.hiddenSize);
      const up = matmulTransposed(h, tokens, w.up, c.intermediateSize, c.hiddenSize);
      const act = g3 ? geglu(gate, up) : swiglu(gate, up);
      let mlpOut = matmulTransposed(act, tokens, w.down, c.hiddenSize, c.intermediateSize);
      if (w.postFeedforwardNorm) {
        mlpOut = rmsNorm(mlpOut, tokens, w.postFeedforwardNorm, c.rmsNormEps);
      }
      addInPlace(x, mlpOut);
    }
    this.nextPosition = Math.max(this.nextPosition, ...positions.map((p) => p + 1));

    const first = opts.logits === "last" ? tokens - 1 : 0;
    if (first > 0) x = x.subarray(first * c.hiddenSize);
    const rows = tokens - first;
    const normed = rmsNorm(x, rows, this.finalNorm, c.rmsNormEps);
    const logits = matmulTransposed(normed, rows, this.lmHead, c.vocabSize, c.hiddenSize);
    const out: Float32Array[] = [];
    for (let r = 0; r < rows; r++) {
      out.push(Float32Array.from(logits.subarray(r * c.vocabSize, (r + 1) * c.vocabSize)));
    }
    return out;
  }

  /**
   * Attention of query rows (`rows × headDim`, post-RoPE) over the cached entries `indices` of
   * (layer, kvHead) — attention restricted to an index set, no mask beyond that set.
   */
  attendSubset(
    layer: number,
    kvHead: number,
    queries: Float64Array,
    indices: ArrayLike<number>,
  ): AttentionResult {
    return attendToEntries(
      this.cache.keys(layer, kvHead),
      this.cache.values(layer, kvHead),
      this.config.headDim,
      queries,
      indices,
      this.biases.get(layer * this.config.numKvHeads + kvHead),
      this.config.gemma3?.attentionScale,
    );
  }

  /**
   * Adds `value` to the attention logit of cache entry `index` of (layer, kvHead) from now on
   * (one biased entry per head: RazorAttention's compensation token, appended with
   * `cache.append`). {@link keep} moves the bias with its entry, or drops it with the entry.
   */
  setLogitBias(layer: number, kvHead: number, index: number, value: number): void {
    this.cache.positions(layer, kvHead); // validates layer and head
    this.biases.set(layer * this.config.numKvHeads + kvHead, { index, value });
  }

  /** Keeps only the cached entries `indices` (strictly increasing) of (layer, kvHead). */
  keep(layer: number, kvHead: number, indices: ArrayLike<number>): void {
    this.cache.keep(layer, kvHead, indices);
    const key = layer * this.config.numKvHeads + kvHead;
    const bias = this.biases.get(key);
    if (!bias) return;
    const at = Array.prototype.indexOf.call(indices, bias.index);
    if (at < 0) this.biases.delete(key);
    else this.biases.set(key, { ...bias, index: at });
  }

  /** Empties the cache and restarts positions at 0. */
  reset(): void {
    this.cache.clear();
    this.biases.clear();
    this.nextPosition = 0;
    this.lastQueries = [];
    this.lastQueriesBeforeRope = [];
    this.lastKeysBeforeRope = [];
  }

  /**
   * Appends this call's keys and values to layer `layer`'s cache, then lets every query head of
   * every token attend to the entries of its KV head that precede or are the token itself (and,
   * with a sliding window, lie within it). Returns `tokens × numHeads × headDim`.
   */
  private attendCausally(
    layer: number,
    q: Float64Array,
    k: Float64Array,
    v: Float64Array,
    positions: readonly number[],
  ): Float64Array {
    const c = this.config;
    const d = c.headDim;
    const tokens = positions.length;
    const group = c.numHeads / c.numKvHeads;
    const out = new Float64Array(tokens * c.numHeads * d);
    for (let g = 0; g < c.numKvHeads; g++) {
      const before = this.cache.length(layer, g);
      for (let t = 0; t < tokens; t++) {
        const offset = (t * c.numKvHeads + g) * d;
        this.cache.append(
          layer,
          g,
          k.subarray(offset, offset + d),
          v.subarray(offset, offset + d),
          positions[t],
        );
      }
      const all = Int32Array.from({ length: before + tokens }, (_, i) => i);
      const cachedPositions = this.cache.positions(layer, g);
      for (let t = 0; t < tokens; t++) {
        let visible = all.subarray(0, before + t + 1);
        const window = c.gemma3 ? c.gemma3.layerWindows[layer] : c.slidingWindow;
        if (window !== undefined && window !== null) {
          const oldest = positions[t] - window;
          visible = visible.filter((i) => cachedPositions[i] > oldest);
        }
        // The query heads of one KV head are adjacent: heads g*group .. (g+1)*group - 1.
        const qOffset = (t * c.numHeads + g * group) * d;
        const queries = q.subarray(qOffset, qOffset + group * d);
        const { output } = this.attendSubset(layer, g, queries, visible);
        out.set(output, qOffset);
      }
    }
    return out;
  }

  private checkInputs(ids: readonly number[], positions: readonly number[]): void {
    if (ids.length === 0) throw new RangeError("forward needs at least one token");
    if (positions.length !== ids.length) {
      throw new RangeError(`${ids.length} tokens but ${positions.length} positions`);
    }
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new RangeError(
          `token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`,
        );
      }
    }
    for (const position of positions) {
      if (!Number.isInteger(position) || position < 0 || position > 0x7fffffff) {
        throw new RangeError(`position ${position} is not a non-negative 32-bit integer`);
      }
    }
  }
}

/** Index of the largest value (lowest index on ties) — greedy sampling. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
