/**
 * GEMM with workgroup-memory tiles, the classic GPU layout: a workgroup of 16×16 threads computes
 * a 64×64 block of `y = x·Wᵀ` (64 rows of x × 64 rows of W); for every 16-wide slice of K both
 * operand tiles are staged in workgroup memory (each thread loads one vec4 of x and one of W),
 * then each thread accumulates its 4×4 outputs from broadcast reads. The register GEMM of
 * `matmul.ts` was tuned on llvmpipe (where workgroup memory is slow) and reached 16 % of cuBLAS
 * SGEMM on an H100; this kernel is the candidate for GPUs, selected with `path: "tiled"` and
 * measured by `kernelThroughput` / `kernels_bench` next to it until a GPU run decides the default.
 *
 * Same bindings and epilogue (bias, accumulate) as `matmul.ts` (`matmulCommon.ts`).
 *
 * @module
 */

import { matmulDecls, type MatmulVariant } from "./matmulCommon.ts";

/** Rows of x and of W per workgroup (a 64×64 output block). */
export const TILED_BLOCK = 64;
/** K elements per staged slice. */
const BK = 16;

/** WGSL of the tiled GEMM for one specialisation (dispatch: ⌈rows/64⌉ × ⌈M/64⌉ workgroups). */
export function tiledGemmCode(v: MatmulVariant): string {
  return matmulDecls(v) + `
const BK4 = ${BK / 4}u;
// Tiles stored k-major as vec4s of 4 consecutive rows: xt[k][m / 4], wt[k][n / 4].
var<workgroup> xt: array<vec4<f32>, ${BK * (TILED_BLOCK / 4)}>;
var<workgroup> wt: array<vec4<f32>, ${BK * (TILED_BLOCK / 4)}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wid.x * ${TILED_BLOCK}u;
  let m0 = wid.y * ${TILED_BLOCK}u;
  let K4 = (p.K + 3u) / 4u;
  // Loader role: row li / 4 of each tile, vec4 column li % 4 of the slice.
  let lr = li / BK4;
  let lk = li % BK4;
  let xm = min(m0 + lr, p.M - 1u);
  let wb = min(n0 + lr, p.rows - 1u) * p.kStride4;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K4; k0 += BK4) {
    let k4 = k0 + lk;
    let inK = k4 < K4;
    let xv = select(vec4<f32>(0.0), x4(xm, min(k4, K4 - 1u)), inK);
    let wv = select(vec4<f32>(0.0), W4(wb + min(k4, K4 - 1u)), inK);
    let col = lr / 4u;
    let lane = lr % 4u;
    for (var c = 0u; c < 4u; c++) {
      let at = (lk * 4u + c) * ${TILED_BLOCK / 4}u + col;
      xt[at][lane] = xv[c];
      wt[at][lane] = wv[c];
    }
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      let a = xt[k * ${TILED_BLOCK / 4}u + lid.y];
      let b = wt[k * ${TILED_BLOCK / 4}u + lid.x];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y * 4u + i;
    if (m < p.M) {
      for (var j = 0u; j < 4u; j++) {
        let r = n0 + lid.x * 4u + j;
        if (r < p.rows) { store(m, r, acc[i][j]); }
      }
    }
  }
}
`;
}
