/**
 * KVzip's reconstruction scores on the GPU (Kim et al., 2025, arXiv 2505.23416; kvpress
 * `kvzip_press.py`, `score_kvzip`), for one chunk of one layer. The layer's cache holds the context
 * (positions 0 … n − 1, uncompressed) and, after it, the repeat pass's `rows` entries; each repeat
 * query r attends to a reduced key set — the first `sink` entries, the chunk's entries
 * `start … end − 1`, and the repeat's entries `n … n + r` — with its own softmax over that set, and
 * every chunk entry's score for query head h is its highest weight over the rows:
 *
 * 1. stats pass — one thread per (row, query head): max and sum of `exp(s·q·k − max)` over the
 *    reduced set, to `stats[h][r]`, s being the model's attention scale (1/√d but for some
 *    Gemma 3 checkpoints);
 * 2. max pass — one thread per (chunk entry, query head): `out[h][j] = max_r exp(s·q_r·k_j −
 *    max_r) / sum_r`.
 *
 * The group's maximum is taken by the caller. The repeat's queries come from a query ring
 * (`captureQuery`): row r sits in slot `(slot0 + r) mod rows`. Dot products are written out over the
 * head dimension; the loops (over the reduced set, over the rows) are checked against llvmpipe's
 * budget (`../loopBudget.ts`).
 *
 * Stats bindings: 0 params, 1 queries f32 `[rows][H·D]`, 2 meta, 3 K cache, 4 stats vec2 (rw).
 * Max bindings: 0 params, 1 queries, 2 meta, 3 K cache, 4 stats (read), 5 out f32 `[H][end −
 * start]` (rw).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { dispatchOp, type GpuOp, packParams, sequenceOp } from "../op.ts";
import { withOwnedScratch } from "./decodeAttention.ts";
import { each, keyQueryDots } from "./wgslUnroll.ts";

/** Arguments of {@link kvzipScores}. */
export interface KvzipScoresArgs {
  /** The layer's cache: the context (n entries per head) then the repeat's `rows`. */
  cache: KvCacheLayer;
  /** The repeat's queries after RoPE, a ring of `rows` slots of `[H·D]` f32. */
  queries: BufferRef;
  /** The ring slot of row 0. */
  slot0: number;
  /** Repeat rows. */
  rows: number;
  /** Context entries per head (n). */
  n: number;
  /** Sink entries attended to (min(4, start) in kvpress). */
  sink: number;
  /** The chunk: entries `start … end − 1`. */
  start: number;
  /** End of the chunk (exclusive). */
  end: number;
  /** Query heads. */
  numHeads: number;
  /** Output `[H][end − start]` f32. */
  out: BufferRef;
  /** Softmax scale: the model's factor on q·k (`attentionScale`; kvpress divides by √d). */
  scale: number;
}

const HEADER = `struct Params { H: u32, group: u32, rows: u32, slot0: u32, n: u32, sink: u32,
  start: u32, end: u32, scale: f32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;`;

/** The dots of both passes; repeat row r sits in ring slot `slotOf(r)`. */
function dot(D4: number): string {
  return `fn slotOf(r: u32) -> u32 { return (p.slot0 + r) % p.rows; }
${keyQueryDots(D4, "slotOf(r)")}`;
}

function statsCode(dtype: KvStorage, D4: number): string {
  return `${HEADER}
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
${dot(D4)}
fn visit(s: f32, st: vec2<f32>) -> vec2<f32> {
  if (s > st.x) { return vec2<f32>(s, st.y * exp(st.x - s) + 1.0); }
  return vec2<f32>(st.x, st.y + exp(s - st.x));
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  let h = gid.y;
  if (r >= p.rows) { return; }
  let base = kvmeta[h / p.group];
${each(D4, (d) => `  v[${d}] = Q[(slotOf(r) * p.H + h) * D4 + ${d}u] * p.scale;`)}
  var st = vec2<f32>(-3.0e38, 0.0);
  for (var j = 0u; j < p.sink + (p.end - p.start) + r + 1u; j++) {
    let row = select(select(p.n + j - p.sink - (p.end - p.start), p.start + j - p.sink,
      j < p.sink + (p.end - p.start)), j, j < p.sink);
    st = visit(dotKey(base + row), st);
  }
  stats[h * p.rows + r] = st;
}
`;
}

function maxCode(dtype: KvStorage, D4: number): string {
  return `${HEADER}
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${dot(D4)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  let width = p.end - p.start;
  if (j >= width) { return; }
  let base = kvmeta[h / p.group];
${each(D4, (d) => `  v[${d}] = KC4((base + p.start + j) * D4 + ${d}u) * p.scale;`)}
  var best = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    let st = stats[h * p.rows + r];
    best = max(best, exp(dotQuery(r, h) - st.x) / st.y);
  }
  out[h * width + j] = best;
}
`;
}

/** Prepares one chunk's scores of one layer (a stats dispatch, then a max dispatch). */
export function kvzipScores(ctx: GpuContext, a: KvzipScoresArgs): GpuOp {
  const c = a.cache, H = a.numHeads, D4 = c.headDim / 4, width = a.end - a.start;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`kvzipScores: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  checkLoopBudget(ctx, a.sink + width + a.rows, "KVzip's reconstruction chunk (kvzipScores)");
  const params = packParams([
    ["u32", H],
    ["u32", H / c.numKvHeads],
    ["u32", a.rows],
    ["u32", a.slot0],
    ["u32", a.n],
    ["u32", a.sink],
    ["u32", a.start],
    ["u32", a.end],
    ["f32", a.scale],
  ]);
  const dtype = kvStorage(ctx, c.dtype);
  const stats = ctx.createBuffer(Math.max(16, H * a.rows * 8), undefined, "kvzip stats");
  const ops = [
    dispatchOp(ctx, {
      label: "kvzipScores.stats",
      pipeline: ctx.pipeline(`kvzipStats:${dtype}:${D4}`, () => statsCode(dtype, D4)),
      params,
      buffers: [a.queries, c.meta, c.k, stats],
      workgroups: [Math.ceil(a.rows / 64), H],
    }),
    dispatchOp(ctx, {
      label: "kvzipScores.max",
      pipeline: ctx.pipeline(`kvzipMax:${dtype}:${D4}`, () => maxCode(dtype, D4)),
      params,
      buffers: [a.queries, c.meta, c.k, stats, a.out],
      workgroups: [Math.max(1, Math.ceil(width / 64)), H],
    }),
  ];
  return withOwnedScratch(ctx, sequenceOp("kvzipScores", ops), stats);
}
