/**
 * What the matmul kernels share: their parameter block and the WGSL declarations of W (checkpoint
 * dtype), x (f32, vec4 loads when aligned), y and the optional bias, with the `store` epilogue
 * (bias, accumulate), and for f16 arithmetic the operands as `vec4<f16>`. Used by `matmul.ts`
 * (GEMV, register GEMM) and `tiledGemm.ts`.
 *
 * @module
 */

import { weightDecl, type WeightStorage } from "../wgslDtype.ts";

/** The specialisation of a matmul kernel. */
export interface MatmulVariant {
  /** Weight dtype (storage form). */
  dtype: WeightStorage;
  /** x rows are vec4-aligned (K and the row stride multiples of 4). */
  xVec: boolean;
  /** Bias dtype (storage form), or null. */
  bias: WeightStorage | null;
  /** `y +=` instead of `y =`. */
  accumulate: boolean;
  /**
   * f16 arithmetic (`ctx.kernels.math`, GEMMs only): declares `W4h` / `x4h`, the operands as
   * `vec4<f16>`.
   */
  half: boolean;
}

/** The parameter block (uniform binding 0) of every matmul kernel. */
const PARAMS =
  `struct Params { K: u32, rows: u32, n0: u32, ldy: u32, kStride4: u32, ldx: u32, M: u32 };
@group(0) @binding(0) var<uniform> p: Params;
`;

/** Declarations and helpers every matmul kernel starts with (see the module doc). */
export function matmulDecls(v: MatmulVariant): string {
  const x = v.xVec
    ? `@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
fn x4(m: u32, k4: u32) -> vec4<f32> { return X[m * (p.ldx >> 2u) + k4]; }`
    : `@group(0) @binding(2) var<storage, read> X: array<f32>;
fn xs(m: u32, k: u32) -> f32 { return select(0.0, X[m * p.ldx + k], k < p.K); }
fn x4(m: u32, k4: u32) -> vec4<f32> {
  let k = k4 * 4u;
  return vec4<f32>(xs(m, k), xs(m, k + 1u), xs(m, k + 2u), xs(m, k + 3u));
}`;
  const half = !v.half ? "" : `
fn W4h(i4: u32) -> vec4<f16> { return ${v.dtype === "F16:native" ? "W[i4]" : "vec4<f16>(W4(i4))"}; }
fn x4h(m: u32, k4: u32) -> vec4<f16> { return vec4<f16>(x4(m, k4)); }`;
  return PARAMS + weightDecl("W", 1, v.dtype) + x + half + `
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
` + (v.bias ? weightDecl("B", 4, v.bias) : "") + `
fn store(m: u32, r: u32, acc: f32) {
  let i = m * p.ldy + p.n0 + r;
  var v = acc${v.bias ? " + B1(p.n0 + r)" : ""};
  ${v.accumulate ? "v += Y[i];" : ""}
  Y[i] = v;
}
`;
}

/** WGSL `i8x4(w)`: the four int8 codes of a block-int8 word as f32. */
export const I8X4_WGSL = `fn i8x4(u: u32) -> vec4<f32> {
  let w = bitcast<i32>(u);
  return vec4<f32>(vec4<i32>(w << 24u, w << 16u, w << 8u, w) >> vec4<u32>(24u));
}`;
