/**
 * Decode attention (one query token) over a layer's ragged KV cache, split-KV flash-decoding:
 *
 * 1. split pass — one thread per (split of `splitSize` keys, KV head): online softmax over the
 *    split's keys for all the query heads of the KV group (`h / (H / Hkv) = kvHead`; groups larger
 *    than 8 are cut into chunks, see {@link decodeHeadsPerThread}), so each K/V row is loaded once
 *    per group; WGSL generated unrolled per group size (`wgslUnroll.ts`). Each head's partial
 *    `(O unnormalised, m, l)` goes to a scratch buffer; splits past the head's length write `l = 0`;
 * 2. reduce pass — one workgroup per query head merges its splits:
 *    `out = Σ O_s·e^{m_s−M} / Σ l_s·e^{m_s−M}` (a head with no keys outputs zeros).
 *
 * Both passes have a GPU form, chosen by `ctx.kernels.decode` (`workgroup`):
 * `workgroupDecodeAttention.ts` (a workgroup per split) and `workgroupDecodeReduce.ts` (the splits
 * merged in parallel).
 *
 * Lengths (and a head's logit-bias row, see `kvCache.ts`) are read from the cache's `meta` on the GPU, so the op is prepared once per layer and
 * encoded every step. Scratch layout: `[H][numSplits][D/4 + 1]` vec4 (O, then (m, l, 0, 0)).
 *
 * Split bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read),
 * 5 scratch (read_write). Reduce bindings: 0 params, 1 scratch (read), 2 out f32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams, sequenceOp } from "../op.ts";
import { ATTENTION_TILE, decodeSplitPreambleWgsl, kvHeadMetaWgsl } from "./attentionCommon.ts";
import { each, maxOf } from "./wgslUnroll.ts";
import { MAX_SPLIT, workgroupDecodeSplit } from "./workgroupDecodeAttention.ts";
import { workgroupDecodeReduce } from "./workgroupDecodeReduce.ts";

/** Arguments of {@link decodeAttention}. */
export interface DecodeAttentionArgs {
  /** The layer's cache (the current token's k/v already appended). */
  cache: KvCacheLayer;
  /** Query `[H·D]` f32 after RoPE, starting at element `qOffset` (a multiple of 4). */
  q: BufferRef;
  /** First query element (default 0). */
  qOffset?: number;
  /** Output `[H·D]` f32. */
  out: BufferRef;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  /** Scratch of at least {@link decodeScratchBytes} bytes (allocated by the op if omitted). */
  scratch?: GPUBuffer;
  /** Keys per split (default: about 64 splits over the largest capacity, at least 32). */
  splitSize?: number;
  /** Keys per unrolled tile of the split loop (default {@link DECODE_TILE}). */
  tile?: number;
  /** Split threads per workgroup of the thread-per-split pass (default {@link SPLIT_WG}). */
  workgroupSize?: number;
  /**
   * Split pass: `"thread"` (one thread per split, unrolled; CPU adapters) or `"workgroup"`
   * (`workgroupDecodeAttention.ts`; GPUs). Default: `ctx.kernels.decode`.
   */
  kernel?: "thread" | "workgroup";
}

/**
 * Keys per unrolled tile of the split pass: 1 (llvmpipe, one layer, H8/KV2 and H8/KV8 of 64,
 * three alternating rounds: 16K keys 3.5 ms vs 4.0–4.8 with tiles of 8, MHA 8.5 vs 11.6–13.3; 1K
 * within noise, as the quantised kernel found).
 */
export const DECODE_TILE = 1;

/**
 * Split size used for a cache whose largest head capacity is `maxCapacity`: about `splits`
 * splits (default 64, {@link decodeSplitTarget} picks per adapter), at least 32 keys each.
 */
export function defaultSplitSize(maxCapacity: number, splits = 64): number {
  return Math.max(32, Math.ceil(maxCapacity / splits / ATTENTION_TILE) * ATTENTION_TILE);
}

/**
 * Splits to aim for: 64 on CPU adapters (a few per core is enough), 256 on GPUs, where one
 * thread per split must fill far more lanes. H100, 16K keys, split pass + reduce (µs, splits of
 * 32/64/128/256 keys): H8/KV2 388/335/418/725, H8/KV8 358/256/271/421, H32/KV8 474/434/630/1217;
 * at 1K keys 32-key splits (the minimum) are within 25% of the best (bench/NOTES.md, GPU).
 */
export function decodeSplitTarget(ctx: GpuContext): number {
  return ctx.isFallbackAdapter ? 64 : 256;
}

/**
 * Split threads per workgroup: 16, so a few dozen splits still spread over CPU cores; on an H100
 * 16 was also as fast as 64 or faster in every shape measured (the sweep above).
 */
export const SPLIT_WG = 16;

/** Scratch bytes needed by {@link decodeAttention}. */
export function decodeScratchBytes(
  numHeads: number,
  headDim: number,
  maxCapacity: number,
  splitSize = defaultSplitSize(maxCapacity),
): number {
  const splits = Math.max(1, Math.ceil(maxCapacity / splitSize));
  return numHeads * splits * (headDim / 4 + 1) * 16;
}

/** Query heads per split thread for a GQA group: the whole group up to 8, else its largest divisor ≤ 8. */
export function decodeHeadsPerThread(group: number): number {
  for (let g = Math.min(group, 8); g > 1; g--) if (group % g === 0) return g;
  return 1;
}

/**
 * Split pass, one thread per (split, KV head, chunk of `G` query heads of its group): every K/V
 * row loaded serves the `G` heads. Generated unrolled (named registers) over tiles of `TILE` keys
 * with constant trip counts; keys past the split's end are masked by `select`.
 */
function splitCode(dtype: KvStorage, D4: number, G: number, T: number, WG: number): string {
  const dotRow = (r: number, k: (d: number) => string) =>
    each(D4, (d) => `dot(q${r}_${d}, ${k(d)})`, " + ");
  return `${decodeSplitPreambleWgsl(dtype, D4)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x;
  if (s >= p.splits) { return; }
  let kvh = gid.y / p.chunks;
  let h0 = kvh * p.group + (gid.y % p.chunks) * ${G}u;
${kvHeadMetaWgsl()}
  let j0 = s * p.splitSize;
  let j1 = min(j0 + p.splitSize, len);
${
    each(G, (r) =>
      `${
        each(D4, (d) => `  let q${r}_${d} = Q[p.q04 + (h0 + ${r}u) * D4 + ${d}u] * p.scale;`)
      }
${each(D4, (d) => `  var o${r}_${d} = vec4<f32>(0.0);`)}
  var m${r} = NEG;
  var l${r} = 0.0;`)
  }
  for (var j = j0; j < j1; j += ${T}u) {
${
    each(T, (t) =>
      `    let e${t} = base + min(j + ${t}u, j1 - 1u);
    let row${t} = e${t} * D4;
    let bias${t} = select(0.0, biasValue, e${t} == biasRow);
    let ok${t} = j + ${t}u < j1;`)
  }
${
    each(T, (t) =>
      `    var s${t}: array<f32, ${G}>;
    {
${each(D4, (d) => `      let k${d} = KC4(row${t} + ${d}u);`)}
${
        each(G, (r) =>
          `      s${t}[${r}] = select(NEG, ${dotRow(r, (d) => `k${d}`)} + bias${t}, ok${t});`)
      }
    }`)
  }
${
    each(G, (r) =>
      `    {
      let mnew = ${maxOf([`m${r}`, ...Array.from({ length: T }, (_, t) => `s${t}[${r}]`)])};
      let c = exp(m${r} - mnew);
${each(T, (t) => `      s${t}[${r}] = select(0.0, exp(s${t}[${r}] - mnew), ok${t});`)}
      l${r} = l${r} * c + ${each(T, (t) => `s${t}[${r}]`, " + ")};
      m${r} = mnew;
${each(D4, (d) => `      o${r}_${d} *= c;`)}
    }`)
  }
${
    each(T, (t) =>
      each(D4, (d) =>
        `    { let v = VC4(row${t} + ${d}u);
${each(G, (r) => `      o${r}_${d} += s${t}[${r}] * v;`)} }`))
  }
  }
${
    each(G, (r) =>
      `  {
    let at = ((h0 + ${r}u) * p.splits + s) * (D4 + 1u);
${each(D4, (d) => `    part[at + ${d}u] = o${r}_${d};`)}
    part[at + D4] = vec4<f32>(m${r}, l${r}, 0.0, 0.0);
  }`)
  }
}
`;
}

function reduceCode(D4: number): string {
  return `struct Params { splits: u32 };
@group(0) @binding(0) var<uniform> p: Params;
const D4 = ${D4}u;
@group(0) @binding(1) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let first = h * p.splits;
  var m = -3.0e38;
  for (var s = 0u; s < p.splits; s++) { m = max(m, part[(first + s) * (D4 + 1u) + D4].x); }
  var total = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let ml = part[(first + s) * (D4 + 1u) + D4];
    total += ml.y * exp(ml.x - m);
  }
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var d = li; d < D4; d += 32u) {
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < p.splits; s++) {
      let at = (first + s) * (D4 + 1u);
      let w = exp(part[at + D4].x - m);
      if (w > 0.0) { acc += part[at + d] * w; }
    }
    out[h * D4 + d] = acc * inv;
  }
}
`;
}

/** Prepares split-KV decode attention for one layer (two dispatches). */
export function decodeAttention(ctx: GpuContext, a: DecodeAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim, D4 = D / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`decodeAttention: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const qOffset = a.qOffset ?? 0;
  if (qOffset % 4 !== 0) throw new RangeError("decodeAttention: qOffset must be a multiple of 4");
  const maxCap = Math.max(1, ...c.capacities);
  const plan = planDecodeSplits(ctx, "decodeAttention", { ...a, entries: maxCap, headDim: D });
  const { kernel, splitSize, splits, scratch } = plan;
  const group = H / c.numKvHeads;
  const G = decodeHeadsPerThread(group), chunks = group / G;
  const T = a.tile ?? DECODE_TILE;
  const WG = a.workgroupSize ?? SPLIT_WG;
  const scale = a.scale ?? 1 / Math.sqrt(D);
  const split = kernel === "workgroup"
    ? workgroupDecodeSplit(ctx, {
      ...plan,
      cache: c,
      q: a.q,
      qOffset,
      numHeads: H,
      scale,
      headsPerGroup: G,
    })
    : dispatchOp(ctx, {
      label: "decodeAttention.split",
      pipeline: ctx.pipeline(
        `decodeAttnSplitG:${c.dtype}:${D4}:${G}:${T}:${WG}`,
        () => splitCode(kvStorage(ctx, c.dtype), D4, G, T, WG),
      ),
      params: packParams([
        ["u32", H],
        ["u32", c.numKvHeads],
        ["u32", H / c.numKvHeads],
        ["u32", splits],
        ["u32", splitSize],
        ["f32", scale],
        ["u32", qOffset / 4],
        ["u32", chunks],
      ]),
      buffers: [a.q, c.meta, c.k, c.v, scratch],
      workgroups: [Math.ceil(splits / WG), c.numKvHeads * chunks],
    });
  return splitDecodeOp(ctx, "decodeAttention", split, plan, a.out, H, D);
}

/** How a decode attention op splits its entries (see {@link planDecodeSplits}). */
export interface DecodeSplitPlan {
  /** Split and reduce passes. */
  kernel: "thread" | "workgroup";
  /** Entries per split. */
  splitSize: number;
  /** Splits per head. */
  splits: number;
  /** Partials buffer. */
  scratch: GPUBuffer;
  /** The scratch, when the op allocated it (released with the op). */
  owned: GPUBuffer | null;
}

/**
 * Kernel, split size and partials buffer of a decode attention op over heads of at most `entries`
 * entries, shared by the plain and the quantised op: the workgroup pass takes about 64 splits of
 * at most `MAX_SPLIT` entries, the thread pass {@link decodeSplitTarget} splits.
 */
export function planDecodeSplits(
  ctx: GpuContext,
  what: string,
  a: {
    entries: number;
    numHeads: number;
    headDim: number;
    kernel?: "thread" | "workgroup";
    splitSize?: number;
    scratch?: GPUBuffer;
  },
): DecodeSplitPlan {
  const kernel = a.kernel ?? ctx.kernels.decode;
  const splitSize = a.splitSize ??
    (kernel === "workgroup"
      ? Math.min(MAX_SPLIT, defaultSplitSize(a.entries))
      : defaultSplitSize(a.entries, decodeSplitTarget(ctx)));
  const splits = Math.max(1, Math.ceil(a.entries / splitSize));
  const need = decodeScratchBytes(a.numHeads, a.headDim, a.entries, splitSize);
  const owned = a.scratch ? null : ctx.createBuffer(need);
  const scratch = a.scratch ?? owned!;
  if (scratch.size < need) throw new RangeError(`${what}: scratch needs ${need} bytes`);
  return { kernel, splitSize, splits, scratch, owned };
}

/** `split` followed by the plan's reduce pass, as one op that releases an owned scratch. */
export function splitDecodeOp(
  ctx: GpuContext,
  label: string,
  split: GpuOp,
  plan: DecodeSplitPlan,
  out: BufferRef,
  numHeads: number,
  headDim: number,
): GpuOp {
  const { scratch, splits, kernel } = plan;
  const reduce = decodeReduce(ctx, { scratch, out, numHeads, headDim, splits, kernel });
  return withOwnedScratch(ctx, sequenceOp(label, [split, reduce]), plan.owned);
}

/** Arguments of {@link decodeReduce}. */
export interface DecodeReduceArgs {
  /** Partials `[H][splits][D/4 + 1]` vec4 written by a split pass. */
  scratch: GPUBuffer;
  /** Output `[H·D]` f32. */
  out: BufferRef;
  /** Query heads. */
  numHeads: number;
  /** Head dimension. */
  headDim: number;
  /** Splits per head. */
  splits: number;
  /**
   * `thread`: each thread walks every split (CPU adapters); `workgroup`: the splits are merged in
   * parallel by `workgroupDecodeReduce.ts` (GPUs). Default: `ctx.kernels.decode`.
   */
  kernel?: "thread" | "workgroup";
}

/** The reduce pass of split-KV decoding (shared by every split pass writing the same partials). */
export function decodeReduce(ctx: GpuContext, a: DecodeReduceArgs): GpuOp {
  if ((a.kernel ?? ctx.kernels.decode) === "workgroup") return workgroupDecodeReduce(ctx, a);
  const D4 = a.headDim / 4;
  return dispatchOp(ctx, {
    label: "decodeAttention.reduce",
    pipeline: ctx.pipeline(`decodeAttnReduce:${D4}`, () => reduceCode(D4)),
    params: packParams([["u32", a.splits]]),
    buffers: [a.scratch, a.out],
    workgroups: [a.numHeads],
  });
}

/** Wraps `op` so that destroying it also releases `owned` (a scratch the op allocated). */
export function withOwnedScratch(ctx: GpuContext, op: GpuOp, owned: GPUBuffer | null): GpuOp {
  return {
    label: op.label,
    encode: op.encode,
    destroy() {
      op.destroy();
      if (owned) ctx.release(owned);
      owned = null;
    },
  };
}
