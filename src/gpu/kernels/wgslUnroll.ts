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
