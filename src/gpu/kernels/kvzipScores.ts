/**
 * KVzip's reconstruction scores on the GPU (Kim et al., 2025, arXiv 2505.23416; kvpress
 * `kvzip_press.py`, `score_kvzip`), for one chunk of one layer. The layer's cache holds the context
 * (positions 0 … n − 1, uncompressed) and, after it, the repeat pass's `rows` entries; each repeat
 * query r attends to a reduced key set — the first `sink` entries, the chunk's entries
 * `start … end − 1`, and the repeat's entries `n … n + r` — with its own softmax over that set, and
 * every chunk entry's score for query head h is its highest weight over the rows:
 *
 * 1. stats pass — max and sum of `exp(s·q·k − max)` over each row's reduced set, to `stats[h][r]`,
 *    s being the model's attention scale (1/√d but for some Gemma 3 checkpoints). Each thread
 *    owns a block of repeat rows × query heads of one KV group and walks the set in tiles of
 *    keys, so each key it loads serves the whole block (the flash prefill kernel's blocking);
 * 2. max pass — `out[h][j] = max_r exp(s·q_r·k_j − max_r) / sum_r`, each thread owning a run of
 *    chunk entries of one query head and walking the rows in tiles.
 *
 * The group's maximum is taken by the caller. The repeat's queries come from a query ring
 * (`captureQuery`): row r sits in slot `(slot0 + r) mod rows`. The head dimension is a loop; the
 * key set (stats) and the rows (max) are split into ranges, one dispatch each, to stay within
 * llvmpipe's loop budget (`../loopBudget.ts`). One thread per row and per entry, unblocked, took
 * 3.6× a 2K prefill of SmolLM2 for the whole reconstruction (bench/RESULTS.md).
 *
 * Stats bindings: 0 params, 1 queries f32 `[rows][H·D]`, 2 meta, 3 K cache, 4 stats vec2 (rw).
 * Max bindings: 0 params, 1 queries, 2 meta, 3 K cache, 4 stats (read), 5 out f32 `[H][end −
 * start]` (rw).
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
  /** Keys (stats) or rows (max) per dispatch, a multiple of 16 (default {@link kvzipSpanPerDispatch}). */
  spanPerDispatch?: number;
}

/** Keys per tile of the stats pass and repeat rows per tile of the max pass. */
const TILE = 16;
/** Chunk entries each max-pass thread owns. */
const KEYS_PER_THREAD = 8;

/** The params block, the query ring and the meta binding of both passes. */
function header(D4: number): string {
  return `struct Params { H: u32, group: u32, rows: u32, slot0: u32, n: u32, sink: u32,
  start: u32, end: u32, scale: f32, chunks: u32, d4: u32, k0: u32, k1: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
const D4 = ${D4}u;
// Repeat row r's queries sit in ring slot (slot0 + r) mod rows.
fn slotOf(r: u32) -> u32 { return (p.slot0 + r) % p.rows; }`;
}

/**
 * Stats pass: each thread owns `QT` repeat rows × `HT` query heads of one KV group and walks their
 * reduced key set — index j < sink: entry j; then the chunk; then the repeat from entry n — in
 * tiles of {@link TILE} keys over the key range [k0, k1) of this dispatch, carrying (max, sum)
 * in `stats` from range to range.
 */
function statsCode(dtype: KvStorage, D4: number, QT: number, HT: number): string {
  const R = QT * HT;
  const rows = (f: (r: number, a: number, b: number) => string, sep = "\n") =>
    each(R, (r) => f(r, Math.floor(r / HT), r % HT), sep);
  const tiles = (f: (t: number) => string, sep = "\n") => each(TILE, f, sep);
  return `${header(D4)}
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
const NEG = -3.0e38;
// Cache entry of index j of the reduced key set.
fn keyEntry(j: u32) -> u32 {
  let width = p.end - p.start;
  return select(select(p.n + j - p.sink - width, p.start + j - p.sink, j < p.sink + width), j,
    j < p.sink);
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r0 = gid.x * ${QT}u;
  if (r0 >= p.rows) { return; }
  let kvh = gid.y / p.chunks;
  let h0 = kvh * p.group + (gid.y % p.chunks) * ${HT}u;
  let base = kvmeta[kvh];
  let before = p.sink + (p.end - p.start);
${
    each(QT, (a) =>
      `  let ri${a} = min(r0 + ${a}u, p.rows - 1u);
  let ok${a} = r0 + ${a}u < p.rows;
  let lim${a} = before + ri${a} + 1u;`)
  }
${
    rows((r, a, b) =>
      `  let qb${r} = (slotOf(ri${a}) * p.H + h0 + ${b}u) * D4;
  let st${r} = (h0 + ${b}u) * p.rows + ri${a};
  var m${r} = NEG;
  var l${r} = 0.0;
  if (p.k0 > 0u) { m${r} = stats[st${r}].x; l${r} = stats[st${r}].y; }`
    )
  }
  let jmax = min(lim${QT - 1}, p.k1);
  for (var j = p.k0; j < jmax; j += ${TILE}u) {
${tiles((t) => `    let row${t} = (base + keyEntry(min(j + ${t}u, jmax - 1u))) * D4;`)}
${blockDotsWgsl(R, TILE, "    ")}
${rows((r, a) => softmaxTileWgsl(r, TILE, (t) => `j + ${t}u < lim${a}`, "    "))}
  }
${rows((r, a) => `  if (ok${a}) { stats[st${r}] = vec2<f32>(m${r}, l${r}); }`)}
}
`;
}

/**
 * Max pass: each thread owns {@link KEYS_PER_THREAD} chunk entries of one query head and walks the
 * repeat rows [k0, k1) in tiles of {@link TILE} (every row sees every chunk entry), keeping each
 * entry's highest weight; a later row range takes the max with what the earlier ones wrote.
 */
function maxCode(dtype: KvStorage, D4: number): string {
  const KT = KEYS_PER_THREAD;
  const keys = (f: (t: number) => string, sep = "\n") => each(KT, f, sep);
  const queries = (f: (u: number) => string, sep = "\n") => each(TILE, f, sep);
  return `${header(D4)}
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j0 = gid.x * ${KT}u;
  let h = gid.y;
  let width = p.end - p.start;
  if (j0 >= width) { return; }
  let base = kvmeta[h / p.group];
${
    keys((t) =>
      `  let row${t} = (base + p.start + min(j0 + ${t}u, width - 1u)) * D4;
  var best${t} = 0.0;`
    )
  }
  let rend = min(p.rows, p.k1);
  for (var r = p.k0; r < rend; r += ${TILE}u) {
${queries((u) => `    let qb${u} = (slotOf(min(r + ${u}u, p.rows - 1u)) * p.H + h) * D4;`)}
${blockDotsWgsl(TILE, KT, "    ")}
${
    queries((u) =>
      `    if (r + ${u}u < rend) {
      let st = stats[h * p.rows + r + ${u}u];
      let inv = 1.0 / st.y;
${keys((t) => `      best${t} = max(best${t}, exp(s${u}[${t}] * p.scale - st.x) * inv);`)}
    }`
    )
  }
  }
${
    keys((t) =>
      `  if (j0 + ${t}u < width) {
    let at = h * width + j0 + ${t}u;
    out[at] = select(max(out[at], best${t}), best${t}, p.k0 == 0u);
  }`
    )
  }
}
`;
}

/**
 * Keys (stats) or repeat rows (max) one dispatch covers: tiles of {@link TILE} at `1 + D4`
 * counted loop iterations each ({@link tilesPerDispatch}).
 */
export function kvzipSpanPerDispatch(ctx: GpuContext, D4: number): number {
  return tilesPerDispatch(ctx, TILE, 1 + D4);
}

/** Prepares one chunk's scores of one layer (stats dispatches, then max dispatches). */
export function kvzipScores(ctx: GpuContext, a: KvzipScoresArgs): GpuOp {
  const c = a.cache, H = a.numHeads, D4 = c.headDim / 4, width = a.end - a.start;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`kvzipScores: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const group = H / c.numKvHeads;
  const { QT, HT } = rowBlock(group);
  const span = a.spanPerDispatch ?? kvzipSpanPerDispatch(ctx, D4);
  if (!(Number.isInteger(span) && span > 0 && span % TILE === 0)) {
    throw new RangeError(`kvzipScores: ${span} keys or rows per dispatch`);
  }
  const params = ([k0, k1]: [number, number]) =>
    packParams([
      ["u32", H],
      ["u32", group],
      ["u32", a.rows],
      ["u32", a.slot0],
      ["u32", a.n],
      ["u32", a.sink],
      ["u32", a.start],
      ["u32", a.end],
      ["f32", a.scale],
      ["u32", group / HT],
      ["u32", D4],
      ["u32", k0],
      ["u32", k1],
    ]);
  const dtype = kvStorage(ctx, c.dtype);
  const stats = ctx.createBuffer(Math.max(16, H * a.rows * 8), undefined, "kvzip stats");
  const statsPipeline = ctx.pipeline(
    `kvzipStats:${dtype}:${D4}:${QT}:${HT}`,
    () => statsCode(dtype, D4, QT, HT),
  );
  const maxPipeline = ctx.pipeline(`kvzipMax:${dtype}:${D4}`, () => maxCode(dtype, D4));
  const ops = [
    ...spanRanges(a.sink + width + a.rows, span).map((range) =>
      dispatchOp(ctx, {
        label: "kvzipScores.stats",
        pipeline: statsPipeline,
        params: params(range),
        buffers: [a.queries, c.meta, c.k, stats],
        workgroups: [Math.max(1, Math.ceil(a.rows / QT / 64)), c.numKvHeads * (group / HT)],
      })
    ),
    ...spanRanges(a.rows, span).map((range) =>
      dispatchOp(ctx, {
        label: "kvzipScores.max",
        pipeline: maxPipeline,
        params: params(range),
        buffers: [a.queries, c.meta, c.k, stats, a.out],
        workgroups: [Math.max(1, Math.ceil(width / KEYS_PER_THREAD / 64)), H],
      })
    ),
  ];
  return withOwnedScratch(ctx, sequenceOp("kvzipScores", ops), stats);
}
