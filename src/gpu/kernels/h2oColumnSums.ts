/**
 * H2O's accumulated attention during prefill, without an N×N matrix: after a chunk's attention,
 * adds every chunk query's causal softmax probabilities to per-(query head, key) column sums.
 *
 * The cache is uncompressed during prefill, so with `len` the head's length after the append,
 * chunk row i (0-based) sees keys `0 .. len − m + i` and cache index = prompt position.
 *
 * 1. stats pass — one thread per (query row, query head): the row's softmax max and sum over its
 *    visible keys (logits `q·k/√d`, as the attention kernels compute them), to `stats[h][i]`;
 * 2. accumulate pass — one thread per (key j, query head), looping over the chunk's queries that
 *    see j: `sums[h][j] += Σ_i exp(q_i·k_j/√d − max_i) / sum_i` (WGSL has no float atomics, so
 *    each sum has a single writer). O(m · len · d) per head, like the attention itself.
 *
 * Summed over every chunk, `sums[h][j]` is entry j of `LayerScoresInput.attentionColumnSums()`.
 * The stats pass runs over key ranges, one dispatch each, carrying (max, sum) in `stats`: llvmpipe
 * ends a shader invocation's loops after 65535 iterations (`../loopBudget.ts`).
 *
 * The cache's logit-bias row is ignored (prefill runs before any compensation token exists).
 *
 * Stats bindings: 0 params, 1 q f32, 2 meta, 3 K cache (read), 4 stats vec2 (read_write).
 * Accumulate bindings: 0 params, 1 q f32, 2 meta, 3 K cache, 4 stats (read), 5 sums f32
 * `[H][stride]` (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams, sequenceOp } from "../op.ts";
import { withOwnedScratch } from "./decodeAttention.ts";
import { checkLoopBudget, PLANNED_LOOP_BUDGET } from "../loopBudget.ts";
import { each, keyQueryDots } from "./wgslUnroll.ts";

/** Arguments of {@link h2oColumnSums}. */
export interface H2oColumnSumsArgs {
  /** The layer's cache, holding the chunk's keys at the end of every head (uncompressed). */
  cache: KvCacheLayer;
  /** The chunk's queries after RoPE, `[m][H·D]` f32. */
  q: BufferRef;
  /** Chunk length. */
  m: number;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Column sums `[H][stride]` f32, accumulated into (zero it before the first chunk). */
  sums: BufferRef;
  /** Keys per head in `sums` (the prompt length); keys at or past it are skipped. */
  stride: number;
  /** Softmax scale: the model's factor on q·k (`attentionScale`). */
  scale: number;
  /** Keys per stats dispatch (default {@link h2oKeysPerDispatch}; tests set less). */
  keysPerDispatch?: number;
}

const HEADER = `struct Params { H: u32, Hkv: u32, group: u32, M: u32, scale: f32, stride: u32,
  k0: u32, k1: u32 };
@group(0) @binding(0) var<uniform> p: Params;`;

/** The dots of both passes (the query row is `r` itself). */
function dot(D4: number): string {
  return keyQueryDots(D4, "r");
}

function statsCode(dtype: KvStorage, D4: number): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
${dot(D4)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let h = gid.y;
  if (i >= p.M) { return; }
  let kvh = h / p.group;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let lim = u32(max(i32(len) - i32(p.M) + i32(i) + 1, 0));
${each(D4, (d) => `  v[${d}] = Q[(i * p.H + h) * D4 + ${d}u] * p.scale;`)}
  // Keys [k0, k1) of this dispatch; the running (max, sum) of earlier ranges is in stats.
  var mx = -3.0e38;
  var l = 0.0;
  if (p.k0 > 0u) {
    let st = stats[h * p.M + i];
    mx = st.x;
    l = st.y;
  }
  for (var j = p.k0; j < min(lim, p.k1); j++) {
    let s = dotKey(base + j);
    if (s > mx) {
      l = l * exp(mx - s) + 1.0;
      mx = s;
    } else {
      l += exp(s - mx);
    }
  }
  stats[h * p.M + i] = vec2<f32>(mx, l);
}
`;
}

function accumulateCode(dtype: KvStorage, D4: number): string {
  return `${HEADER}
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
${dot(D4)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  let kvh = h / p.group;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  if (j >= len || j >= p.stride || len < p.M) { return; }
  let before = len - p.M;
  let first = select(0u, j - before, j > before);
${each(D4, (d) => `  v[${d}] = KC4((base + j) * D4 + ${d}u) * p.scale;`)}
  var total = 0.0;
  for (var i = first; i < p.M; i++) {
    let st = stats[h * p.M + i];
    total += exp(dotQuery(i, h) - st.x) / st.y;
  }
  sums[h * p.stride + j] += total;
}
`;
}

/** Bytes of the stats scratch for `m` rows of `numHeads` heads. */
function statsBytes(numHeads: number, m: number): number {
  return Math.max(16, numHeads * m * 8);
}

/**
 * Keys one stats dispatch covers: all of them on a GPU; on a software adapter as many as a row's
 * loop may visit within llvmpipe's budget (one iteration per key; the dot is written out).
 */
export function h2oKeysPerDispatch(ctx: GpuContext): number {
  return ctx.isFallbackAdapter ? PLANNED_LOOP_BUDGET : 2 ** 31;
}

/**
 * Prepares the column-sum accumulation of one chunk of one layer: stats dispatches over key
 * ranges of `keysPerDispatch`, then one
 * accumulate dispatch.
 */
export function h2oColumnSums(ctx: GpuContext, a: H2oColumnSumsArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D4 = c.headDim / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`h2oColumnSums: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  // Each key's thread loops over the chunk's queries that see it.
  checkLoopBudget(ctx, a.m, "H2O's prefill chunk (h2oColumnSums)");
  const params = (k0: number, k1: number) =>
    packParams([
      ["u32", H],
      ["u32", c.numKvHeads],
      ["u32", H / c.numKvHeads],
      ["u32", a.m],
      ["f32", a.scale],
      ["u32", a.stride],
      ["u32", k0],
      ["u32", k1],
    ]);
  const keys = Math.max(1, ...c.capacities);
  const span = a.keysPerDispatch ?? h2oKeysPerDispatch(ctx);
  const stats = ctx.createBuffer(statsBytes(H, a.m), undefined, "h2o stats");
  const statsPipeline = ctx.pipeline(
    `h2oStats:${c.dtype}:${D4}`,
    () => statsCode(kvStorage(ctx, c.dtype), D4),
  );
  const ops: GpuOp[] = [];
  for (let k0 = 0; k0 < keys; k0 += span) {
    ops.push(dispatchOp(ctx, {
      label: "h2oColumnSums.stats",
      pipeline: statsPipeline,
      params: params(k0, Math.min(k0 + span, 2 ** 32 - 1)),
      buffers: [a.q, c.meta, c.k, stats],
      workgroups: [Math.ceil(a.m / 64), H],
    }));
  }
  ops.push(dispatchOp(ctx, {
    label: "h2oColumnSums.accumulate",
    pipeline: ctx.pipeline(
      `h2oAccumulate:${c.dtype}:${D4}`,
      () => accumulateCode(kvStorage(ctx, c.dtype), D4),
    ),
    params: params(0, 0),
    buffers: [a.q, c.meta, c.k, stats, a.sums],
    workgroups: [Math.max(1, Math.ceil(a.stride / 64)), H],
  }));
  return withOwnedScratch(ctx, sequenceOp("h2oColumnSums", ops), stats);
}
