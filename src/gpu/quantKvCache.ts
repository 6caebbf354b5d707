/**
 * A KIVI-quantised layer cache (the `quant` press): per KV head, a packed region of quantised
 * tokens and a small full-precision residual ring.
 *
 * Packed region (the layout of `src/plugins/quantPress.ts`, offset per head): head h owns token
 * slots `[qbase_h, qbase_h + qcap_h)` (`qbase` and `qcap` multiples of the group G). Slot s holds
 * W = ⌈D·b/32⌉ u32 words of key codes at `codes[s·W …]` and of value codes at
 * `codes[valueCodes + s·W …]`; key (min, scale) f32 pairs per channel and per block of G slots at
 * `params[2((s/G)·D + c) …]`; value pairs per slot and per group γ of G channels at
 * `params[valueParams + 2(s·⌈D/G⌉ + γ) …]`. So the head's packed tokens, read from its region, are
 * exactly the CPU reference's `quantizeKeys` / `quantizeValues` output. (Keys and values share
 * one codes and one params buffer so that every kernel binds at most 8 storage buffers.)
 *
 * Residual ring: head h owns rows `[rbase_h, rbase_h + rcap_h)` of `rk` / `rv` (f32 or f16, the
 * {@link kvDecl} layout); residual entry i (0 = oldest) sits at row `rbase + (rstart + i) % rcap`.
 * A quantised head has rcap = residual + G (or its whole budget, if smaller): when an append fills the ring, its oldest G entries are
 * packed into the next free slots on the GPU (`quantAppend`), so T − Q stays in
 * [residual, residual + G) as the reference layout requires. A head that is not quantised (another
 * rule's pipeline in the same layer) has qcap = 0 and a ring as large as its whole budget.
 *
 * `meta` (u32 `[8·Hkv]`, field f of head h at `f·Hkv + h`): 0 rbase, 1 T (entries held = Q + the
 * residual's length), 2 rcap, 3 dropped (appends that found no room), 4 rstart, 5 Q (packed
 * tokens), 6 qcap, 7 qbase. Fields 0–3 mean what they mean in a plain layer's meta, so per-head
 * lengths are read back the same way.
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import { type KvCacheLayer, type KvDType, kvRowBytes } from "./kvCache.ts";

/** Quantisation of one layer: bits and group shared by the layer's quantised heads. */
export interface QuantLayerSpec {
  /** Bits per code: 2, 4 or 8. */
  bits: number;
  /** Group size G (tokens per key block, channels per value group). */
  group: number;
  /** Per KV head: the residual kept in full precision, or null for a head that is not quantised. */
  residuals: (number | null)[];
}

/** One layer's quantised cache (see the module doc). */
export interface QuantKvLayer {
  /** Quantisation parameters. */
  quant: QuantLayerSpec;
  /** KV heads. */
  numKvHeads: number;
  /** Head dimension (a multiple of 4). */
  headDim: number;
  /** Element type of the residual rows. */
  dtype: KvDType;
  /** First residual row of each head. */
  residualBases: number[];
  /** Residual rows of each head. */
  residualCapacities: number[];
  /** First packed slot of each head (a multiple of G). */
  quantBases: number[];
  /** Packed slots of each head (a multiple of G). */
  quantCapacities: number[];
  /** Residual keys / values `[rows][headDim]`. */
  rk: GPUBuffer;
  /** Residual values. */
  rv: GPUBuffer;
  /** Codes, u32: keys `[slots][W]`, then values `[slots][W]` from word {@link valueCodes}. */
  codes: GPUBuffer;
  /** First word of the value codes. */
  valueCodes: number;
  /** (min, scale) pairs, f32: keys `[slots/G][D][2]`, then values `[slots][⌈D/G⌉][2]`. */
  params: GPUBuffer;
  /** First f32 of the value pairs. */
  valueParams: number;
  /** Per-head fields (see the module doc). */
  meta: GPUBuffer;
}

/** Either kind of layer cache. */
export type CacheLayer = KvCacheLayer | QuantKvLayer;

/** Whether `layer` is quantised. */
export function isQuantLayer(layer: CacheLayer): layer is QuantKvLayer {
  return "quant" in layer;
}

/** Fields per head in a quantised layer's meta. */
export const QUANT_META_FIELDS = 8;

/** Options of {@link createQuantKvLayer}: per head, entries to hold and room to leave. */
export interface QuantKvLayerOptions {
  /** Head dimension (a multiple of 4). */
  headDim: number;
  /** Residual element type. */
  dtype: KvDType;
  /** Quantisation (one residual per head, null: not quantised). */
  quant: QuantLayerSpec;
  /** Most entries each head will ever hold (what it keeps now + its decode budget). */
  maxEntries: number[];
  /** Label. */
  label?: string;
}

/** Packed tokens out of `numTokens` (the reference's Q: whole groups beyond the residual). */
export function packedCount(numTokens: number, residual: number, group: number): number {
  return numTokens <= residual ? 0 : Math.floor((numTokens - residual) / group) * group;
}

/** W: u32 words per token's codes. */
export function codeWords(headDim: number, bits: number): number {
  return Math.ceil((headDim * bits) / 32);
}

function checkSpec(D: number, q: QuantLayerSpec): void {
  if (![2, 4, 8].includes(q.bits)) throw new RangeError(`quant: bits ${q.bits} not 2, 4 or 8`);
  if (!Number.isInteger(q.group) || q.group < 1) throw new RangeError(`quant: bad group`);
  if (D % 4 !== 0) throw new RangeError(`quant cache: head_dim ${D} must be a multiple of 4`);
  const wgFloats = 2 * D + 2 * q.group * Math.ceil(D / q.group);
  if (wgFloats * 4 > 16384) {
    throw new RangeError(`quant: group ${q.group} with head_dim ${D} is too large to pack`);
  }
}

/** Allocates an empty quantised layer (lengths 0; fill it with `quantConvert` or appends). */
export function createQuantKvLayer(ctx: GpuContext, o: QuantKvLayerOptions): QuantKvLayer {
  const D = o.headDim, q = o.quant, G = q.group, H = q.residuals.length;
  checkSpec(D, q);
  if (o.maxEntries.length !== H) throw new RangeError("quant cache: one budget per KV head");
  const residualBases: number[] = [], residualCapacities: number[] = [];
  const quantBases: number[] = [], quantCapacities: number[] = [];
  let rows = 0, slots = 0;
  q.residuals.forEach((r, h) => {
    const n = o.maxEntries[h];
    const qcap = r === null ? 0 : packedCount(n, r, G);
    // Fewer than r + G entries ever: nothing is packed (qcap = 0), the ring holds them all.
    const rcap = r === null ? n : Math.min(n, r + G);
    residualBases.push(rows);
    residualCapacities.push(rcap);
    quantBases.push(slots);
    quantCapacities.push(qcap);
    rows += rcap;
    slots += qcap;
  });
  const W = codeWords(D, q.bits), NG = Math.ceil(D / G);
  const valueCodes = slots * W, valueParams = (slots / G) * D * 2;
  const sizes = {
    rows: Math.max(1, rows) * kvRowBytes(D, o.dtype),
    codes: Math.max(1, 2 * valueCodes) * 4,
    params: Math.max(1, valueParams + slots * NG * 2) * 4,
  };
  for (const [what, bytes] of Object.entries(sizes)) {
    if (bytes > ctx.maxBindingBytes) {
      throw new RangeError(
        `quantised KV layer: ${what} need ${bytes} bytes; the device binds at most ` +
          `${ctx.maxBindingBytes}`,
      );
    }
  }
  const meta = new Uint32Array(QUANT_META_FIELDS * H);
  meta.set(residualBases, 0);
  meta.set(residualCapacities, 2 * H);
  meta.set(quantCapacities, 6 * H);
  meta.set(quantBases, 7 * H);
  const label = o.label ?? "qkv";
  return {
    quant: { bits: q.bits, group: G, residuals: [...q.residuals] },
    numKvHeads: H,
    headDim: D,
    dtype: o.dtype,
    residualBases,
    residualCapacities,
    quantBases,
    quantCapacities,
    rk: ctx.createBuffer(sizes.rows, STORAGE_USAGE, `${label}.rk`),
    rv: ctx.createBuffer(sizes.rows, STORAGE_USAGE, `${label}.rv`),
    codes: ctx.createBuffer(sizes.codes, STORAGE_USAGE, `${label}.codes`),
    valueCodes,
    params: ctx.createBuffer(sizes.params, STORAGE_USAGE, `${label}.params`),
    valueParams,
    meta: ctx.upload(meta, STORAGE_USAGE, `${label}.meta`),
  };
}

/** Frees a quantised layer's buffers. */
export function releaseQuantKvLayer(ctx: GpuContext, layer: QuantKvLayer): void {
  for (const b of [layer.rk, layer.rv, layer.codes, layer.params]) {
    ctx.release(b);
  }
  ctx.release(layer.meta);
}

/** Storage of one head holding `entries` entries: packed codes, (min, scale) pairs, residual. */
export interface QuantHeadBytes {
  /** Key and value codes. */
  codes: number;
  /** Key and value (min, scale) f32 pairs. */
  scales: number;
  /** Full-precision residual rows (K and V). */
  residual: number;
  /** The sum. */
  total: number;
}

/** Bytes held by head `h` of `layer` with `entries` entries (Q packed, the rest residual). */
export function quantHeadBytes(layer: QuantKvLayer, h: number, entries: number): QuantHeadBytes {
  const r = layer.quant.residuals[h];
  const Q = r === null ? 0 : packedCount(entries, r, layer.quant.group);
  return slotBytes(layer, Q, entries - Q);
}

/** Bytes allocated for head `h` (its packed slots and residual rows). */
export function quantHeadAllocated(layer: QuantKvLayer, h: number): QuantHeadBytes {
  return slotBytes(layer, layer.quantCapacities[h], layer.residualCapacities[h]);
}

function slotBytes(layer: QuantKvLayer, packed: number, rows: number): QuantHeadBytes {
  const D = layer.headDim, { bits, group } = layer.quant;
  const codes = 2 * packed * codeWords(D, bits) * 4;
  const scales = 8 * ((packed / group) * D + packed * Math.ceil(D / group));
  const residual = 2 * rows * kvRowBytes(D, layer.dtype);
  return { codes, scales, residual, total: codes + scales + residual };
}

/** Reads a quantised layer's meta back (≥ 10 ms), one object per head. */
export async function readQuantMeta(
  ctx: GpuContext,
  layer: QuantKvLayer,
): Promise<{ length: number; packed: number; ringStart: number; dropped: number }[]> {
  const H = layer.numKvHeads;
  const m = await ctx.readU32(layer.meta, 0, QUANT_META_FIELDS * H);
  return Array.from({ length: H }, (_, h) => ({
    length: m[H + h],
    packed: m[5 * H + h],
    ringStart: m[4 * H + h],
    dropped: m[3 * H + h],
  }));
}

/** WGSL constants of a quantised layer's layout (`D`, `D4`, `G`, `BITS`, `W`, `NG`, …). */
export function quantConstsWgsl(headDim: number, spec: { bits: number; group: number }): string {
  const { bits, group } = spec;
  return `const D = ${headDim}u;
const D4 = ${headDim / 4}u;
const G = ${group}u;
const BITS = ${bits}u;
const PER_WORD = ${32 / bits}u;
const W = ${codeWords(headDim, bits)}u;
const NG = ${Math.ceil(headDim / group)}u;
const MASK = ${2 ** bits - 1}u;
const LEVELS = ${2 ** bits - 1}.0;
`;
}

/**
 * WGSL statements reading KV head `kvh`'s quantised-layer meta (`kvmeta` and `p.Hkv` in scope):
 * `rbase`, `len` (T), `rcap`, `rstart`, `nq` (Q) and `qbase` (see the module doc).
 */
export function quantHeadMetaWgsl(): string {
  return `  let rbase = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let rcap = kvmeta[2u * p.Hkv + kvh];
  let rstart = kvmeta[4u * p.Hkv + kvh];
  let nq = kvmeta[5u * p.Hkv + kvh];
  let qbase = kvmeta[7u * p.Hkv + kvh];`;
}

/**
 * WGSL declaring the packed buffers at bindings `first` (`QC`, u32 codes) and `first + 1` (`QP`,
 * f32 pairs) with accessors `kq(i)`, `vq(i)` (code words), `kp(i)`, `vp(i)` (pair elements) and,
 * when writable, `kqw`, `vqw`, `kpw`, `vpw`; the kernel's uniform `p` must have fields `vq0`
 * (= valueCodes) and `vp0` (= valueParams).
 */
export function quantBuffersWgsl(first: number, writable: boolean): string {
  const access = writable ? "read_write" : "read";
  const w = writable
    ? `fn kqw(i: u32, x: u32) { QC[i] = x; }
fn vqw(i: u32, x: u32) { QC[p.vq0 + i] = x; }
fn kpw(i: u32, x: f32) { QP[i] = x; }
fn vpw(i: u32, x: f32) { QP[p.vp0 + i] = x; }
`
    : "";
  return `@group(0) @binding(${first}) var<storage, ${access}> QC: array<u32>;
@group(0) @binding(${first + 1}) var<storage, ${access}> QP: array<f32>;
fn kq(i: u32) -> u32 { return QC[i]; }
fn vq(i: u32) -> u32 { return QC[p.vq0 + i]; }
fn kp(i: u32) -> f32 { return QP[i]; }
fn vp(i: u32) -> f32 { return QP[p.vp0 + i]; }
${w}`;
}
