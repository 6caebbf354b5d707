/**
 * WGSL shared by the kernels that give each thread a block of query rows × a tile of keys (the
 * flash prefill attention, H2O's column sums, KVzip's reconstruction scores): on llvmpipe every
 * storage load is gathered lane by lane, so what these kernels save is loads per multiply-add —
 * each key `vec4` loaded once serves every row of the block, each query `vec4` every key of the
 * tile (`../../../bench/NOTES.md`, "Why loads cost what they cost"). The head dimension is a loop
 * with a uniform bound (`p.d4`), never unrolled, so the kernels compile in seconds at head_dim 256.
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { PLANNED_LOOP_BUDGET } from "../loopBudget.ts";
import { each, maxOf } from "./wgslUnroll.ts";

/** The default heads per thread for a GQA group: the largest of 4, 2, 1 dividing it. */
export function defaultHeadsPerThread(group: number): number {
  return group % 4 === 0 ? 4 : group % 2 === 0 ? 2 : 1;
}

/**
 * A thread's block for a GQA group of `group` query heads: `HT` heads of the group
 * ({@link defaultHeadsPerThread}) × `QT` query rows, 8 (row, head) pairs in all.
 */
export function rowBlock(group: number): { QT: number; HT: number } {
  const HT = defaultHeadsPerThread(group);
  return { QT: Math.max(1, Math.floor(8 / HT)), HT };
}

/**
 * Keys (or rows) one dispatch walks in tiles of `tile` when each tile costs `iterationsPerTile`
 * counted loop iterations: all of them on a GPU; on a software adapter as many tiles as fit
 * llvmpipe's loop budget (`../loopBudget.ts`).
 */
export function tilesPerDispatch(ctx: GpuContext, tile: number, iterationsPerTile: number): number {
  return ctx.isFallbackAdapter
    ? tile * Math.floor(PLANNED_LOOP_BUDGET / iterationsPerTile)
    : 2 ** 31;
}

/**
 * Declares `s{r}: array<f32, keys>` for the `rows` rows and adds `Q[qb{r} + d] · KC4(row{t} + d)`
 * over the head dimension's `p.d4` vec4s. The caller defines the row bases `qb{r}` (vec4 indices
 * into the query buffer `Q`) and the key rows `row{t}` (vec4 indices for the cache loader `KC4`).
 */
export function blockDotsWgsl(rows: number, keys: number, indent: string): string {
  return `${each(rows, (r) => `${indent}var s${r} = array<f32, ${keys}>();`)}
${indent}for (var d = 0u; d < p.d4; d++) {
${each(keys, (t) => `${indent}  let k${t} = KC4(row${t} + d);`)}
${
    each(rows, (r) =>
      `${indent}  { let qv = Q[qb${r} + d];
${each(keys, (t) => `${indent}    s${r}[${t}] += dot(qv, k${t});`)} }`)
  }
${indent}}`;
}

/**
 * Row r's online-softmax step over one tile (after {@link blockDotsWgsl}): its running max `m{r}`
 * and sum `l{r}` take the logits `s{r}[t] · p.scale` of the keys where `visible(t)` holds (`NEG`,
 * a large negative constant, stands for the others).
 */
export function softmaxTileWgsl(
  r: number,
  keys: number,
  visible: (t: number) => string,
  indent: string,
): string {
  return `${indent}{
${each(keys, (t) => `${indent}  let x${t} = select(NEG, s${r}[${t}] * p.scale, ${visible(t)});`)}
${indent}  let mnew = ${maxOf([`m${r}`, ...Array.from({ length: keys }, (_, t) => `x${t}`)])};
${indent}  l${r} = l${r} * exp(m${r} - mnew) + ${
    each(keys, (t) => `select(0.0, exp(x${t} - mnew), ${visible(t)})`, " + ")
  };
${indent}  m${r} = mnew;
${indent}}`;
}

/**
 * Consecutive `[start, end)` ranges of `span` over `0 .. n` (one when `n` is 0): a kernel's loop
 * split over dispatches to stay within llvmpipe's loop budget (`../loopBudget.ts`).
 */
export function spanRanges(n: number, span: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let k0 = 0; k0 < Math.max(1, n); k0 += span) {
    out.push([k0, Math.min(k0 + span, 2 ** 32 - 1)]);
  }
  return out;
}
