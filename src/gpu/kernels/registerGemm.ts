/**
 * The register GEMM of `matmul.ts` (M > 1, prefill): each thread owns a TM×TN register tile
 * (rows of x × rows of W, {@link gemmTile}), generated unrolled with named registers
 * (`wgslUnroll.ts`); the x rows are chosen by the workgroup id only, so every thread of a
 * workgroup reads the same x values. Block-int8 weights go block by block ({@link gemmBlockCode}).
 *
 * @module
 */

import { blockElements, type BlockInt8DType } from "../../model/blockInt8.ts";
import { I8X4_WGSL, matmulDecls, type MatmulVariant } from "./matmulCommon.ts";
import { each } from "./wgslUnroll.ts";

/**
 * GEMM register tile per thread (rows of x × rows of W): 16×8 from 16 rows of x, else 8×8.
 * Measured on llvmpipe, three alternating rounds each (GFLOP/s): 1024³ f32 16×8 8.7–18.8 vs 16×4
 * 8.0–13.3; bf16 512×1536×512 10.4–12.4 vs 7.4–8.6; 512×512×1536 11.2–12.6 vs 7.9–9.5; 512×128×512
 * 5.5–7.3 vs 4.7–6.2 (12×8 ties with 16×8, 24×8 and 32×8 are slower: register spills).
 */
export function gemmTile(m: number): [number, number] {
  return m >= 16 ? [16, 8] : [8, 8];
}

/** The entry point up to the first W row: the thread's rows `r0…` of W and `m0…` of x. */
function gemmHead(wg: number, TM: number, TN: number): string {
  return `
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r0 = (wid.x * ${wg}u + li) * ${TN}u;
  // past the last row: no work (llvmpipe skips a SIMD batch whose lanes all left)
  if (r0 >= p.rows) { return; }
  let m0 = wid.y * ${TM}u;`;
}

/** The x rows and the zeroed `TM×TN` accumulators. */
function gemmTile0(TM: number, TN: number): string {
  return `${each(TM, (i) => `  let xm${i} = min(m0 + ${i}u, p.M - 1u);`)}
${each(TM, (i) => each(TN, (j) => `  var a${i}_${j} = 0.0;`))}`;
}

/** The accumulators stored (rows of x and of W past the end skipped). */
function gemmStores(TM: number, TN: number): string {
  return each(TM, (i) =>
    `  if (m0 + ${i}u < p.M) {
${each(TN, (j) => `    if (r0 + ${j}u < p.rows) { store(m0 + ${i}u, r0 + ${j}u, a${i}_${j}); }`)}
  }`);
}

/**
 * GEMM: a workgroup of `wg` threads (64, fewer for short W) covers `wg·TN` rows of W × `TM` rows
 * of x; each thread owns a `TM×TN` register tile (named scalars, unrolled): per K step TM x vec4s
 * and TN W vec4s are loaded for TM·TN dot products. With `v.half` the operands are `vec4<f16>` and
 * each 4-element dot product is computed in f16, then added to the f32 accumulator.
 */
export function gemmCode(v: MatmulVariant, TM: number, TN: number, wg: number): string {
  const [W4, x4] = v.half ? ["W4h", "x4h"] : ["W4", "x4"];
  const term = (j: number) => v.half ? `f32(dot(x, w${j}))` : `dot(x, w${j})`;
  return matmulDecls(v) + gemmHead(wg, TM, TN) + `
  let K4 = (p.K + 3u) / 4u;
${each(TN, (j) => `  let wb${j} = min(r0 + ${j}u, p.rows - 1u) * p.kStride4;`)}
${gemmTile0(TM, TN)}
  for (var k4 = 0u; k4 < K4; k4++) {
${each(TN, (j) => `    let w${j} = ${W4}(wb${j} + k4);`)}
${
    each(TM, (i) =>
      `    { let x = ${x4}(xm${i}, k4);
${each(TN, (j) => `      a${i}_${j} += ${term(j)};`)} }`)
  }
  }
${gemmStores(TM, TN)}
}
`;
}

/**
 * {@link gemmCode} over block-int8 weights: the K loop goes block by block, so each block's scale
 * and min are loaded once per W row rather than with every word (three loads per `vec4` of W
 * become one and 2/Q); the weights are dequantised as `W4` does, `scale · code + min`, so the
 * results are those of the generic kernel. Needs K a whole number of blocks (GGUF rows are).
 */
export function gemmBlockCode(v: MatmulVariant, TM: number, TN: number, wg: number): string {
  const Q = blockElements(v.dtype as BlockInt8DType) / 4;
  return matmulDecls(v) + I8X4_WGSL + gemmHead(wg, TM, TN) + `
  let blocks = p.K / ${4 * Q}u;
${
    each(TN, (j) =>
      `  let wb${j} = min(r0 + ${j}u, p.rows - 1u) * (p.kStride4 / ${Q}u) * ${Q + 2}u;`)
  }
${gemmTile0(TM, TN)}
  for (var blk = 0u; blk < blocks; blk++) {
    let at = blk * ${Q + 2}u;
${
    each(TN, (j) =>
      `    let sc${j} = bitcast<f32>(W[wb${j} + at + ${Q}u]);
    let mn${j} = bitcast<f32>(W[wb${j} + at + ${Q + 1}u]);`)
  }
    for (var q = 0u; q < ${Q}u; q++) {
${each(TN, (j) => `      let w${j} = sc${j} * i8x4(W[wb${j} + at + q]) + mn${j};`)}
${
    each(TM, (i) =>
      `      { let x = x4(xm${i}, blk * ${Q}u + q);
${each(TN, (j) => `        a${i}_${j} += dot(x, w${j});`)} }`)
  }
    }
  }
${gemmStores(TM, TN)}
}
`;
}
