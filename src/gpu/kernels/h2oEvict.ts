/**
 * One H2O decoding step on the GPU (`h2oDecodeStep` of `src/plugins/h2oPress.ts`), recorded
 * after a layer's decode attention — no readback. The append put the new token in the head's
 * last row (`len − 1`); then, per KV head:
 *
 * 1. the new row gets the token's position and a score of 0;
 * 2. for each query head of the GQA group, the new query's softmax over the head's rows is
 *    recomputed (max, then sum, then probabilities — three passes over the rows, logits
 *    `q·k/√d` as in `decodeAttention`) and `p / group` is added to every row's score;
 * 3. when `len` exceeds heavy + recent, the victim is the row with the lowest score among rows
 *    whose position is not among the `recent` newest (`pos + recent ≤ newest`; the `recent`
 *    newest positions are always the last `recent` tokens), ties → lower position; the last row
 *    is moved into the victim's row (key, value, score, position) and the length drops by one,
 *    so the next append writes right after the live rows. Cache rows are therefore unordered;
 *    the position buffer says which token each row holds.
 *
 * One workgroup of 64 threads per KV head (reductions in workgroup memory). The head dimension
 * is written out, so a thread's loops stay within llvmpipe's budget (`../loopBudget.ts`) for
 * caches of ~1M / (3·group + 1) rows. Heads whose limit
 * is {@link H2O_NONE} (other presses in the same layer) are left alone.
 *
 * State buffer (u32): `[0, Hkv)` limit = heavy + recent, `[Hkv, 2Hkv)` recent, then
 * `[2Hkv + row]` the position held by cache row `row` (absolute row of the layer's K buffer).
 * Scores (f32 `[totalRows]`): accumulated attention (group mean) of each row.
 *
 * Bindings: 0 params, 1 q f32, 2 positions u32 (read; the new token's at `positionsOffset`),
 * 3 meta, 4 K cache, 5 V cache, 6 scores f32, 7 state u32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { each, unrolledDot } from "./wgslUnroll.ts";

/** Limit meaning "not an H2O head". */
export const H2O_NONE = 0xffffffff;

/** Arguments of {@link h2oEvict}. */
export interface H2oEvictArgs {
  /** The layer's cache (the new token appended in each head's last row). */
  cache: KvCacheLayer;
  /** The new query after RoPE, `[H·D]` f32 at element 0. */
  q: BufferRef;
  /** Query heads. */
  numHeads: number;
  /** Positions buffer (u32) holding the new token's position. */
  positions: BufferRef;
  /** Index of that position in `positions`. */
  positionsOffset: number;
  /** Scores, f32 per cache row. */
  scores: BufferRef;
  /** State, u32 (see the module doc). */
  state: BufferRef;
  /** Softmax scale: the model's factor on q·k (`attentionScale`). */
  scale: number;
}

function code(dtype: KvStorage, D4: number): string {
  return `struct Params { Hkv: u32, group: u32, scale: f32, pos0: u32 };
@group(0) @binding(0) var<uniform> p: Params;
const D4 = ${D4}u;
const WG = 64u;
const NONE = 0xffffffffu;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> srcpos: array<u32>;
@group(0) @binding(3) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("KC", 4, dtype, true)}
${kvDecl("VC", 5, dtype, true)}
@group(0) @binding(6) var<storage, read_write> scores: array<f32>;
@group(0) @binding(7) var<storage, read_write> st: array<u32>;
var<private> q: array<vec4<f32>, D4>;
var<workgroup> rf: array<f32, WG>;
var<workgroup> rp: array<u32, WG>;
var<workgroup> rr: array<u32, WG>;
var<workgroup> wLimit: u32;
var<workgroup> wLen: u32;

fn logit(row: u32) -> f32 {
  var s = vec4<f32>(0.0);
${unrolledDot("s", D4, (d) => `q[${d}]`, (d) => `KC4(row * D4 + ${d}u)`)}
  return (s.x + s.y) + (s.z + s.w);
}
fn reduceMax(li: u32, v: f32) -> f32 {
  rf[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { rf[li] = max(rf[li], rf[li + s]); }
    workgroupBarrier();
  }
  let r = rf[0];
  workgroupBarrier();
  return r;
}
fn reduceSum(li: u32, v: f32) -> f32 {
  rf[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { rf[li] += rf[li + s]; }
    workgroupBarrier();
  }
  let r = rf[0];
  workgroupBarrier();
  return r;
}
// Lowest (score, position) pair; rr holds its row.
fn better(s: f32, pos: u32, than: f32, thanPos: u32) -> bool {
  return s < than || (s == than && pos < thanPos);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let P = 2u * p.Hkv;
  if (li == 0u) {
    wLimit = st[h];
    wLen = kvmeta[p.Hkv + h];
  }
  let limit = workgroupUniformLoad(&wLimit);
  let len = workgroupUniformLoad(&wLen);
  if (limit == NONE || len == 0u) { return; }
  let recent = st[p.Hkv + h];
  let base = kvmeta[h];
  let newest = srcpos[p.pos0];
  if (li == 0u) {
    scores[base + len - 1u] = 0.0;
    st[P + base + len - 1u] = newest;
  }
  storageBarrier();
  let share = 1.0 / f32(p.group);
  for (var g = 0u; g < p.group; g++) {
    let hq = h * p.group + g;
${each(D4, (d) => `    q[${d}] = Q[hq * D4 + ${d}u] * p.scale;`)}
    var m = -3.0e38;
    for (var i = li; i < len; i += WG) { m = max(m, logit(base + i)); }
    m = reduceMax(li, m);
    var total = 0.0;
    for (var i = li; i < len; i += WG) { total += exp(logit(base + i) - m); }
    total = reduceSum(li, total);
    for (var i = li; i < len; i += WG) {
      scores[base + i] += exp(logit(base + i) - m) / total * share;
    }
  }
  if (len <= limit) { return; }
  storageBarrier();
  var best = 3.4e38;
  var bestPos = NONE;
  var bestRow = NONE;
  for (var i = li; i < len; i += WG) {
    let pos = st[P + base + i];
    let sc = scores[base + i];
    if (pos + recent <= newest && better(sc, pos, best, bestPos)) {
      best = sc;
      bestPos = pos;
      bestRow = i;
    }
  }
  rf[li] = best;
  rp[li] = bestPos;
  rr[li] = bestRow;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s && better(rf[li + s], rp[li + s], rf[li], rp[li])) {
      rf[li] = rf[li + s];
      rp[li] = rp[li + s];
      rr[li] = rr[li + s];
    }
    workgroupBarrier();
  }
  let victim = workgroupUniformLoad(&rr[0]);
  if (victim == NONE) { return; }
  let last = len - 1u;
  if (victim != last) {
    for (var d = li; d < D4; d += WG) {
      KCw((base + victim) * D4 + d, KC4((base + last) * D4 + d));
      VCw((base + victim) * D4 + d, VC4((base + last) * D4 + d));
    }
    if (li == 0u) {
      scores[base + victim] = scores[base + last];
      st[P + base + victim] = st[P + base + last];
    }
  }
  if (li == 0u) { kvmeta[p.Hkv + h] = last; }
}
`;
}

/** Prepares the H2O step of one layer (one dispatch, one workgroup per KV head). */
export function h2oEvict(ctx: GpuContext, a: H2oEvictArgs): GpuOp {
  const c = a.cache;
  const D4 = c.headDim / 4;
  if (a.numHeads % c.numKvHeads !== 0) {
    throw new RangeError(`h2oEvict: ${a.numHeads} query heads for ${c.numKvHeads} KV heads`);
  }
  // A thread visits every 64th row three times per query head, then once more for the victim.
  const group = a.numHeads / c.numKvHeads;
  const rows = Math.ceil(Math.max(0, ...c.capacities) / 64);
  checkLoopBudget(ctx, (3 * group + 1) * rows + 32 * group, "H2O's cache (h2oEvict)");
  return dispatchOp(ctx, {
    label: "h2oEvict",
    pipeline: ctx.pipeline(`h2oEvict:${c.dtype}:${D4}`, () => code(kvStorage(ctx, c.dtype), D4)),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", a.numHeads / c.numKvHeads],
      ["f32", a.scale],
      ["u32", a.positionsOffset],
    ]),
    buffers: [a.q, a.positions, c.meta, c.k, c.v, a.scores, a.state],
    workgroups: [c.numKvHeads],
  });
}
