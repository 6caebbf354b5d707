/**
 * Float64 building blocks of the CPU reference forward pass: matrix products against
 * `[out, in]` weights, RMSNorm, rotate_half RoPE and SwiGLU. Weights are float32 arrays
 * (decoded exactly from the checkpoint); activations and all sums are float64.
 *
 * @module
 */

/**
 * `out[t, o] = sum_i x[t, i] * weight[o, i] (+ bias[o])` for `rows` input rows: `x` is
 * `rows × inFeatures`, `weight` is `outFeatures × inFeatures`. Returns `rows × outFeatures`.
 * Each sum runs over i in order; four rows share each weight load (about 1.4× faster than one
 * row at a time, same results bit for bit).
 */
export function matmulTransposed(
  x: Float64Array,
  rows: number,
  weight: Float32Array,
  outFeatures: number,
  inFeatures: number,
  bias?: Float32Array,
): Float64Array {
  const out = new Float64Array(rows * outFeatures);
  const n = inFeatures;
  const ROW_BLOCK = 16;
  for (let rowStart = 0; rowStart < rows; rowStart += ROW_BLOCK) {
    const rowEnd = Math.min(rows, rowStart + ROW_BLOCK);
    for (let o = 0; o < outFeatures; o++) {
      const w = o * n;
      const b = bias === undefined ? 0 : bias[o];
      let t = rowStart;
      for (; t + 4 <= rowEnd; t += 4) {
        const x0 = t * n, x1 = x0 + n, x2 = x1 + n, x3 = x2 + n;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let i = 0; i < n; i++) {
          const wi = weight[w + i];
          s0 += x[x0 + i] * wi;
          s1 += x[x1 + i] * wi;
          s2 += x[x2 + i] * wi;
          s3 += x[x3 + i] * wi;
        }
        out[t * outFeatures + o] = s0 + b;
        out[(t + 1) * outFeatures + o] = s1 + b;
        out[(t + 2) * outFeatures + o] = s2 + b;
        out[(t + 3) * outFeatures + o] = s3 + b;
      }
      for (; t < rowEnd; t++) {
        const x0 = t * n;
        let sum = 0;
        for (let i = 0; i < n; i++) sum += x[x0 + i] * weight[w + i];
        out[t * outFeatures + o] = sum + b;
      }
    }
  }
  return out;
}

/** RMSNorm of each of `rows` rows of width `weight.length`: `w * x / sqrt(mean(x²) + eps)`. */
export function rmsNorm(
  x: Float64Array,
  rows: number,
  weight: Float32Array,
  eps: number,
): Float64Array {
  const width = weight.length;
  const out = new Float64Array(rows * width);
  for (let t = 0; t < rows; t++) {
    const offset = t * width;
    let sumOfSquares = 0;
    for (let i = 0; i < width; i++) sumOfSquares += x[offset + i] * x[offset + i];
    const scale = 1 / Math.sqrt(sumOfSquares / width + eps);
    for (let i = 0; i < width; i++) out[offset + i] = weight[i] * (x[offset + i] * scale);
  }
  return out;
}

/**
 * Rotates, in place, every head vector of one token (`heads × headDim` values starting at
 * `offset`) by its position, rotate_half style: element i pairs with element i + headDim/2,
 * at angle `position * invFreq[i]`.
 */
export function applyRope(
  x: Float64Array,
  offset: number,
  heads: number,
  headDim: number,
  position: number,
  invFreq: Float64Array,
): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = position * invFreq[i];
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    for (let h = 0; h < heads; h++) {
      const base = offset + h * headDim;
      const first = x[base + i];
      const second = x[base + i + half];
      x[base + i] = first * cos - second * sin;
      x[base + i + half] = second * cos + first * sin;
    }
  }
}

/** SwiGLU activation in place of `gate`: `silu(gate) * up`, elementwise. */
export function swiglu(gate: Float64Array, up: Float64Array): Float64Array {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    gate[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
  return gate;
}

/**
 * GeGLU as Gemma computes it: `gelu_pytorch_tanh(gate) · up`, with the tanh approximation
 * `0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`. Overwrites and returns `gate`.
 */
export function geglu(gate: Float64Array, up: Float64Array): Float64Array {
  const c = Math.sqrt(2 / Math.PI);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    gate[i] = 0.5 * g * (1 + Math.tanh(c * (g + 0.044715 * g * g * g))) * up[i];
  }
  return gate;
}

/** Adds `delta` to `x` elementwise, in place. */
export function addInPlace(x: Float64Array, delta: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += delta[i];
}
