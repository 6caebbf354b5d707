/**
 * SwiGLU: `out[m, i] = silu(gate[m, i]) · up[m, i]` with `silu(g) = g / (1 + exp(-g))`; or
 * Gemma's GeGLU with the tanh-approximated GELU in place of silu.
 * Gate and up may live in one buffer (a fused gate/up projection) at element offsets.
 *
 * Bindings: 0 params, 1 gate f32 (read), 2 up f32 (read), 3 out f32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";

/** Arguments of {@link swiglu}. */
export interface SwigluArgs {
  /** Gate activations; element `(m, i)` at `gateOffset + m·gateRowStride + i`. */
  gate: BufferRef;
  /** Up activations; element `(m, i)` at `upOffset + m·upRowStride + i`. */
  up: BufferRef;
  /** Output `[m, n]` (row stride `outRowStride`, default n). */
  out: BufferRef;
  /** Rows. */
  m: number;
  /** Columns (intermediate size). */
  n: number;
  /** First gate element (default 0). */
  gateOffset?: number;
  /** First up element (default 0). */
  upOffset?: number;
  /** Gate row stride (default n). */
  gateRowStride?: number;
  /** Up row stride (default n). */
  upRowStride?: number;
  /** Output row stride (default n). */
  outRowStride?: number;
  /**
   * The gate's activation: `silu` (SwiGLU, the Llama family; default) or `gelu_tanh` (GeGLU,
   * Gemma: `0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`, transformers' `gelu_pytorch_tanh`).
   */
  activation?: "silu" | "gelu_tanh";
}

const SILU = "g / (1.0 + exp(-g))";
// tanh's argument clamped: tanh(±15) is ±1 in f32, and a large argument must not overflow.
const GELU_TANH =
  "0.5 * g * (1.0 + tanh(clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0)))";

const code = (activation: string) =>
  `struct Params { n: u32, M: u32, g0: u32, u0: u32, ldg: u32, ldu: u32, ldo: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read> U: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let t = (wid.x + wid.y * nwg.x) * 64u + li;
  let m = t / p.n;
  let i = t % p.n;
  if (m >= p.M) { return; }
  let g = G[p.g0 + m * p.ldg + i];
  out[m * p.ldo + i] = ${activation} * U[p.u0 + m * p.ldu + i];
}
`;

/** Prepares SwiGLU (or GeGLU) over `m × n` elements. */
export function swiglu(ctx: GpuContext, a: SwigluArgs): GpuOp {
  const gelu = a.activation === "gelu_tanh";
  return dispatchOp(ctx, {
    label: gelu ? "geglu" : "swiglu",
    pipeline: gelu
      ? ctx.pipeline("geglu", () => code(GELU_TANH))
      : ctx.pipeline("swiglu", () => code(SILU)),
    params: packParams([
      ["u32", a.n],
      ["u32", a.m],
      ["u32", a.gateOffset ?? 0],
      ["u32", a.upOffset ?? 0],
      ["u32", a.gateRowStride ?? a.n],
      ["u32", a.upRowStride ?? a.n],
      ["u32", a.outRowStride ?? a.n],
    ]),
    buffers: [a.gate, a.up, a.out],
    workgroups: grid2d(Math.ceil((a.m * a.n) / 64)),
  });
}
