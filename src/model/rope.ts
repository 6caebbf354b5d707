/**
 * RoPE inverse frequencies, as Hugging Face computes them for Llama-family models, including the
 * `linear` and `llama3` `rope_scaling` variants. Computed in float64.
 *
 * @module
 */

/** A normalised `rope_scaling` setting. */
export type RopeScaling =
  | { kind: "none" }
  | { kind: "linear"; factor: number }
  | {
    kind: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };

/**
 * Returns `headDim / 2` inverse frequencies: `1 / theta^(2i/headDim)`, then the scaling:
 * `linear` divides by `factor`; `llama3` keeps high frequencies, divides low ones by `factor`
 * and blends smoothly in between.
 */
export function ropeInverseFrequencies(
  headDim: number,
  theta: number,
  scaling: RopeScaling,
): Float64Array {
  const half = headDim / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const base = 1 / theta ** ((2 * i) / headDim);
    invFreq[i] = scaleFrequency(base, scaling);
  }
  return invFreq;
}

function scaleFrequency(invFreq: number, scaling: RopeScaling): number {
  if (scaling.kind === "none") return invFreq;
  if (scaling.kind === "linear") return invFreq / scaling.factor;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
  const wavelength = (2 * Math.PI) / invFreq;
  const lowFreqWavelength = originalMaxPositions / lowFreqFactor;
  const highFreqWavelength = originalMaxPositions / highFreqFactor;
  if (wavelength < highFreqWavelength) return invFreq;
  if (wavelength > lowFreqWavelength) return invFreq / factor;
  const smooth = (originalMaxPositions / wavelength - lowFreqFactor) /
    (highFreqFactor - lowFreqFactor);
  return (1 - smooth) * (invFreq / factor) + smooth * invFreq;
}
