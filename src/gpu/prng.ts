/**
 * The sampler's deterministic random numbers: a PCG hash of (seed, step), mirrored exactly in
 * WGSL and TypeScript so that tests and the CPU reference draw the same uniforms.
 *
 * @module
 */

/** PCG-RXS-M-XS hash of a u32 (TypeScript mirror of the WGSL `pcg`). */
export function pcgHash(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** Splits a non-negative integer seed (< 2⁵³) into u32 words `[lo, hi]`. */
export function seedWords(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
  }
  return [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
}

/** The uniform in [0, 1) drawn at `step` for `seed` (24 random bits, exact in f32). */
export function samplerUniform(seed: number, step: number): number {
  const [lo, hi] = seedWords(seed);
  const x = pcgHash((pcgHash(lo ^ pcgHash(hi)) ^ (step >>> 0)) >>> 0);
  return (x >>> 8) / 16777216;
}

/** WGSL of `fn samplerUniform(seedLo, seedHi, step) -> f32`, identical to the TypeScript one. */
export const PRNG_WGSL = `fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn samplerUniform(lo: u32, hi: u32, step: u32) -> f32 {
  let x = pcg(pcg(lo ^ pcg(hi)) ^ step);
  return f32(x >> 8u) / 16777216.0;
}
`;
