/**
 * Rotary position embedding, rotate_half style (Llama / Mistral / Qwen2 in Hugging Face, NOT the
 * interleaved GPT-J layout), applied in place to q `[M, H, D]` and optionally k `[M, Hkv, D]`:
 *
 * ```
 * for i < D/2: a = pos[m] · invFreq[i];  x1 = x[i], x2 = x[i + D/2]
 *              x[i] = x1·cos a − x2·sin a;  x[i + D/2] = x2·cos a + x1·sin a
 * ```
 *
 * Precision: `invFreq` is computed on the CPU in float64 and rounded to f32; the angle is the f32
 * product `f32(pos) · invFreq[i]` exactly as Hugging Face computes it, then reduced to [−π, π]
 * with a two-constant Cody–Waite step (2π = 6.28125 + 1.9353e−3), exact for positions below 2¹⁷,
 * before `cos`/`sin`. The angle's own f32 rounding (≤ 2⁻²⁴·|a|, e.g. ≤ 5e−4 rad at position 8192
 * with invFreq 1) is shared with the f32 reference; large `rope_theta` (1e12) only makes
 * `invFreq` smaller and the angles more precise.
 *
 * Bindings: 0 params, 1 q f32 (read_write), 2 positions u32 (read), 3 invFreq f32 (read),
 * 4 k f32 (read_write, optional).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams } from "../op.ts";

/** Arguments of {@link rope}. */
export interface RopeArgs {
  /** Queries `[m, H, D]` (row stride `qRowStride`, default H·D), rotated in place. */
  q: BufferRef;
  /** Keys `[m, Hkv, D]` (row stride `kRowStride`, default Hkv·D), rotated in place; optional. */
  k?: BufferRef;
  /** Absolute positions (u32), one per row, starting at element `positionsOffset`. */
  positions: BufferRef;
  /** First position element (default 0). */
  positionsOffset?: number;
  /** Inverse frequencies `[D/2]` f32 (see {@link uploadInvFreq}). */
  invFreq: BufferRef;
  /** Rows (tokens). */
  m: number;
  /** Query heads. */
  numHeads: number;
  /** Key heads (ignored without `k`). */
  numKvHeads: number;
  /** Head dimension (even). */
  headDim: number;
  /** Elements between q rows. */
  qRowStride?: number;
  /** Elements between k rows. */
  kRowStride?: number;
}

/**
 * WGSL `fn ropeCosSin(position: u32, invFreq: f32) -> vec2<f32>`: cos and sin of the angle
 * `f32(position) · invFreq`, reduced to [−π, π] with the two-constant step of the module doc
 * (shared by every kernel that rotates, so all round alike).
 */
export const ROPE_COS_SIN_WGSL = `const TWO_PI_HI = 6.28125;
const TWO_PI_LO = 0.0019353071795864769;
const INV_TWO_PI = 0.15915494309189535;
fn ropeCosSin(position: u32, invFreq: f32) -> vec2<f32> {
  let a = f32(position) * invFreq;
  let n = round(a * INV_TWO_PI);
  let r = (a - n * TWO_PI_HI) - n * TWO_PI_LO;
  return vec2<f32>(cos(r), sin(r));
}`;

function code(withK: boolean): string {
  return `struct Params { H: u32, Hkv: u32, half: u32, M: u32, pos0: u32, ldq: u32, ldk: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> Q: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
${withK ? "@group(0) @binding(4) var<storage, read_write> K: array<f32>;" : ""}
${ROPE_COS_SIN_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let t = (wid.x + wid.y * nwg.x) * 64u + li;
  let heads = p.H + ${withK ? "p.Hkv" : "0u"};
  let i = t % p.half;
  let h = (t / p.half) % heads;
  let m = t / (p.half * heads);
  if (m >= p.M) { return; }
  let cs = ropeCosSin(pos[p.pos0 + m], invFreq[i]);
  let c = cs.x;
  let s = cs.y;
  let D = 2u * p.half;
  if (h < p.H) {
    let j = m * p.ldq + h * D + i;
    let x1 = Q[j];
    let x2 = Q[j + p.half];
    Q[j] = x1 * c - x2 * s;
    Q[j + p.half] = x2 * c + x1 * s;
  }${
    withK
      ? ` else {
    let j = m * p.ldk + (h - p.H) * D + i;
    let x1 = K[j];
    let x2 = K[j + p.half];
    K[j] = x1 * c - x2 * s;
    K[j + p.half] = x2 * c + x1 * s;
  }`
      : ""
  }
}
`;
}

/** Uploads RoPE inverse frequencies (float64 from the config) as f32. */
export function uploadInvFreq(ctx: GpuContext, invFreq: ArrayLike<number>): GPUBuffer {
  return ctx.upload(Float32Array.from(invFreq));
}

/** Prepares RoPE on q (and k) for `m` tokens. */
export function rope(ctx: GpuContext, a: RopeArgs): GpuOp {
  if (a.headDim % 2 !== 0) throw new RangeError(`rope: head_dim ${a.headDim} must be even`);
  const withK = a.k !== undefined;
  const heads = a.numHeads + (withK ? a.numKvHeads : 0);
  const buffers = [a.q, a.positions, a.invFreq];
  if (a.k) buffers.push(a.k);
  return dispatchOp(ctx, {
    label: "rope",
    pipeline: ctx.pipeline(`rope:${withK}`, () => code(withK)),
    params: packParams([
      ["u32", a.numHeads],
      ["u32", a.numKvHeads],
      ["u32", a.headDim / 2],
      ["u32", a.m],
      ["u32", a.positionsOffset ?? 0],
      ["u32", a.qRowStride ?? a.numHeads * a.headDim],
      ["u32", a.kRowStride ?? a.numKvHeads * a.headDim],
    ]),
    buffers,
    workgroups: grid2d(Math.ceil((a.m * heads * a.headDim / 2) / 64)),
  });
}
