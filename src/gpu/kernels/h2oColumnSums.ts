/**
 * H2O's accumulated attention during prefill, without an N×N matrix: after a chunk's attention,
 * adds every chunk query's causal softmax probabilities to per-(query head, key) column sums.
 *
 * The cache is uncompressed during prefill, so with `len` the head's length after the append,
 * chunk row i (0-based) sees keys `0 .. len − m + i` and cache index = prompt position.
 *
 * 1. stats pass — the rows' softmax max and sum over their visible keys (logits `q·k·scale`, as
 *    the attention kernels compute them), to `stats[h][i]`. Each thread owns a block of query
 *    rows × query heads of one KV group and walks the keys in tiles, like the flash prefill
 *    kernel without the values, so every key row it loads serves the whole block;
 * 2. accumulate pass — each thread owns a run of keys of one query head and walks the chunk's
 *    queries that see them in tiles: `sums[h][j] += Σ_i exp(q_i·k_j·scale − max_i) / sum_i`
 *    (WGSL has no float atomics, so each sum has a single writer). O(m · len · d) per head, like
 *    the attention itself.
 *
 * Summed over every chunk, `sums[h][j]` is entry j of `LayerScoresInput.attentionColumnSums()`.
 * The stats pass runs over key ranges and the accumulate pass over query ranges, one dispatch
 * each, the stats carrying (max, sum) from range to range: llvmpipe ends a shader invocation's
 * loops after 65535 iterations (`../loopBudget.ts`). One thread per row and per key, unblocked,
 * loaded every key and query once per multiply-add and took 1.1× a whole 4K prefill of
 * SmolLM2-135M on llvmpipe (bench/RESULTS.md).
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
import { each } from "./wgslUnroll.ts";
import {
  blockDotsWgsl,
  rowBlock,
  softmaxTileWgsl,
  spanRanges,
  tilesPerDispatch,
} from "./blockedDots.ts";

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
  /** Keys per stats dispatch, a multiple of 16 (default {@link h2oKeysPerDispatch}; tests set less). */
  keysPerDispatch?: number;
  /** Chunk queries per accumulate dispatch, a multiple of 16 (default {@link h2oKeysPerDispatch}). */
  queriesPerDispatch?: number;
}

/** Keys per tile of the stats pass and queries per tile of the accumulate pass. */
const TILE = 16;
/** Keys each accumulate thread owns. */
const KEYS_PER_THREAD = 8;

const HEADER = `struct Params { H: u32, Hkv: u32, group: u32, M: u32, scale: f32, stride: u32,
  k0: u32, k1: u32, chunks: u32, d4: u32 };
@group(0) @binding(0) var<uniform> p: Params;`;

/**
 * Stats pass: each thread owns `QT` consecutive query rows × `HT` query heads of one KV group and
 * walks the keys in tiles of {@link TILE}, so each key row it loads serves `QT·HT` rows (the
 * flash prefill kernel's blocking, without the values); the head dimension is a loop.
 */
function statsCode(dtype: KvStorage, D4: number, QT: number, HT: number): string {
  const R = QT * HT;
  const rows = (f: (r: number, a: number, b: number) => string, sep = "\n") =>
    each(R, (r) => f(r, Math.floor(r / HT), r % HT), sep);
  const tiles = (f: (t: number) => string, sep = "\n") => each(TILE, f, sep);
  return `${HEADER}
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
const D4 = ${D4}u;
const NEG = -3.0e38;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i0 = gid.x * ${QT}u;
  if (i0 >= p.M) { return; }
  let kvh = gid.y / p.chunks;
  let h0 = kvh * p.group + (gid.y % p.chunks) * ${HT}u;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
${
    each(QT, (a) =>
      `  let qi${a} = min(i0 + ${a}u, p.M - 1u);
  let ok${a} = i0 + ${a}u < p.M;
  let lim${a} = u32(max(i32(len) - i32(p.M) + i32(qi${a}) + 1, 0));`)
  }
${
    rows((r, a, b) =>
      `  let qb${r} = (qi${a} * p.H + h0 + ${b}u) * D4;
  let st${r} = (h0 + ${b}u) * p.M + qi${a};
  var m${r} = NEG;
  var l${r} = 0.0;
  if (p.k0 > 0u) { m${r} = stats[st${r}].x; l${r} = stats[st${r}].y; }`
    )
  }
  // Keys [k0, k1) of this dispatch; the running (max, sum) of earlier ranges is in stats.
  let jmax = min(lim${QT - 1}, p.k1);
  for (var j = p.k0; j < jmax; j += ${TILE}u) {
${tiles((t) => `    let row${t} = (base + min(j + ${t}u, jmax - 1u)) * D4;`)}
${blockDotsWgsl(R, TILE, "    ")}
${rows((r, a) => softmaxTileWgsl(r, TILE, (t) => `j + ${t}u < lim${a}`, "    "))}
  }
${rows((r, a) => `  if (ok${a}) { stats[st${r}] = vec2<f32>(m${r}, l${r}); }`)}
}
`;
}

/**
 * Accumulate pass: each thread owns {@link KEYS_PER_THREAD} consecutive keys of one query head
 * and walks the chunk's queries [k0, k1) that see them in tiles of {@link TILE}, adding each
 * query's softmax probabilities to its keys' sums (one writer per sum).
 */
function accumulateCode(dtype: KvStorage, D4: number): string {
  const KT = KEYS_PER_THREAD;
  const keys = (f: (t: number) => string, sep = "\n") => each(KT, f, sep);
  const queries = (f: (u: number) => string, sep = "\n") => each(TILE, f, sep);
  return `${HEADER}
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
const D4 = ${D4}u;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j0 = gid.x * ${KT}u;
  let h = gid.y;
  let kvh = h / p.group;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let end = min(len, p.stride);
  if (j0 >= end || len < p.M) { return; }
  let before = len - p.M;
  // Query i (0-based in the chunk) sees keys 0 ..= before + i.
  let first = select(0u, j0 - before, j0 > before);
${
    keys((t) =>
      `  let row${t} = (base + min(j0 + ${t}u, len - 1u)) * D4;
  var acc${t} = 0.0;`
    )
  }
  let iend = min(p.M, p.k1);
  for (var i = max(p.k0, first); i < iend; i += ${TILE}u) {
${queries((u) => `    let qb${u} = (min(i + ${u}u, p.M - 1u) * p.H + h) * D4;`)}
${blockDotsWgsl(TILE, KT, "    ")}
${
    queries((u) =>
      `    if (i + ${u}u < iend) {
      let st = stats[h * p.M + i + ${u}u];
      let inv = 1.0 / st.y;
${
        keys((t) =>
          `      acc${t} += select(0.0, exp(s${u}[${t}] * p.scale - st.x) * inv, j0 + ${t}u <= before + i + ${u}u);`
        )
      }
    }`
    )
  }
  }
${keys((t) => `  if (j0 + ${t}u < end) { sums[h * p.stride + j0 + ${t}u] += acc${t}; }`)}
}
`;
}

/** Bytes of the stats scratch for `m` rows of `numHeads` heads. */
function statsBytes(numHeads: number, m: number): number {
  return Math.max(16, numHeads * m * 8);
}

/**
 * Keys one stats dispatch covers, and chunk queries one accumulate dispatch covers: tiles of
 * {@link TILE} at `1 + D4` counted loop iterations each ({@link tilesPerDispatch}).
 */
export function h2oKeysPerDispatch(ctx: GpuContext, D4: number): number {
  return tilesPerDispatch(ctx, TILE, 1 + D4);
}

/**
 * Prepares the column-sum accumulation of one chunk of one layer: stats dispatches over key
 * ranges, then accumulate dispatches over query ranges (each adds its queries' share).
 */
export function h2oColumnSums(ctx: GpuContext, a: H2oColumnSumsArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D4 = c.headDim / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`h2oColumnSums: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const group = H / c.numKvHeads;
  const { QT, HT } = rowBlock(group);
  const keySpan = a.keysPerDispatch ?? h2oKeysPerDispatch(ctx, D4);
  const querySpan = a.queriesPerDispatch ?? h2oKeysPerDispatch(ctx, D4);
  for (const span of [keySpan, querySpan]) {
    if (!(Number.isInteger(span) && span > 0 && span % TILE === 0)) {
      throw new RangeError(`h2oColumnSums: ${span} keys or queries per dispatch`);
    }
  }
  const params = ([k0, k1]: [number, number]) =>
    packParams([
      ["u32", H],
      ["u32", c.numKvHeads],
      ["u32", group],
      ["u32", a.m],
      ["f32", a.scale],
      ["u32", a.stride],
      ["u32", k0],
      ["u32", k1],
      ["u32", group / HT],
      ["u32", D4],
    ]);
  const keys = Math.max(1, ...c.capacities);
  const stats = ctx.createBuffer(statsBytes(H, a.m), undefined, "h2o stats");
  const statsPipeline = ctx.pipeline(
    `h2oStats:${c.dtype}:${D4}:${QT}:${HT}`,
    () => statsCode(kvStorage(ctx, c.dtype), D4, QT, HT),
  );
  const accumulatePipeline = ctx.pipeline(
    `h2oAccumulate:${c.dtype}:${D4}`,
    () => accumulateCode(kvStorage(ctx, c.dtype), D4),
  );
  const ops: GpuOp[] = [
    ...spanRanges(keys, keySpan).map((range) =>
      dispatchOp(ctx, {
        label: "h2oColumnSums.stats",
        pipeline: statsPipeline,
        params: params(range),
        buffers: [a.q, c.meta, c.k, stats],
        workgroups: [Math.max(1, Math.ceil(a.m / QT / 64)), c.numKvHeads * (group / HT)],
      })
    ),
    ...spanRanges(a.m, querySpan).map((range) =>
      dispatchOp(ctx, {
        label: "h2oColumnSums.accumulate",
        pipeline: accumulatePipeline,
        params: params(range),
        buffers: [a.q, c.meta, c.k, stats, a.sums],
        workgroups: [Math.max(1, Math.ceil(a.stride / KEYS_PER_THREAD / 64)), H],
      })
    ),
  ];
  return withOwnedScratch(ctx, sequenceOp("h2oColumnSums", ops), stats);
}
