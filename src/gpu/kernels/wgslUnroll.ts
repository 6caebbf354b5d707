/**
 * Helpers for WGSL generated fully unrolled, with named variables instead of private arrays
 * indexed in loops (which llvmpipe keeps in memory: 2–8× slower kernels).
 *
 * @module
 */

/** `f(0) sep f(1) sep … f(n − 1)`. */
export function each(n: number, f: (i: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

/** `max(a, max(b, …))` over WGSL expressions. */
export function maxOf(xs: string[]): string {
  return xs.length === 1 ? xs[0] : `max(${xs[0]}, ${maxOf(xs.slice(1))})`;
}

/**
 * WGSL statements adding `Σ_d a(d) · b(d)` over `d4` vec4 terms to the vec4 `acc`, written out
 * with no loop (so no iteration counts against llvmpipe's loop budget, `../loopBudget.ts`).
 */
export function unrolledDot(
  acc: string,
  d4: number,
  a: (d: number) => string,
  b: (d: number) => string,
  indent = "  ",
): string {
  return each(d4, (d) => `${indent}${acc} += ${a(d)} * ${b(d)};`);
}

/**
 * WGSL for kernels that score keys of a ragged cache against queries: `v` (private, `D4` vec4s,
 * filled by the caller — one side of the dot, pre-scaled) and two dots written out over the head
 * dimension, `dotKey(krow)` against the cache buffer `KC` (its `KC4` loader) and
 * `dotQuery(r, h)` against query row `queryRow` (a WGSL expression in `r`) of the `[rows][H·D]`
 * vec4 buffer `Q`. No loop counts against llvmpipe's budget (`../loopBudget.ts`).
 */
export function keyQueryDots(D4: number, queryRow: string): string {
  return `const D4 = ${D4}u;
var<private> v: array<vec4<f32>, D4>;
fn dotKey(krow: u32) -> f32 {
  var s = vec4<f32>(0.0);
${unrolledDot("s", D4, (d) => `v[${d}]`, (d) => `KC4(krow * D4 + ${d}u)`)}
  return (s.x + s.y) + (s.z + s.w);
}
fn dotQuery(r: u32, h: u32) -> f32 {
  var s = vec4<f32>(0.0);
${unrolledDot("s", D4, (d) => `v[${d}]`, (d) => `Q[(${queryRow} * p.H + h) * D4 + ${d}u]`)}
  return (s.x + s.y) + (s.z + s.w);
}`;
}
