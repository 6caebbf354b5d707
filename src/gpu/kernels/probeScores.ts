/**
 * RazorAttention probe scores (echo and induction) for one chunk of probe queries of one layer,
 * accumulated on the GPU. Run it right after the layer's prefill attention of each chunk: the
 * layer's cache then holds the whole probe so far in position order (row j = position j, no
 * compaction) and `q` holds the chunk's queries after RoPE.
 *
 * With B the block length and `offset` the first block position, query position i counts when
 * i ≥ offset + B (copies 2–4). Its softmax over keys 0..i (the model's attention scale) gives
 * echo_i = Σ p(i − kB) and induction_i = Σ p(i − kB + 1) over k ≥ 1 with i − kB ≥ offset —
 * exactly `retrievalQueryHeadScores` in src/plugins/retrievalDetector.ts.
 *
 * The head dimension is written out (no loop) and a query's loops run over at most the probe's
 * length, so llvmpipe's loop budget (`../loopBudget.ts`) holds for probes up to ~30K tokens.
 *
 * Accumulation: one workgroup of 64 threads per (64-aligned block of absolute positions, query
 * head); thread t takes position 64·blk + t when it lies in the chunk. The workgroup sums its
 * threads' (echo, induction) and ADDS the sum to `partials[blk][h]` (vec2 f32), so a block split
 * between two chunks is completed by the second dispatch (dispatches are ordered; no atomics).
 * The op reads the chunk's place from the cache (`len − M`), so one prepared op serves every
 * chunk of the same length. Sum the partials over blocks on the CPU ({@link sumProbePartials})
 * and divide by the number of counted queries.
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache (read), 4 partials vec2 f32 (read_write,
 * zero-initialised, `[⌈N/64⌉][H]`).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { each, unrolledDot } from "./wgslUnroll.ts";

/** Query positions reduced per workgroup (and per partial slot). */
export const PROBE_POSITIONS_PER_GROUP = 64;

/** Arguments of {@link probeScores}. */
export interface ProbeScoresArgs {
  /** The layer's cache: every KV head holds positions 0 .. len − 1 in order, the chunk last. */
  cache: KvCacheLayer;
  /** The chunk's queries after RoPE, `[M][H·D]` f32. */
  q: BufferRef;
  /** Chunk length M. */
  m: number;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Probe block length B (≥ 2). */
  block: number;
  /** Position of the first block token (1 after BOS). */
  offset: number;
  /** Accumulators `[⌈N/64⌉][H]` of vec2 f32 (echo, induction), zero before the first chunk. */
  partials: BufferRef;
  /** Softmax scale: the model's factor on q·k (`attentionScale`). */
  scale: number;
}

function code(dtype: KvStorage, D4: number): string {
  const G = PROBE_POSITIONS_PER_GROUP;
  return `struct Params { H: u32, Hkv: u32, group: u32, M: u32, block: u32, offset: u32,
  scale: f32 };
@group(0) @binding(0) var<uniform> p: Params;
const D4 = ${D4}u;
const G = ${G}u;
const NEG = -3.0e38;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;
var<private> q: array<vec4<f32>, D4>;
var<workgroup> red: array<vec2<f32>, G>;
fn score(row: u32) -> f32 {
  var s = vec4<f32>(0.0);
${unrolledDot("s", D4, (d) => `q[${d}]`, (d) => `KC4(row * D4 + ${d}u)`)}
  return (s.x + s.y) + (s.z + s.w);
}
fn scores(h: u32, i: u32, pos: u32, base: u32) -> vec2<f32> {
${each(D4, (d) => `  q[${d}] = Q[(i * p.H + h) * D4 + ${d}u] * p.scale;`)}
  var mx = NEG;
  var l = 0.0;
  for (var j = 0u; j <= pos; j++) {
    let s = score(base + j);
    let mnew = max(mx, s);
    l = l * exp(mx - mnew) + exp(s - mnew);
    mx = mnew;
  }
  var acc = vec2<f32>(0.0);
  for (var j = i32(pos) - i32(p.block); j >= i32(p.offset); j -= i32(p.block)) {
    let r = base + u32(j);
    acc += vec2<f32>(exp(score(r) - mx), exp(score(r + 1u) - mx));
  }
  return acc / l;
}
@compute @workgroup_size(${G})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wid.y;
  let t = lid.x;
  let kvh = h / p.group;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let start = len - p.M;
  let blk = start / G + wid.x;
  let pos = blk * G + t;
  var v = vec2<f32>(0.0);
  if (pos >= start && pos < len && pos >= p.offset + p.block) {
    v = scores(h, pos - start, pos, base);
  }
  red[t] = v;
  workgroupBarrier();
  for (var s = G / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  if (t == 0u && blk * G < len) {
    let at = blk * p.H + h;
    partials[at] = partials[at] + red[0];
  }
}
`;
}

/** Bytes of the partials buffer for a probe of `positions` tokens and `numHeads` query heads. */
export function probePartialsBytes(positions: number, numHeads: number): number {
  return Math.ceil(positions / PROBE_POSITIONS_PER_GROUP) * numHeads * 8;
}

/** Prepares the probe-score accumulation for one chunk of one layer (one dispatch). */
export function probeScores(ctx: GpuContext, a: ProbeScoresArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`probeScores: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  if (!(Number.isInteger(a.block) && a.block >= 2)) {
    throw new RangeError(`probeScores: block ${a.block} must be an integer ≥ 2`);
  }
  // A query loops over every key before it, then over its earlier copies.
  const keys = Math.max(0, ...c.capacities);
  checkLoopBudget(ctx, keys + keys / a.block + 64, "RazorAttention's probe (probeScores)");
  return dispatchOp(ctx, {
    label: "probeScores",
    pipeline: ctx.pipeline(
      `probeScores:${c.dtype}:${D / 4}`,
      () => code(kvStorage(ctx, c.dtype), D / 4),
    ),
    params: packParams([
      ["u32", H],
      ["u32", c.numKvHeads],
      ["u32", H / c.numKvHeads],
      ["u32", a.m],
      ["u32", a.block],
      ["u32", a.offset],
      ["f32", a.scale],
    ]),
    buffers: [a.q, c.meta, c.k, a.partials],
    // A chunk not starting on a block boundary touches one more block.
    workgroups: [a.m > 0 ? Math.ceil(a.m / PROBE_POSITIONS_PER_GROUP) + 1 : 0, H],
  });
}

/**
 * Per-query-head sums (echo, induction) from the partials read back: `[⌈N/64⌉][H]` vec2, summed
 * over blocks in float64.
 */
export function sumProbePartials(
  partials: Float32Array,
  numHeads: number,
): { echo: number[]; induction: number[] } {
  const echo = new Array(numHeads).fill(0), induction = new Array(numHeads).fill(0);
  for (let at = 0; at + 1 < partials.length; at += 2) {
    const h = (at / 2) % numHeads;
    echo[h] += partials[at];
    induction[h] += partials[at + 1];
  }
  return { echo, induction };
}
