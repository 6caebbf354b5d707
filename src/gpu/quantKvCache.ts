/**
 * A KIVI-quantised layer cache (the `quant` press): per KV head, packed keys, packed values and a
 * small full-precision ring, with KIVI's residual semantics (`src/plugins/quantPress.ts`).
 *
 * Packed regions (the layout of `src/plugins/quantPress.ts`, offset per head): head h's keys
 * occupy key slots `[kbase_h, kbase_h + kcap_h)` (multiples of the group G): slot s holds
 * Wk = ⌈D·kb/32⌉ u32 words of codes at `codes[s·Wk …]` and, per channel, the (min, scale) f32
 * pair of its block of G slots at `params[2((s/G)·D + c) …]`. Its values occupy value slots
 * `[vbase_h, vbase_h + vcap_h)`: slot s holds Wv = ⌈D·vb/32⌉ words at `codes[valueCodes + s·Wv …]`
 * and one pair per group γ of G channels at `params[valueParams + 2(s·⌈D/G⌉ + γ) …]`. So a head's
 * packed tokens, read from its regions, are exactly the CPU reference's `quantizeKeys` /
 * `quantizeValues` output. (Keys and values share one codes and one params buffer so that every
 * kernel binds at most 8 storage buffers.)
 *
 * Entry j of a head (0 = oldest) has its key packed at slot `kbase + j` when j < Qk and its value
 * at `vbase + j` when j < Qv; otherwise they are full precision in ring row `rbase + j % rcap` of
 * `rk` / `rv` (f32 or f16, the {@link kvDecl} layout). Settled, as KIVI holds a head after each
 * step: Qk = T − (T mod R), Qv = max(0, T − R). A decode step appends the new token first
 * (`quantAppend`), attends over keys Qk … T−1 (1 … R of them) and values Qv … T−1 (up to R + 1) in
 * full precision exactly as KIVI's decode does, then settles (`quantSettle`): the oldest value is
 * packed once R + 1 are full precision, the R full keys once R have gathered. So a quantised head
 * has rcap = R + 1 ring rows (or its whole budget, if smaller). A head that is not quantised
 * (another rule's pipeline in the same layer) has R = 0, no packed slots and a ring as large as
 * its whole budget.
 *
 * `meta` (u32 `[10·Hkv]`, field f of head h at `f·Hkv + h`): 0 rbase, 1 T (entries held),
 * 2 rcap, 3 dropped (appends that found no room), 4 R (0: not quantised), 5 Qk, 6 Qv, 7 kbase,
 * 8 vbase, 9 cap (most entries). Fields 0–3 mean what they mean in a plain layer's meta, so
 * per-head lengths are read back the same way.
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "./device.ts";
import { type KvCacheLayer, type KvDType, kvRowBytes } from "./kvCache.ts";

/** Quantisation of one layer: bits and group shared by the layer's quantised heads. */
export interface QuantLayerSpec {
  /** Bits per key code: 2, 4 or 8. */
  kbits: number;
  /** Bits per value code: 2, 4 or 8. */
  vbits: number;
  /** Group size G (tokens per key block, channels per value group). */
  group: number;
  /**
   * Per KV head: R, the residual kept in full precision (a positive multiple of G), or null for
   * a head that is not quantised.
   */
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
  /** Element type of the ring rows. */
  dtype: KvDType;
  /** Most entries each head holds (appends beyond are dropped). */
  capacities: number[];
  /** Ring rows of each head. */
  ringCapacities: number[];
  /** Packed key slots of each head (a multiple of G). */
  keyCapacities: number[];
  /** Packed value slots of each head. */
  valueCapacities: number[];
  /** First packed key slot of each head (a multiple of G). */
  keyBases: number[];
  /** First packed value slot of each head. */
  valueBases: number[];
  /** Ring keys `[rows][headDim]`. */
  rk: GPUBuffer;
  /** Ring values. */
  rv: GPUBuffer;
  /** Codes, u32: keys `[key slots][Wk]`, then values `[value slots][Wv]` from {@link valueCodes}. */
  codes: GPUBuffer;
  /** First word of the value codes. */
  valueCodes: number;
  /** (min, scale) pairs, f32: keys `[key slots/G][D][2]`, then values `[value slots][⌈D/G⌉][2]`. */
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
export const QUANT_META_FIELDS = 10;

/** Options of {@link createQuantKvLayer}: per head, entries to hold and room to leave. */
export interface QuantKvLayerOptions {
  /** Head dimension (a multiple of 4). */
  headDim: number;
  /** Ring element type. */
  dtype: KvDType;
  /** Quantisation (one residual per head, null: not quantised). */
  quant: QuantLayerSpec;
  /** Most entries each head will ever hold (what it keeps now + its decode budget). */
  maxEntries: number[];
  /** Label. */
  label?: string;
}

/**
 * Packed keys (Qk = T − (T mod R)) and values (Qv = max(0, T − R)) of a settled head of `T`
 * entries with residual `R` (null: not quantised, nothing packed).
 */
export function settledPacked(T: number, R: number | null): { keys: number; values: number } {
  if (R === null) return { keys: 0, values: 0 };
  return { keys: T - (T % R), values: Math.max(0, T - R) };
}

/** W: u32 words per token's codes. */
export function codeWords(headDim: number, bits: number): number {
  return Math.ceil((headDim * bits) / 32);
}

function checkSpec(D: number, q: QuantLayerSpec): void {
  for (const bits of [q.kbits, q.vbits]) {
    if (![2, 4, 8].includes(bits)) throw new RangeError(`quant: bits ${bits} not 2, 4 or 8`);
  }
  if (!Number.isInteger(q.group) || q.group < 1) throw new RangeError(`quant: bad group`);
  for (const r of q.residuals) {
    if (r !== null && !(Number.isInteger(r) && r >= q.group && r % q.group === 0)) {
      throw new RangeError(`quant: residual ${r} is not a positive multiple of group ${q.group}`);
    }
  }
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
  const l = {
    ringBases: [] as number[],
    ringCapacities: [] as number[],
    keyBases: [] as number[],
    keyCapacities: [] as number[],
    valueBases: [] as number[],
    valueCapacities: [] as number[],
  };
  let rows = 0, keySlots = 0, valueSlots = 0;
  q.residuals.forEach((r, h) => {
    const n = o.maxEntries[h];
    const most = settledPacked(n, r);
    const rcap = r === null ? n : Math.min(n, r + 1);
    l.ringBases.push(rows);
    l.ringCapacities.push(rcap);
    l.keyBases.push(keySlots);
    l.keyCapacities.push(most.keys);
    l.valueBases.push(valueSlots);
    l.valueCapacities.push(most.values);
    rows += rcap;
    keySlots += most.keys;
    valueSlots += most.values;
  });
  const NG = Math.ceil(D / G);
  const valueCodes = keySlots * codeWords(D, q.kbits), valueParams = (keySlots / G) * D * 2;
  const sizes = {
    rows: Math.max(1, rows) * kvRowBytes(D, o.dtype),
    codes: Math.max(1, valueCodes + valueSlots * codeWords(D, q.vbits)) * 4,
    params: Math.max(1, valueParams + valueSlots * NG * 2) * 4,
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
  meta.set(l.ringBases, 0);
  meta.set(l.ringCapacities, 2 * H);
  meta.set(q.residuals.map((r) => r ?? 0), 4 * H);
  meta.set(l.keyBases, 7 * H);
  meta.set(l.valueBases, 8 * H);
  meta.set(o.maxEntries, 9 * H);
  const label = o.label ?? "qkv";
  return {
    quant: { ...q, residuals: [...q.residuals] },
    numKvHeads: H,
    headDim: D,
    dtype: o.dtype,
    capacities: [...o.maxEntries],
    ringCapacities: l.ringCapacities,
    keyCapacities: l.keyCapacities,
    valueCapacities: l.valueCapacities,
    keyBases: l.keyBases,
    valueBases: l.valueBases,
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

/** Storage of one head: packed codes, (min, scale) pairs, full-precision rows. */
export interface QuantHeadBytes {
  /** Key and value codes. */
  codes: number;
  /** Key and value (min, scale) f32 pairs. */
  scales: number;
  /** Full-precision rows (keys and values). */
  residual: number;
  /** The sum. */
  total: number;
}

/** Bytes held by head `h` of `layer` with `entries` entries, settled (see the module doc). */
export function quantHeadBytes(layer: QuantKvLayer, h: number, entries: number): QuantHeadBytes {
  const packed = settledPacked(entries, layer.quant.residuals[h]);
  return headBytes(layer, packed.keys, packed.values, 2 * entries - packed.keys - packed.values);
}

/** Bytes allocated for head `h` (its packed slots and ring rows). */
export function quantHeadAllocated(layer: QuantKvLayer, h: number): QuantHeadBytes {
  const rows = 2 * layer.ringCapacities[h];
  return headBytes(layer, layer.keyCapacities[h], layer.valueCapacities[h], rows);
}

/** Bytes of `keys` packed keys, `values` packed values and `rows` full-precision K or V rows. */
function headBytes(layer: QuantKvLayer, keys: number, values: number, rows: number) {
  const D = layer.headDim, { kbits, vbits, group } = layer.quant;
  const codes = 4 * (keys * codeWords(D, kbits) + values * codeWords(D, vbits));
  const scales = 8 * ((keys / group) * D + values * Math.ceil(D / group));
  const residual = rows * kvRowBytes(D, layer.dtype);
  return { codes, scales, residual, total: codes + scales + residual };
}

/** One head's state as read back by {@link readQuantMeta}. */
export interface QuantHeadState {
  /** Entries held (T). */
  length: number;
  /** Keys packed (Qk). */
  packedKeys: number;
  /** Values packed (Qv). */
  packedValues: number;
  /** Appends that found no room. */
  dropped: number;
}

/** Reads a quantised layer's meta back (≥ 10 ms), one object per head. */
export async function readQuantMeta(
  ctx: GpuContext,
  layer: QuantKvLayer,
): Promise<QuantHeadState[]> {
  const H = layer.numKvHeads;
  const m = await ctx.readU32(layer.meta, 0, QUANT_META_FIELDS * H);
  return Array.from({ length: H }, (_, h) => ({
    length: m[H + h],
    packedKeys: m[5 * H + h],
    packedValues: m[6 * H + h],
    dropped: m[3 * H + h],
  }));
}

/**
 * WGSL constants of a quantised layer's layout: `D`, `D4`, `G`, `NG` and, per side (`K` keys,
 * `V` values), `KBITS`, `KPER_WORD`, `KW` (words per token), `KMASK`, `KLEVELS` and the same with
 * `V`.
 */
export function quantConstsWgsl(headDim: number, spec: Omit<QuantLayerSpec, "residuals">): string {
  const { kbits, vbits, group } = spec;
  const side = (s: string, bits: number) =>
    `const ${s}BITS = ${bits}u;
const ${s}PER_WORD = ${32 / bits}u;
const ${s}W = ${codeWords(headDim, bits)}u;
const ${s}MASK = ${2 ** bits - 1}u;
const ${s}LEVELS = ${2 ** bits - 1}.0;
`;
  return `const D = ${headDim}u;
const D4 = ${headDim / 4}u;
const G = ${group}u;
const NG = ${Math.ceil(headDim / group)}u;
${side("K", kbits)}${side("V", vbits)}`;
}

/**
 * WGSL statements reading KV head `kvh`'s quantised-layer meta (`kvmeta` and `p.Hkv` in scope):
 * `rbase`, `len` (T), `rcap`, `nqk` (Qk), `nqv` (Qv), `kbase` and `vbase` (see the module doc).
 */
export function quantHeadMetaWgsl(): string {
  return `  let rbase = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let rcap = kvmeta[2u * p.Hkv + kvh];
  let nqk = kvmeta[5u * p.Hkv + kvh];
  let nqv = kvmeta[6u * p.Hkv + kvh];
  let kbase = kvmeta[7u * p.Hkv + kvh];
  let vbase = kvmeta[8u * p.Hkv + kvh];`;
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
