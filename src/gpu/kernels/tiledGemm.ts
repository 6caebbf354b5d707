/**
 * GEMM with workgroup-memory tiles, the classic GPU layout: a workgroup of 16×16 threads computes
 * a block×block tile of `y = x·Wᵀ` (block rows of x × block rows of W); for every slice of K both
 * operand tiles are staged in workgroup memory (each thread loads one or two vec4s of x and of W),
 * then each thread accumulates its tile×tile outputs (named registers) from broadcast reads. Two
 * shapes ({@link TILED_SHAPES}): 64×64 blocks of 4×4 per thread (`gemm=tiled`) and 128×128 blocks
 * of 8×8 (`gemm=tiled128`), the usual SGEMM layout with twice the FMAs per workgroup-memory read.
 * The register GEMM of `matmul.ts` was tuned on llvmpipe (where workgroup memory is slow) and
 * reached 16 % of cuBLAS SGEMM on an H100; these are the candidates for GPUs, selected with
 * `path: "tiled"` / `"tiled128"` and measured by `kernelThroughput` / `kernels_bench` next to it
 * until a GPU run decides the default.
 *
 * With f16 arithmetic (`ctx.kernels.math = "f16"`) the tiles are f16 (half the workgroup memory)
 * and each K slice is summed in f16 (`vec4<f16>` multiply-adds), then promoted into the f32
 * accumulators, so rounding grows with the slice (16 or 8 elements), not with K.
 *
 * Same bindings and epilogue (bias, accumulate) as `matmul.ts` (`matmulCommon.ts`).
 *
 * @module
 */

import { matmulDecls, type MatmulVariant } from "./matmulCommon.ts";
import { each } from "./wgslUnroll.ts";

/** A tiled GEMM's shape: output block per workgroup, outputs per thread, K slice. */
export interface TiledGemmShape {
  /** Rows of x and of W per workgroup (a block × block output tile; 16 × tile). */
  block: number;
  /** Rows of x and of W per thread (a tile × tile register block; a multiple of 4). */
  tile: number;
  /** K elements staged per slice (block · slice / 4 must be a multiple of 256). */
  slice: number;
}

/** The shapes behind the `gemm` kernel choices `tiled` and `tiled128`. */
export const TILED_SHAPES: Record<"tiled" | "tiled128", TiledGemmShape> = {
  /** 64×64 blocks, 4×4 outputs per thread, 16-wide K slices (8 KiB of tiles). */
  tiled: { block: 64, tile: 4, slice: 16 },
  /** 128×128 blocks, 8×8 outputs per thread: twice the FMAs per workgroup-memory read. */
  tiled128: { block: 128, tile: 8, slice: 8 },
};

/** Threads per workgroup (16 × 16). */
const THREADS = 256;

/** WGSL of the tiled GEMM for one specialisation (dispatch: ⌈rows/block⌉ × ⌈M/block⌉). */
export function tiledGemmCode(v: MatmulVariant, shape: TiledGemmShape): string {
  const { block: B, tile: T, slice: BK } = shape;
  const B4 = B / 4, BK4 = BK / 4, T4 = T / 4, loads = (B * BK4) / THREADS;
  if (B !== 16 * T || T % 4 !== 0 || !Number.isInteger(loads) || loads < 1) {
    throw new RangeError(`tiledGemm: unsupported shape ${JSON.stringify(shape)}`);
  }
  // f16 arithmetic: f16 tiles, each slice summed into f16 partials h, promoted after the slice.
  const [ty, xLoad, wLoad] = v.half ? ["f16", "x4h", "W4h"] : ["f32", "x4", "W4"];
  const acc = v.half ? "h" : "a";
  return matmulDecls(v) + `
const BK4 = ${BK4}u;
// Tiles stored k-major as vec4s of 4 consecutive rows: xt[k][m / 4], wt[k][n / 4].
var<workgroup> xt: array<vec4<${ty}>, ${BK * B4}>;
var<workgroup> wt: array<vec4<${ty}>, ${BK * B4}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let n0 = wid.x * ${B}u;
  let m0 = wid.y * ${B}u;
  let K4 = (p.K + 3u) / 4u;
  // Loader role l: row q / BK4 of each tile, vec4 column q % BK4 of the slice (q = li + 256 l).
${
    each(loads, (l) =>
      `  let lr${l} = (li + ${THREADS * l}u) / BK4;
  let lk${l} = (li + ${THREADS * l}u) % BK4;
  let xm${l} = min(m0 + lr${l}, p.M - 1u);
  let wb${l} = min(n0 + lr${l}, p.rows - 1u) * p.kStride4;`)
  }
${each(T, (r) => each(T4, (c) => `  var a${r}_${c} = vec4<f32>(0.0);`))}
  for (var k0 = 0u; k0 < K4; k0 += BK4) {
${
    each(loads, (l) =>
      `    {
      let k4 = k0 + lk${l};
      let inK = k4 < K4;
      let xv = select(vec4<${ty}>(0.0), ${xLoad}(xm${l}, min(k4, K4 - 1u)), inK);
      let wv = select(vec4<${ty}>(0.0), ${wLoad}(wb${l} + min(k4, K4 - 1u)), inK);
      let col = lr${l} / 4u;
      let lane = lr${l} % 4u;
${
        each(4, (c) =>
          `      xt[(lk${l} * 4u + ${c}u) * ${B4}u + col][lane] = xv[${c}];
      wt[(lk${l} * 4u + ${c}u) * ${B4}u + col][lane] = wv[${c}];`)
      }
    }`)
  }
    workgroupBarrier();
${v.half ? each(T, (r) => each(T4, (c) => `    var h${r}_${c} = vec4<f16>(0.0);`)) : ""}
    for (var k = 0u; k < ${BK}u; k++) {
${each(T4, (i) => `      let xa${i} = xt[k * ${B4}u + lid.y * ${T4}u + ${i}u];`)}
${each(T4, (j) => `      let wr${j} = wt[k * ${B4}u + lid.x * ${T4}u + ${j}u];`)}
${
    each(T, (r) =>
      each(T4, (c) => `      ${acc}${r}_${c} += xa${Math.floor(r / 4)}[${r % 4}] * wr${c};`))
  }
    }
${v.half ? each(T, (r) => each(T4, (c) => `    a${r}_${c} += vec4<f32>(h${r}_${c});`)) : ""}
    workgroupBarrier();
  }
${
    each(T, (r) =>
      `  {
    let m = m0 + lid.y * ${T}u + ${r}u;
    if (m < p.M) {
${
        each(T4, (c) =>
          each(4, (e) =>
            `      { let r = n0 + lid.x * ${T}u + ${
              4 * c + e
            }u; if (r < p.rows) { store(m, r, a${r}_${c}[${e}]); } }`))
      }
    }
  }`)
  }
}
`;
}
