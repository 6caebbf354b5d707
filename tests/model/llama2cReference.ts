/**
 * Test helper: an independent second implementation of the Llama forward pass that reads the
 * original llama2.c checkpoint format (`stories260K.bin`) and follows llama2.c's conventions —
 * RoPE on adjacent pairs (2i, 2i+1) with unpermuted wq/wk, float32 activations, one token at a
 * time with its own cache. Written from the format description in
 * `shared/models/stories260K/README.md`. Agreement with {@link CpuReferenceModel} on the
 * converted HF checkpoint checks the HF path (rotate_half RoPE, GQA, tied head, cache)
 * against a different formulation.
 *
 * @module
 */

/** Sizes from the 7-int32 header of a llama2.c checkpoint. */
export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

/** A llama2.c-format model with its own KV cache; {@link step} feeds one token. */
export class Llama2cModel {
  readonly config: Llama2cConfig;
  private readonly w: Record<string, Float32Array> = {};
  private readonly keyCache: Float32Array;
  private readonly valueCache: Float32Array;

  /** Parses a `.bin` checkpoint (header, then float32 arrays in llama2.c order). */
  constructor(bytes: Uint8Array) {
    const header = new Int32Array(bytes.buffer, bytes.byteOffset, 7);
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = header;
    this.config = {
      dim,
      hiddenDim,
      nLayers,
      nHeads,
      nKvHeads,
      vocabSize: Math.abs(vocab),
      seqLen,
    };
    const headSize = dim / nHeads;
    const kvDim = nKvHeads * headSize;
    const floats = new Float32Array(
      bytes.buffer,
      bytes.byteOffset + 28,
      (bytes.byteLength - 28) / 4,
    );
    let offset = 0;
    const take = (name: string, count: number) => {
      this.w[name] = floats.subarray(offset, offset + count);
      offset += count;
    };
    take("tokenEmbedding", this.config.vocabSize * dim);
    take("rmsAtt", nLayers * dim);
    take("wq", nLayers * dim * dim);
    take("wk", nLayers * kvDim * dim);
    take("wv", nLayers * kvDim * dim);
    take("wo", nLayers * dim * dim);
    take("rmsFfn", nLayers * dim);
    take("w1", nLayers * hiddenDim * dim);
    take("w2", nLayers * dim * hiddenDim);
    take("w3", nLayers * hiddenDim * dim);
    take("rmsFinal", dim);
    offset += seqLen * headSize; // legacy freq_cis_real and freq_cis_imag, unused
    if (vocab < 0) take("wcls", this.config.vocabSize * dim);
    else this.w.wcls = this.w.tokenEmbedding;
    this.keyCache = new Float32Array(nLayers * seqLen * kvDim);
    this.valueCache = new Float32Array(nLayers * seqLen * kvDim);
  }

  /** Runs token `token` at position `pos` (positions must be fed in order) and returns logits. */
  step(token: number, pos: number): Float32Array {
    const { dim, hiddenDim, nLayers, nHeads, nKvHeads, seqLen, vocabSize } = this.config;
    const headSize = dim / nHeads;
    const kvDim = nKvHeads * headSize;
    const w = this.w;
    const x = w.tokenEmbedding.slice(token * dim, (token + 1) * dim);
    for (let l = 0; l < nLayers; l++) {
      let xb = rmsnorm(x, w.rmsAtt.subarray(l * dim, (l + 1) * dim));
      const q = matvec(w.wq.subarray(l * dim * dim), xb, dim);
      const k = matvec(w.wk.subarray(l * kvDim * dim), xb, kvDim);
      const v = matvec(w.wv.subarray(l * kvDim * dim), xb, kvDim);
      for (let i = 0; i < dim; i += 2) {
        const freq = 1 / 10000 ** ((i % headSize) / headSize);
        const cos = Math.cos(pos * freq);
        const sin = Math.sin(pos * freq);
        for (const vec of i < kvDim ? [q, k] : [q]) {
          const a = vec[i];
          const b = vec[i + 1];
          vec[i] = a * cos - b * sin;
          vec[i + 1] = a * sin + b * cos;
        }
      }
      const layerBase = l * seqLen * kvDim;
      this.keyCache.set(k, layerBase + pos * kvDim);
      this.valueCache.set(v, layerBase + pos * kvDim);
      xb = new Float32Array(dim);
      for (let h = 0; h < nHeads; h++) {
        const kvOffset = Math.floor(h / (nHeads / nKvHeads)) * headSize;
        const scores = new Float32Array(pos + 1);
        for (let t = 0; t <= pos; t++) {
          let dot = 0;
          for (let i = 0; i < headSize; i++) {
            dot += q[h * headSize + i] * this.keyCache[layerBase + t * kvDim + kvOffset + i];
          }
          scores[t] = dot / Math.sqrt(headSize);
        }
        softmax(scores);
        for (let t = 0; t <= pos; t++) {
          for (let i = 0; i < headSize; i++) {
            xb[h * headSize + i] += scores[t] *
              this.valueCache[layerBase + t * kvDim + kvOffset + i];
          }
        }
      }
      addTo(x, matvec(w.wo.subarray(l * dim * dim), xb, dim));
      xb = rmsnorm(x, w.rmsFfn.subarray(l * dim, (l + 1) * dim));
      const hb = matvec(w.w1.subarray(l * hiddenDim * dim), xb, hiddenDim);
      const hb2 = matvec(w.w3.subarray(l * hiddenDim * dim), xb, hiddenDim);
      for (let i = 0; i < hiddenDim; i++) hb[i] = (hb[i] / (1 + Math.exp(-hb[i]))) * hb2[i];
      addTo(x, matvec(w.w2.subarray(l * dim * hiddenDim), hb, dim));
    }
    return matvec(w.wcls, rmsnorm(x, w.rmsFinal), vocabSize);
  }
}

function matvec(weight: Float32Array, x: Float32Array, rows: number): Float32Array {
  const n = x.length;
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += weight[r * n + i] * x[i];
    out[r] = sum;
  }
  return out;
}

function rmsnorm(x: Float32Array, weight: Float32Array): Float32Array {
  let ss = 0;
  for (const value of x) ss += value * value;
  const scale = 1 / Math.sqrt(ss / x.length + 1e-5);
  return x.map((value, i) => weight[i] * (scale * value));
}

function softmax(x: Float32Array): void {
  const max = Math.max(...x);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.exp(x[i] - max);
    sum += x[i];
  }
  for (let i = 0; i < x.length; i++) x[i] /= sum;
}

function addTo(x: Float32Array, delta: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] += delta[i];
}
