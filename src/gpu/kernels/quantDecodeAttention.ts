/**
 * Decode attention (one query token) over a quantised layer: split-KV flash decoding like
 * `decodeAttention`, dequantising inside the kernel. A head's entries are numbered
 * j = 0 … T−1: keys j < Qk are packed at key slot `kbase + j` (dequantised per channel with the
 * (min, scale) of their block of G slots), values j < Qv at value slot `vbase + j` (per token and
 * group of G channels); the rest are full precision at ring row `rbase + j % rcap` (Qv ≤ Qk; see
 * `quantKvCache.ts`).
 *
 * Split pass: one thread per (split of `splitSize` entries, KV head, chunk of the GQA group's query
 * heads — the whole group up to 8, see `decodeHeadsPerThread`), so each entry is dequantised once
 * and serves every head of the chunk. WGSL is generated unrolled per (dtype, D, bits, G, heads per
 * thread) with named registers (`wgslUnroll.ts`); no private array is indexed in a loop:
 * - packed-key part: an outer loop over the key blocks the split touches loads the block's key
 *   (min, scale) into named vec4 registers `kmn*` / `ksc*`; the inner loop runs the block's
 *   entries. Each channel's code word, shift and value group are compile-time constants, so a key
 *   is `kmn + codes·ksc` and a packed value `vmin + codes·vscale`, the per-token (min, scale)
 *   scalars broadcast to the channels they cover (value groups need not be multiples of 4); the
 *   value comes from the ring instead for Qv ≤ j < Qk;
 * - ring part: the same body over full-precision rows (f32 or f16).
 * The online softmax advances one entry at a time (rescale folded into `o = o·c + p·v`): tiles of
 * 2–16 entries with `select` masking, as in `decodeAttention`, measured 10–70 % slower here on
 * llvmpipe at 4K entries (more live values, larger code) and compiled longer. Each head's partial
 * `(O, m, l)` goes to the scratch `[H][splits][D/4 + 1]` vec4 (splits past a head's length write
 * `l = 0`); the shared `decodeReduce` pass merges the splits. Workgroups of 16 threads, so a few
 * dozen splits still spread over the cores.
 *
 * Split bindings: 0 params, 1 q f32, 2 meta, 3 residual K, 4 residual V, 5 codes, 6 pairs (read),
 * 7 scratch (read_write).
 *
 * That split pass is the one for CPU adapters; where `ctx.kernels.decode` is `workgroup` (GPUs),
 * `workgroupQuantDecodeAttention.ts` writes the same partials with a workgroup per split.
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp } from "../op.ts";
import { codeWords, quantHeadMetaWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import {
  decodeHeadsPerThread,
  planDecodeSplits,
  SPLIT_WG,
  splitDecodeOp,
} from "./decodeAttention.ts";
import { each } from "./wgslUnroll.ts";
import { codesVec4Wgsl, quantDecodeParams, quantDecodePreambleWgsl } from "./quantDecodeCommon.ts";
import { workgroupQuantDecodeSplit } from "./workgroupQuantDecodeAttention.ts";

/** Arguments of {@link quantDecodeAttention}. */
export interface QuantDecodeAttentionArgs {
  /** The layer's quantised cache (the current token already appended). */
  cache: QuantKvLayer;
  /** Query `[H·D]` f32 after RoPE. */
  q: BufferRef;
  /** Output `[H·D]` f32. */
  out: BufferRef;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  /** Scratch of at least `decodeScratchBytes` bytes (allocated by the op if omitted). */
  scratch?: GPUBuffer;
  /** Entries per split (default: about 64 splits over the largest head, at least 32). */
  splitSize?: number;
  /** Split pass: thread per split (CPU adapters) or workgroup per split (default: `ctx.kernels`). */
  kernel?: "thread" | "workgroup";
}

/** Largest number of entries any head of `c` can hold. */
export function quantMaxEntries(c: QuantKvLayer): number {
  return Math.max(1, ...c.capacities);
}

/** Where an entry lives and how its key / value vec4s are read (WGSL snippets). */
interface EntrySource {
  /** Statements defining `k0 … k{D4−1}` of entry `j`. */
  keys: string;
  /** Statements before the entry's values are read. */
  valuePrelude: string;
  /** Expression of value vec4 `d`. */
  value(d: number): string;
}

/**
 * Online-softmax update by entry `j` for `G` heads: each key / value vec4 is built once and serves
 * every head; the rescale by e^{m−m′} is folded into the value accumulation.
 */
function entryCode(D4: number, G: number, src: EntrySource): string {
  return `${src.keys}
${
    each(G, (r) =>
      `      let s${r} = ${each(D4, (d) => `dot(q${r}_${d}, k${d})`, " + ")};
      let mn${r} = max(m${r}, s${r});
      let c${r} = exp(m${r} - mn${r});
      let p${r} = exp(s${r} - mn${r});
      l${r} = l${r} * c${r} + p${r};
      m${r} = mn${r};`)
  }
${src.valuePrelude}
${
    each(D4, (d) =>
      `      { let v = ${src.value(d)};
${each(G, (r) => `        o${r}_${d} = o${r}_${d} * c${r} + p${r} * v;`)} }`)
  }`;
}

/** Split pass for layer `c`, `G` query heads per thread (see the module doc). */
function splitCode(c: QuantKvLayer, G: number, WG: number, storage: KvStorage): string {
  const D = c.headDim, D4 = D / 4, { kbits, vbits, group } = c.quant;
  const KW = codeWords(D, kbits), VW = codeWords(D, vbits), NG = Math.ceil(D / group);
  // Codes of channels 4d … 4d+3 from the entry's words, loaded as `kw0 …` / `vw0 …`.
  const codes = (w: string, d: number, bits: number) => codesVec4Wgsl((i) => `${w}${i}`, d, bits);
  // Value (min, scale) of channels 4d … 4d+3: one broadcast scalar when they share a group.
  const vgroup = (name: string, d: number) => {
    const gs = Array.from({ length: 4 }, (_, i) => Math.floor((4 * d + i) / group));
    return gs.every((g) => g === gs[0])
      ? `${name}${gs[0]}`
      : `vec4<f32>(${gs.map((g) => `${name}${g}`).join(", ")})`;
  };
  const packed: EntrySource = {
    keys: `      let sl = kbase + j;
${each(KW, (w) => `      let kw${w} = kq(sl * KW + ${w}u);`)}
${each(D4, (d) => `      let k${d} = kmn${d} + ${codes("kw", d, kbits)} * ksc${d};`)}`,
    valuePrelude: `${each(D4, (d) => `      var vv${d}: vec4<f32>;`)}
      if (j < nqv) {
        let vsl = vbase + j;
${each(VW, (w) => `        let vw${w} = vq(vsl * VW + ${w}u);`)}
        let va = 2u * vsl * NG;
${
      each(NG, (g) =>
        `        let vm${g} = vp(va + ${2 * g}u);
        let vs${g} = vp(va + ${2 * g + 1}u);`)
    }
${
      each(D4, (d) =>
        `        vv${d} = ${vgroup("vm", d)} + ${codes("vw", d, vbits)} * ${vgroup("vs", d)};`)
    }
      } else {
        let vrow = (rbase + j % rcap) * D4;
${each(D4, (d) => `        vv${d} = RV4(vrow + ${d}u);`)}
      }`,
    value: (d) => `vv${d}`,
  };
  const ring: EntrySource = {
    keys: `      let row = (rbase + j % rcap) * D4;
${each(D4, (d) => `      let k${d} = RK4(row + ${d}u);`)}`,
    valuePrelude: "",
    value: (d) => `RV4(row + ${d}u)`,
  };
  return `${quantDecodePreambleWgsl(c, storage)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x;
  if (s >= p.splits) { return; }
  let kvh = gid.y / p.chunks;
  let h0 = kvh * p.group + (gid.y % p.chunks) * ${G}u;
${quantHeadMetaWgsl()}
  let j0 = s * p.splitSize;
  let j1 = min(j0 + p.splitSize, len);
${
    each(G, (r) =>
      `${each(D4, (d) => `  let q${r}_${d} = Q[(h0 + ${r}u) * D4 + ${d}u] * p.scale;`)}
${each(D4, (d) => `  var o${r}_${d} = vec4<f32>(0.0);`)}
  var m${r} = -3.0e38;
  var l${r} = 0.0;`)
  }
${each(D4, (d) => `  var kmn${d} = vec4<f32>(0.0);\n  var ksc${d} = vec4<f32>(0.0);`)}
  // Packed keys, block by block (slot kbase + j is in block (kbase + j) / G; kbase % G = 0).
  let jq = min(j1, nqk);
  var j = j0;
  for (; j < jq;) {
    let blk = (kbase + j) / G;
    let bend = min(jq, (blk + 1u) * G - kbase);
    let pa = 2u * blk * D;
${
    each(D4, (d) =>
      `    kmn${d} = vec4<f32>(${each(4, (i) => `kp(pa + ${8 * d + 2 * i}u)`, ", ")});
    ksc${d} = vec4<f32>(${each(4, (i) => `kp(pa + ${8 * d + 2 * i + 1}u)`, ", ")});`)
  }
    for (; j < bend; j++) {
${entryCode(D4, G, packed)}
    }
  }
  // Full-precision entries.
  for (j = max(j0, nqk); j < j1; j++) {
${entryCode(D4, G, ring)}
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

/** Prepares split-KV decode attention over a quantised layer (two dispatches). */
export function quantDecodeAttention(ctx: GpuContext, a: QuantDecodeAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`quantDecodeAttention: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const plan = planDecodeSplits(ctx, "quantDecodeAttention", {
    ...a,
    entries: quantMaxEntries(c),
    headDim: D,
  });
  const G = decodeHeadsPerThread(H / c.numKvHeads), WG = SPLIT_WG;
  const pass = {
    ...plan,
    q: a.q,
    numHeads: H,
    scale: a.scale ?? 1 / Math.sqrt(D),
    headsPerGroup: G,
  };
  const { kbits, vbits, group } = c.quant;
  const key = `quantDecodeAttnG:${c.dtype}:${D}:${kbits}:${vbits}:${group}:${G}:${WG}`;
  const split = plan.kernel === "workgroup"
    ? workgroupQuantDecodeSplit(ctx, { ...pass, cache: c })
    : dispatchOp(ctx, {
      label: "quantDecodeAttention.split",
      pipeline: ctx.pipeline(key, () => splitCode(c, G, WG, kvStorage(ctx, c.dtype))),
      params: quantDecodeParams(c, pass),
      buffers: [a.q, c.meta, c.rk, c.rv, c.codes, c.params, plan.scratch],
      workgroups: [Math.ceil(plan.splits / WG), c.numKvHeads * (H / c.numKvHeads / G)],
    });
  return splitDecodeOp(ctx, "quantDecodeAttention", split, plan, a.out, H, D);
}
