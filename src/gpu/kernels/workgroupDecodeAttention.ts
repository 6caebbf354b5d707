/**
 * The split pass of decode attention for GPUs: one workgroup of {@link WG} threads per (split of
 * up to {@link MAX_SPLIT} keys, KV head, chunk of `G` query heads of its group), where the
 * thread-per-split pass of `decodeAttention.ts` (written for CPU adapters) leaves a GPU's lanes
 * idle and reads each key row from one lane. Here:
 *
 * 1. the group's queries go to workgroup memory; thread t scores keys `t, t + WG, …` of the split
 *    against all `G` heads (scores kept in workgroup memory, logit-bias row honoured);
 * 2. per-head maximum and sum of `exp(s − max)` by tree reductions in workgroup memory;
 * 3. each thread owns one (head, 4 dims) pair of the output and one slice of the keys, so a value
 *    row is read by consecutive threads (coalesced); slices are summed in workgroup memory.
 *
 * It writes the same partials as the thread-per-split pass — `(O unnormalised, m, l)` per (head,
 * split) in `[H][splits][D/4 + 1]` vec4, `l = 0` for splits past a head's length — so the same
 * reduce pass (`decodeReduce`) merges them.
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read), 5 scratch (rw).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, type KvStorage, kvStorage } from "../kvCache.ts";
import { decodeSplitPreambleWgsl, kvHeadMetaWgsl } from "./attentionCommon.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { each } from "./wgslUnroll.ts";

/** Threads per workgroup. */
export const WG = 64;
/** Largest split (keys per workgroup): the scores of a split live in workgroup memory. */
export const MAX_SPLIT = 512;

/** Arguments of {@link workgroupDecodeSplit}. */
export interface WorkgroupDecodeSplitArgs {
  /** The layer's cache. */
  cache: KvCacheLayer;
  /** Query `[H·D]` f32 after RoPE. */
  q: BufferRef;
  /** First query element (a multiple of 4). */
  qOffset: number;
  /** Query heads. */
  numHeads: number;
  /** Softmax scale. */
  scale: number;
  /** Partials buffer (see the module doc). */
  scratch: GPUBuffer;
  /** Splits per head. */
  splits: number;
  /** Keys per split, at most {@link MAX_SPLIT}. */
  splitSize: number;
  /** Query heads per workgroup (a divisor of the GQA group). */
  headsPerGroup: number;
}

/**
 * WGSL declarations shared by the workgroup split passes (this one and the quantised one in
 * `workgroupQuantDecodeAttention.ts`): `S`, and the workgroup arrays `qs` (the chunk's `G`
 * scaled queries), `sc` (scores, then probabilities, `[G][S]`), `red` (tree reductions) and `acc`
 * (value slices).
 */
export function workgroupSplitDeclsWgsl(G: number, D4: number): string {
  const pairs = G * D4;
  return `const S = ${MAX_SPLIT}u;
var<workgroup> qs: array<vec4<f32>, ${pairs}>;
var<workgroup> sc: array<f32, ${G * MAX_SPLIT}>;
var<workgroup> red: array<f32, ${G * WG}>;
var<workgroup> acc: array<vec4<f32>, ${valueSlices(G, D4) * pairs}>;`;
}

/** Key slices per output pair in step 3: spare threads take a share of the keys. */
function valueSlices(G: number, D4: number): number {
  return Math.max(1, Math.floor(WG / (G * D4)));
}

/**
 * WGSL statements loading the chunk's `G` queries (heads `h0 …`), scaled by `p.scale`, into `qs`
 * (`p.q04`: first query vec4).
 */
export function workgroupLoadQueriesWgsl(G: number, D4: number): string {
  return `  for (var i = t; i < ${G * D4}u; i += ${WG}u) {
    qs[i] = Q[p.q04 + (h0 + i / ${D4}u) * ${D4}u + i % ${D4}u] * p.scale;
  }
  workgroupBarrier();`;
}

/**
 * WGSL statements after the scores: with `sc` filled for entries `0 … n−1` of the split and each
 * thread's maxima in `m0 … m{G−1}`, computes the per-head maxima and sums, then O = Σ p_j v_j
 * (thread t owns one (head, 4 dims) pair and a slice of the entries, so a value row is read by
 * consecutive threads) and writes the partials of split `s`. `value` is a WGSL expression of the
 * value vec4 `d` (runtime) of split entry `jj`.
 */
export function workgroupSoftmaxValuesWgsl(G: number, D4: number, value: string): string {
  const pairs = G * D4, reps = valueSlices(G, D4);
  const tree = (op: (a: string, b: string) => string) =>
    `  for (var st = ${WG / 2}u; st > 0u; st >>= 1u) {
    if (t < st) {
${
      each(G, (g) => {
        const [a, b] = [`red[${g * WG}u + t]`, `red[${g * WG}u + t + st]`];
        return `      ${a} = ${op(a, b)};`;
      })
    }
    }
    workgroupBarrier();
  }`;
  return `  // 2. maxima, then probabilities and their sums
${each(G, (g) => `  red[${g * WG}u + t] = m${g};`)}
  workgroupBarrier();
${tree((a, b) => `max(${a}, ${b})`)}
${each(G, (g) => `  let mx${g} = red[${g * WG}u];`)}
  workgroupBarrier();
${each(G, (g) => `  var l${g} = 0.0;`)}
  for (var jj = t; jj < n; jj += ${WG}u) {
${
    each(G, (g) =>
      `    let e${g} = exp(sc[${g}u * S + jj] - mx${g});
    sc[${g}u * S + jj] = e${g};
    l${g} += e${g};`)
  }
  }
${each(G, (g) => `  red[${g * WG}u + t] = l${g};`)}
  workgroupBarrier();
${tree((a, b) => `${a} + ${b}`)}
  // 3. O = Σ p_j v_j: thread t owns pair t % ${pairs} (head, 4 dims) and keys ≡ t / ${pairs}
  for (var i = t; i < ${reps * pairs}u; i += ${WG}u) {
    let pair = i % ${pairs}u;
    let g = pair / ${D4}u;
    let d = pair % ${D4}u;
    var o = vec4<f32>(0.0);
    for (var jj = i / ${pairs}u; jj < n; jj += ${reps}u) {
      o += sc[g * S + jj] * ${value};
    }
    acc[i] = o;
  }
  workgroupBarrier();
  for (var pair = t; pair < ${pairs}u; pair += ${WG}u) {
    var o = acc[pair];
    for (var r = 1u; r < ${reps}u; r++) { o += acc[r * ${pairs}u + pair]; }
    let g = pair / ${D4}u;
    part[((h0 + g) * p.splits + s) * (${D4}u + 1u) + pair % ${D4}u] = o;
  }
${
    each(G, (g) =>
      `  if (t == ${g}u) {
    part[((h0 + ${g}u) * p.splits + s) * (${D4}u + 1u) + ${D4}u] = vec4<f32>(mx${g}, red[${
        g * WG
      }u], 0.0, 0.0);
  }`)
  }`;
}

function code(dtype: KvStorage, D4: number, G: number): string {
  return `${decodeSplitPreambleWgsl(dtype, D4)}
${workgroupSplitDeclsWgsl(G, D4)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = wid.x;
  let kvh = wid.y / p.chunks;
  let h0 = kvh * p.group + (wid.y % p.chunks) * ${G}u;
${kvHeadMetaWgsl()}
  let j0 = s * p.splitSize;
  let n = select(0u, min(p.splitSize, len - j0), j0 < len);
${workgroupLoadQueriesWgsl(G, D4)}
  // 1. scores, and each thread's maximum per head
${each(G, (g) => `  var m${g} = NEG;`)}
  for (var jj = t; jj < n; jj += ${WG}u) {
    let e = base + j0 + jj;
    let row = e * D4;
    let bias = select(0.0, biasValue, e == biasRow);
${each(D4, (d) => `    let k${d} = KC4(row + ${d}u);`)}
${
    each(G, (g) =>
      `    let s${g} = ${
        each(D4, (d) => `dot(qs[${g * D4 + d}u], k${d})`, " + ")
      } + bias;
    sc[${g}u * S + jj] = s${g};
    m${g} = max(m${g}, s${g});`)
  }
  }
${workgroupSoftmaxValuesWgsl(G, D4, "VC4((base + j0 + jj) * D4 + d)")}
}
`;
}

/**
 * Prepares the workgroup-per-split pass (one dispatch). The caller owns the scratch and adds the
 * reduce pass; `decodeAttention` does both and picks this pass on GPUs.
 */
export function workgroupDecodeSplit(ctx: GpuContext, a: WorkgroupDecodeSplitArgs): GpuOp {
  const c = a.cache;
  const D4 = c.headDim / 4, G = a.headsPerGroup;
  const group = a.numHeads / c.numKvHeads;
  if (a.splitSize < 1 || a.splitSize > MAX_SPLIT) {
    throw new RangeError(`workgroupDecodeSplit: split of ${a.splitSize} keys (1..${MAX_SPLIT})`);
  }
  return dispatchOp(ctx, {
    label: "decodeAttention.split",
    pipeline: ctx.pipeline(
      `decodeAttnWg:${c.dtype}:${D4}:${G}`,
      () => code(kvStorage(ctx, c.dtype), D4, G),
    ),
    params: packParams([
      ["u32", a.numHeads],
      ["u32", c.numKvHeads],
      ["u32", group],
      ["u32", a.splits],
      ["u32", a.splitSize],
      ["f32", a.scale],
      ["u32", a.qOffset / 4],
      ["u32", group / G],
    ]),
    buffers: [a.q, c.meta, c.k, c.v, a.scratch],
    workgroups: [a.splits, c.numKvHeads * (group / G)],
  });
}
