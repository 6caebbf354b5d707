/**
 * WGSL snippets that read weights in their checkpoint dtype: f32 as `vec4<f32>`, f16 and bf16 as
 * `vec2<u32>` (four 16-bit values) unpacked with `unpack2x16float` or `bitcast<f32>(u << 16u)` /
 * `bitcast<f32>(u & 0xffff0000u)` (core WGSL) — or, for f16 with `ctx.kernels.f16 = "native"`,
 * as `vec4<f16>` under `shader-f16` (same bytes; `GpuContext.pipeline` adds `enable f16;`); the
 * block-int8 forms of GGUF's quantized weights (`../model/blockInt8.ts`) as `u32` words, four
 * codes each, scaled by their block's scale and min.
 *
 * @module
 */

import type { DType } from "../model/types.ts";
import { blockElements } from "../model/blockInt8.ts";
import type { GpuContext } from "./device.ts";

/**
 * How a weight is read in WGSL: its dtype, or `F16:native` — f16 read as `array<vec4<f16>>`
 * (`shader-f16`) instead of u32 pairs; the bytes are the same.
 */
export type WeightStorage = DType | "F16:native";

/** The storage form of `dtype` on this device (`ctx.kernels.f16`). */
export function weightStorage(ctx: GpuContext, dtype: DType): WeightStorage {
  return dtype === "F16" && ctx.kernels.f16 === "native" ? "F16:native" : dtype;
}

/** WGSL array type that a weight of `dtype` is bound as (one entry = four elements). */
export function weightArrayType(dtype: WeightStorage): string {
  return dtype === "F32"
    ? "array<vec4<f32>>"
    : dtype === "F16:native"
    ? "array<vec4<f16>>"
    : dtype === "I8x32" || dtype === "I8x16"
    ? "array<u32>"
    : "array<vec2<u32>>";
}

/**
 * Declares `var<storage, read> NAME: <array>` at `binding` plus two loaders:
 * `fn NAME4(i4: u32) -> vec4<f32>` (elements 4·i4 .. 4·i4+3) and `fn NAME1(i: u32) -> f32`.
 */
export function weightDecl(name: string, binding: number, dtype: WeightStorage): string {
  const decl = `@group(0) @binding(${binding}) var<storage, read> ${name}: ${
    weightArrayType(dtype)
  };\n`;
  switch (dtype) {
    case "F32":
      return decl + `fn ${name}4(i4: u32) -> vec4<f32> { return ${name}[i4]; }
fn ${name}1(i: u32) -> f32 { return ${name}[i >> 2u][i & 3u]; }
`;
    case "F16:native":
      return decl + `fn ${name}4(i4: u32) -> vec4<f32> { return vec4<f32>(${name}[i4]); }
fn ${name}1(i: u32) -> f32 { return f32(${name}[i >> 2u][i & 3u]); }
`;
    case "F16":
      return decl + `fn ${name}4(i4: u32) -> vec4<f32> {
  let p = ${name}[i4];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}
fn ${name}1(i: u32) -> f32 { return unpack2x16float(${name}[i >> 2u][(i >> 1u) & 1u])[i & 1u]; }
`;
    case "I8x32":
    case "I8x16": {
      // A block: S int8 codes (S/4 words), then f32 scale and min; x = scale · code + min.
      const qw = blockElements(dtype) / 4;
      return decl + `fn ${name}4(i4: u32) -> vec4<f32> {
  let at = (i4 / ${qw}u) * ${qw + 2}u;
  let w = bitcast<i32>(${name}[at + i4 % ${qw}u]);
  let c = vec4<f32>(vec4<i32>(w << 24u, w << 16u, w << 8u, w) >> vec4<u32>(24u));
  return bitcast<f32>(${name}[at + ${qw}u]) * c + bitcast<f32>(${name}[at + ${qw + 1}u]);
}
fn ${name}1(i: u32) -> f32 { return ${name}4(i >> 2u)[i & 3u]; }
`;
    }
    case "BF16":
      return decl + `fn ${name}4(i4: u32) -> vec4<f32> {
  let p = ${name}[i4];
  return vec4<f32>(bitcast<f32>(p.x << 16u), bitcast<f32>(p.x & 0xffff0000u),
                   bitcast<f32>(p.y << 16u), bitcast<f32>(p.y & 0xffff0000u));
}
fn ${name}1(i: u32) -> f32 {
  let u = ${name}[i >> 2u][(i >> 1u) & 1u];
  return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (i & 1u) == 1u));
}
`;
  }
}
