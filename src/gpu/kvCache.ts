/**
 * The ragged KV cache of one layer. Every KV head owns a region of rows in one K buffer and one V
 * buffer (`[totalRows][headDim]`, f32 or f16 packed in u32 pairs); regions may have different
 * capacities, and each head has its own length, kept on the GPU so that appends during decode
 * need no CPU round trip. Keys are stored after RoPE, so kept entries keep their positions.
 *
 * `meta` (u32 `[7·Hkv]`): `[0, Hkv)` first row of each head's region, `[Hkv, 2Hkv)` length,
 * `[2Hkv, 3Hkv)` capacity, `[3Hkv, 4Hkv)` tokens dropped (or, for a ring, overwritten) because
 * the region was full, `[4Hkv, 5Hkv)` ring start: when a head is full, an append overwrites the
 * oldest row at or after this row (StreamingLLM's window evicting its oldest non-sink entry) —
 * {@link NO_RING} drops the new token instead; `[5Hkv, 6Hkv)` logit-bias row (an index into the
 * head's region, {@link NO_BIAS} for none) and `[6Hkv, 7Hkv)` its bias (f32 bits): attention adds
 * the bias to that row's scaled logit (RazorAttention's compensation token, `+ln N_d`).
 *
 * @module
 */

import { type GpuContext, GpuUnavailableError, STORAGE_USAGE } from "./device.ts";
import type { RerotateState } from "./kernels/kvRerotate.ts";

/** Ring start meaning "no ring": appends to a full head are dropped. */
export const NO_RING = 0xffffffff;

/** Logit-bias row meaning "no biased row". */
export const NO_BIAS = 0xffffffff;

/** A per-head logit bias: attention adds `value` to the scaled logit of row `row` of the head. */
export interface RowBias {
  /** Row index within the head's region. */
  row: number;
  /** Added to that row's logit (after the 1/√d scaling). */
  value: number;
}

/** Storage type of cached keys and values. */
export type KvDType = "f32" | "f16";

/** One layer's ragged KV cache. */
export interface KvCacheLayer {
  /** KV heads. */
  numKvHeads: number;
  /** Head dimension (a multiple of 4). */
  headDim: number;
  /** Element type. */
  dtype: KvDType;
  /** First row of each head's region. */
  bases: number[];
  /** Rows reserved for each head. */
  capacities: number[];
  /** Rows in the K (and V) buffer. */
  totalRows: number;
  /** Keys `[totalRows][headDim]`. */
  k: GPUBuffer;
  /** Values `[totalRows][headDim]`. */
  v: GPUBuffer;
  /** Per-head bases, lengths, capacities and drop counts (see module doc). */
  meta: GPUBuffer;
  /**
   * Compensation tokens that follow the window while decoding (`kernels/kvFold.ts`): the fold
   * state, run before every append; absent when no head folds.
   */
  fold?: GPUBuffer;
  /** Sink rows re-rotated at every step (StreamingLLM's re-indexed positions, `kvRerotate`). */
  rerotate?: RerotateState;
}

/** Options of {@link createKvCacheLayer}. */
export interface KvCacheLayerOptions {
  /** KV heads. */
  numKvHeads: number;
  /** Head dimension (a multiple of 4). */
  headDim: number;
  /** Rows per head: one number for all heads, or one per head. */
  capacity: number | number[];
  /** Element type (default f32). */
  dtype?: KvDType;
  /** Initial lengths (default 0); the contents of those rows are undefined until written. */
  lengths?: number[];
  /**
   * Per head, the first row of the ring that a full head overwrites oldest-first (e.g. the
   * window's sink size); `undefined` or {@link NO_RING} drops appends to a full head.
   */
  ringStart?: (number | undefined)[];
  /** Per head, a logit bias on one row (`undefined`: none). */
  bias?: (RowBias | undefined)[];
  /** Label. */
  label?: string;
}

/** Bytes per cached row of `headDim` elements. */
export function kvRowBytes(headDim: number, dtype: KvDType): number {
  return headDim * (dtype === "f32" ? 4 : 2);
}

/** Allocates one layer's cache (lengths start at 0 unless given). */
export function createKvCacheLayer(ctx: GpuContext, o: KvCacheLayerOptions): KvCacheLayer {
  const H = o.numKvHeads, D = o.headDim, dtype = o.dtype ?? "f32";
  if (D % 4 !== 0) throw new RangeError(`KV cache: head_dim ${D} must be a multiple of 4`);
  const capacities = typeof o.capacity === "number" ? Array(H).fill(o.capacity) : o.capacity;
  if (capacities.length !== H) throw new RangeError("KV cache: one capacity per KV head");
  const bases: number[] = [];
  let total = 0;
  for (const c of capacities) {
    if (!Number.isInteger(c) || c < 0) throw new RangeError(`KV cache: bad capacity ${c}`);
    bases.push(total);
    total += c;
  }
  const bytes = Math.max(1, total) * kvRowBytes(D, dtype);
  if (bytes > ctx.maxBindingBytes) {
    throw new GpuUnavailableError(
      `the KV cache needs ${bytes} bytes per layer for K (and as much for V), but this device ` +
        `binds at most ${ctx.maxBindingBytes} bytes per buffer: use a shorter prompt or fewer new ` +
        `tokens, --kv-dtype f16, or a policy that keeps less`,
    );
  }
  const lengths = o.lengths ?? Array(H).fill(0);
  lengths.forEach((l, h) => {
    if (l > capacities[h]) throw new RangeError(`KV cache: length ${l} > capacity of head ${h}`);
  });
  const label = o.label ?? "kv";
  const meta = new Uint32Array(7 * H);
  const metaF32 = new Float32Array(meta.buffer);
  meta.set(bases, 0);
  meta.set(lengths, H);
  meta.set(capacities, 2 * H);
  for (let h = 0; h < H; h++) {
    const ring = o.ringStart?.[h] ?? NO_RING;
    if (ring !== NO_RING && !(Number.isInteger(ring) && ring >= 0 && ring < capacities[h])) {
      throw new RangeError(`KV cache: ring start ${ring} outside head ${h}'s capacity`);
    }
    meta[4 * H + h] = ring;
    const bias = o.bias?.[h];
    if (bias && !(Number.isInteger(bias.row) && bias.row >= 0 && bias.row < capacities[h])) {
      throw new RangeError(`KV cache: bias row ${bias.row} outside head ${h}'s capacity`);
    }
    meta[5 * H + h] = bias ? bias.row : NO_BIAS;
    metaF32[6 * H + h] = bias ? bias.value : 0;
  }
  return {
    numKvHeads: H,
    headDim: D,
    dtype,
    bases,
    capacities,
    totalRows: total,
    k: ctx.createBuffer(bytes, STORAGE_USAGE, `${label}.k`),
    v: ctx.createBuffer(bytes, STORAGE_USAGE, `${label}.v`),
    meta: ctx.upload(meta, STORAGE_USAGE, `${label}.meta`),
  };
}

/** Frees a layer's buffers. */
export function releaseKvCacheLayer(ctx: GpuContext, layer: KvCacheLayer): void {
  ctx.release(layer.k);
  ctx.release(layer.v);
  ctx.release(layer.meta);
  if (layer.fold) ctx.release(layer.fold);
  if (layer.rerotate) {
    ctx.release(layer.rerotate.sinks);
    ctx.release(layer.rerotate.counts);
  }
}

/** Bytes allocated by a layer's K and V buffers. */
export function kvCacheBytes(layer: KvCacheLayer): number {
  return 2 * layer.totalRows * kvRowBytes(layer.headDim, layer.dtype);
}

/** Reads the per-head lengths and drop counts back (≥ 10 ms: do it rarely). */
export async function readKvLengths(
  ctx: GpuContext,
  layer: KvCacheLayer,
): Promise<{ lengths: number[]; dropped: number[] }> {
  const H = layer.numKvHeads;
  const meta = await ctx.readU32(layer.meta, 0, 4 * H);
  return {
    lengths: Array.from(meta.subarray(H, 2 * H)),
    dropped: Array.from(meta.subarray(3 * H, 4 * H)),
  };
}

/**
 * How a cache's elements are read in WGSL: its dtype, or `f16:native` — f16 read as
 * `array<vec4<f16>>` (`shader-f16`) instead of u32 pairs; the bytes are the same.
 */
export type KvStorage = KvDType | "f16:native";

/** The storage form of `dtype` on this device (`ctx.kernels.f16`). */
export function kvStorage(ctx: GpuContext, dtype: KvDType): KvStorage {
  return dtype === "f16" && ctx.kernels.f16 === "native" ? "f16:native" : dtype;
}

/**
 * WGSL declaring a cache buffer `NAME` at `binding` with `fn NAME4(i4: u32) -> vec4<f32>`
 * (elements 4·i4 .. 4·i4+3) and, when writable, `fn NAMEw(i4: u32, v: vec4<f32>)`.
 */
export function kvDecl(name: string, binding: number, dtype: KvStorage, writable: boolean): string {
  const access = writable ? "read_write" : "read";
  if (dtype === "f16:native") {
    return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<vec4<f16>>;
fn ${name}4(i4: u32) -> vec4<f32> { return vec4<f32>(${name}[i4]); }
${writable ? `fn ${name}w(i4: u32, v: vec4<f32>) { ${name}[i4] = vec4<f16>(v); }` : ""}
`;
  }
  if (dtype === "f32") {
    return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<vec4<f32>>;
fn ${name}4(i4: u32) -> vec4<f32> { return ${name}[i4]; }
${writable ? `fn ${name}w(i4: u32, v: vec4<f32>) { ${name}[i4] = v; }` : ""}
`;
  }
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<vec2<u32>>;
fn ${name}4(i4: u32) -> vec4<f32> {
  let p = ${name}[i4];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}
${
    writable
      ? `fn ${name}w(i4: u32, v: vec4<f32>) {
  ${name}[i4] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}`
      : ""
  }
`;
}
