/**
 * Prefill attention with K/V tiles in workgroup memory, the GPU layout of flash attention: the
 * same contract as `prefillAttention.ts` (causal over a ragged cache that already holds the chunk,
 * GQA, logit-bias row, optional SnapKV observation window), with a workgroup of 64 threads per
 * block of `64 / G` consecutive queries × `G` query heads of one KV group (one (query, head) row
 * per thread, q and the output accumulator in registers). For every tile of `BK` keys the
 * workgroup stages K and V rows once (coalesced), then each thread scores the tile with broadcast
 * reads and updates its online softmax 8 keys at a time (one max, one rescale of the accumulator
 * and one exp per key, as FlashAttention-2 does per block) — each K/V row is read from memory once
 * per block instead of once per (query, head). The observation window makes a second pass over the key tiles for the
 * blocks that hold window rows.
 *
 * A GPU candidate next to the thread-per-row kernel (the default on GPUs), used by
 * calling it directly (tests, `kernels_bench`) until a GPU run measures it and decides.
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read), 5 out f32
 * (read_write), 6 obs f32 (read_write, only with `window > 0`).
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp } from "../op.ts";
import {
  type PrefillAttentionArgs,
  prefillLayout,
  prefillParams,
  prefillPreambleWgsl,
} from "./prefillAttention.ts";
import { kvHeadMetaWgsl } from "./attentionCommon.ts";
import { each, maxOf } from "./wgslUnroll.ts";

/** Threads (query, head rows) per workgroup. */
const WG = 64;

/** Keys staged per tile: 32, or 16 for head dims above 64 (workgroup memory ≤ 16 KiB). */
export function prefillKeyTile(headDim: number): number {
  return headDim > 64 ? 16 : 32;
}

/** Query heads per workgroup for a GQA group: the largest of 8, 4, 2, 1 dividing it. */
function headsPerBlock(group: number): number {
  for (const g of [8, 4, 2]) if (group % g === 0) return g;
  return 1;
}

/** Keys per online-softmax step within a tile: one max and one rescale per 8 keys. */
const ST = 8;

function code(dtype: KvStorage, D4: number, G: number, BK: number, withObs: boolean): string {
  const BQ = WG / G;
  const dot = (k: (d: number) => string) => each(D4, (d) => `dot(q${d}, ${k(d)})`, " + ");
  // Cooperative load of keys [t0, t0 + BK) (clamped) into workgroup memory.
  const load = (kv: boolean) =>
    `    for (var e = li; e < ${BK * D4}u; e += ${WG}u) {
      let row = base + min(t0 + e / D4, max(jmax, 1u) - 1u);
      kt[e] = KC4(row * D4 + e % D4);
${kv ? "      vt[e] = VC4(row * D4 + e % D4);" : ""}
    }
    workgroupBarrier();`;
  const obs = withObs
    ? `
  // Observation window: probabilities of the rows i ≥ M − window over every visible key.
  if (i0 + ${BQ}u + p.window > p.M) {
    let inWindow = valid && i + p.window >= p.M;
    let at = ((h * p.window + select(0u, i + p.window - p.M, inWindow)) * p.obsStride);
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var t0 = 0u; t0 < p.obsStride; t0 += ${BK}u) {
${load(false)}
      for (var t = 0u; t < ${BK}u; t++) {
        let j = t0 + t;
        if (inWindow && j < p.obsStride) {
          var pr = 0.0;
          if (j < lim && j >= lo) {
            pr = exp(${
      dot((d) => `kt[t * D4 + ${d}u]`)
    } + select(0.0, biasValue, base + j == biasRow) - mx) * inv;
          }
          obs[at + j] = pr;
        }
      }
      workgroupBarrier();
    }
  }`
    : "";
  return `${prefillPreambleWgsl(dtype, D4, withObs, ["chunks"])}
const NEG = -3.0e38;
var<workgroup> kt: array<vec4<f32>, ${BK * D4}>;
var<workgroup> vt: array<vec4<f32>, ${BK * D4}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i0 = wid.x * ${BQ}u;
  let kvh = wid.y / p.chunks;
  let h = kvh * p.group + (wid.y % p.chunks) * ${G}u + li % ${G}u;
  let i = i0 + li / ${G}u;
  let valid = i < p.M;
  let qi = min(i, p.M - 1u);
${kvHeadMetaWgsl()}
  let lim = u32(max(i32(len) - i32(p.M) + i32(qi) + 1, 0));
  let lo = windowStart(lim);
  // Keys any row of the block sees: up to the last (clamped) query's limit, from the first
  // query's window start (a tile boundary, the same for the whole workgroup).
  let jmax = u32(max(i32(len) - i32(p.M) + i32(min(i0 + ${BQ - 1}u, p.M - 1u)) + 1, 0));
  let jmin = windowStart(u32(max(i32(len) - i32(p.M) + i32(i0) + 1, 0))) / ${BK}u * ${BK}u;
  let qb = p.q04 + qi * p.ldq4 + h * D4;
${each(D4, (d) => `  let q${d} = Q[qb + ${d}u] * p.scale;`)}
${each(D4, (d) => `  var o${d} = vec4<f32>(0.0);`)}
  var mx = NEG;
  var l = 0.0;
  for (var t0 = jmin; t0 < jmax; t0 += ${BK}u) {
${load(true)}
    for (var u = 0u; u < ${BK}u; u += ${ST}u) {
      let j0 = t0 + u;
      if (j0 < lim && j0 + ${ST}u > lo) {
        // Scores of the sub-tile (keys past this row's causal limit masked), one max, one
        // rescale of the accumulator, one exp per key.
${
    each(ST, (t) =>
      `        let s${t} = select(NEG, ${
        dot((d) =>
          `kt[(u + ${t}u) * D4 + ${d}u]`
        )
      } + select(0.0, ` +
      `biasValue, base + j0 + ${t}u == biasRow), j0 + ${t}u < lim && j0 + ${t}u >= lo);`)
  }
        let mnew = max(mx, ${maxOf(Array.from({ length: ST }, (_, t) => `s${t}`))});
        let c = exp(mx - mnew);
${each(ST, (t) => `        let e${t} = exp(s${t} - mnew);`)}
        l = l * c + ${each(ST, (t) => `e${t}`, " + ")};
${
    each(D4, (d) =>
      `        o${d} = o${d} * c + ${
        each(ST, (t) =>
          `e${t} * vt[(u + ${t}u) * D4 + ${d}u]`, " + ")
      };`)
  }
        mx = mnew;
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let ob = i * p.ldo4 + h * D4;
${each(D4, (d) => `    out[ob + ${d}u] = o${d} * inv;`)}
  }${obs}
}
`;
}

/** Prepares workgroup-tiled prefill attention for one chunk of one layer (one dispatch). */
export function workgroupPrefillAttention(ctx: GpuContext, a: PrefillAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim, D4 = D / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(
      `workgroupPrefillAttention: ${H} query heads for ${c.numKvHeads} KV heads`,
    );
  }
  const group = H / c.numKvHeads;
  const G = headsPerBlock(group), BK = prefillKeyTile(D);
  const layout = prefillLayout("workgroupPrefillAttention", a);
  // Per tile a thread loads ⌈BK·D4/WG⌉ vec4s and runs BK/ST softmax steps; the window pass
  // loads again and visits each key.
  const tiles = Math.ceil(Math.max(0, ...c.capacities) / BK), loads = Math.ceil(BK * D4 / WG);
  const obsTiles = layout.withObs ? Math.ceil((a.obsStride ?? 0) / BK) : 0;
  checkLoopBudget(
    ctx,
    tiles * (loads + BK / ST + 1) + obsTiles * (loads + BK + 1) + 8,
    `prefill attention (prefill=workgroup) over ${tiles * BK} keys`,
  );
  return dispatchOp(ctx, {
    label: "prefillAttention",
    pipeline: ctx.pipeline(
      `prefillAttnWg:${c.dtype}:${D4}:${G}:${BK}:${layout.withObs}`,
      () => code(kvStorage(ctx, c.dtype), D4, G, BK, layout.withObs),
    ),
    params: prefillParams(a, layout, [group / G]),
    buffers: layout.buffers,
    workgroups: [Math.ceil(a.m / (WG / G)), c.numKvHeads * (group / G)],
  });
}
