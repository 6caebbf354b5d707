/**
 * Prefill attention for a chunk of `m` queries, causal and GQA, over a layer's ragged cache in
 * which the chunk's own keys/values were already appended (`kvAppend`). With `len[h]` the length
 * of KV head h after the append, query row i (0-based in the chunk) attends the cached entries
 * `0 .. len[h] − m + i` — i.e. everything cached before the chunk plus the chunk causally (for an
 * uncompressed cache: positions `0 .. p0 + i`, chunked prefill).
 *
 * A head's logit-bias row (`kvCache.ts` meta) is honoured, in the observation window too.
 *
 * One thread per (query row, query head), online softmax over tiles of keys (no N×N matrix, no
 * workgroup memory). Optionally, for the chunk's last `window` rows, a second pass writes the
 * softmax probabilities over all visible keys — SnapKV's observation window — to
 * `obs[h][w][obsStride]` (entries past a row's visible keys are 0).
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read), 5 out f32
 * (read_write), 6 obs f32 (read_write, only with `window > 0`).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { ATTENTION_TILE, onlineSoftmaxWgsl } from "./attentionCommon.ts";
import { checkLoopBudget } from "../loopBudget.ts";
import { each } from "./wgslUnroll.ts";

/** Arguments of {@link prefillAttention}. */
export interface PrefillAttentionArgs {
  /** The layer's cache, holding the chunk's keys/values at the end of every head. */
  cache: KvCacheLayer;
  /** Queries after RoPE: row i, head h at `qOffset + i·qRowStride + h·D`. */
  q: BufferRef;
  /** Elements between query rows (default H·D; a multiple of 4). */
  qRowStride?: number;
  /** First query element (default 0; a multiple of 4). */
  qOffset?: number;
  /** Output `[m][H·D]` f32 (row stride `outRowStride`, default H·D, a multiple of 4). */
  out: BufferRef;
  /** Elements between output rows. */
  outRowStride?: number;
  /** Chunk length. */
  m: number;
  /** Query heads (a multiple of the KV heads). */
  numHeads: number;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  /** Observation window: rows at the end of the chunk whose probabilities are written. */
  window?: number;
  /** Probabilities `[H][window][obsStride]` f32 (required with `window > 0`). */
  obs?: BufferRef;
  /** Keys per observation row (≥ the largest head length). */
  obsStride?: number;
  /**
   * A sliding window W (Gemma 3's sliding layers, Mistral): the query at row r sees only the W
   * keys up to and including its own, rows > r − W. It counts rows, so it needs a layer whose rows
   * are consecutive positions in order (never compacted by a policy; cut to its last entries, or
   * a ring of exactly W rows, whose every row is in the window). 0 or absent: no window.
   */
  slidingWindow?: number;
}

function code(dtype: KvStorage, D4: number, withObs: boolean): string {
  const obs = withObs
    ? `
  if (i + p.window >= p.M) {
    let w = i + p.window - p.M;
    let at = (h * p.window + w) * p.obsStride;
    let inv = 1.0 / l;
    for (var j = 0u; j < p.obsStride; j++) {
      var pr = 0.0;
      if (j < lim && j >= lo) { pr = exp(score(base + j) + rowBias(base + j) - mx) * inv; }
      obs[at + j] = pr;
    }
  }`
    : "";
  return `${prefillPreambleWgsl(dtype, D4, withObs)}
${onlineSoftmaxWgsl(D4)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let h = gid.y;
  if (i >= p.M) { return; }
  let kvh = h / p.group;
  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let lim = u32(max(i32(len) - i32(p.M) + i32(i) + 1, 0));
  let lo = windowStart(lim);
  useBias(base, kvmeta[5u * p.Hkv + kvh], kvmeta[6u * p.Hkv + kvh]);
${
    each(D4, (d) =>
      `  q[${d}] = Q[p.q04 + i * p.ldq4 + h * D4 + ${d}u] * p.scale;
  o[${d}] = vec4<f32>(0.0);`)
  }
  mx = NEG;
  l = 0.0;
  attend(base, lo, lim);
  let inv = select(0.0, 1.0 / l, l > 0.0);
${each(D4, (d) => `  out[i * p.ldo4 + h * D4 + ${d}u] = o[${d}] * inv;`)}${obs}
}
`;
}

/**
 * The WGSL every prefill attention kernel starts with: the params of {@link prefillParams}
 * (then `extra` u32 fields, e.g. `chunks` for the blocked kernels), `D4`, and bindings 1–6
 * (q, meta, K, V, out, obs).
 */
export function prefillPreambleWgsl(
  dtype: KvStorage,
  D4: number,
  withObs: boolean,
  extra: string[] = [],
): string {
  return `struct Params { H: u32, Hkv: u32, group: u32, M: u32, ldq4: u32, q04: u32, ldo4: u32,
  scale: f32, window: u32, obsStride: u32, win: u32${extra.map((f) => `, ${f}: u32`).join("")} };
@group(0) @binding(0) var<uniform> p: Params;
// The first key a query seeing keys 0 .. lim − 1 attends: lim − W under a sliding window W.
fn windowStart(lim: u32) -> u32 { return select(0u, lim - p.win, p.win > 0u && lim > p.win); }
const D4 = ${D4}u;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
${kvDecl("VC", 4, dtype, false)}
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
${withObs ? "@group(0) @binding(6) var<storage, read_write> obs: array<f32>;" : ""}`;
}

/** Strides, observation window and bindings shared by the prefill attention kernels. */
export interface PrefillLayout {
  /** Query row stride, first query element, output row stride (elements). */
  ldq: number;
  /** First query element. */
  q0: number;
  /** Output row stride. */
  ldo: number;
  /** Observation rows recorded (0 = none). */
  window: number;
  /** Whether the observation buffer is bound. */
  withObs: boolean;
  /** Storage bindings in order: q, meta, K, V, out, obs?. */
  buffers: BufferRef[];
}

/** Checks and resolves the arguments every prefill attention kernel shares; `label` names it. */
export function prefillLayout(label: string, a: PrefillAttentionArgs): PrefillLayout {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim;
  const ldq = a.qRowStride ?? H * D, q0 = a.qOffset ?? 0, ldo = a.outRowStride ?? H * D;
  if (ldq % 4 || q0 % 4 || ldo % 4) {
    throw new RangeError(`${label}: strides and offsets must be multiples of 4`);
  }
  const window = Math.min(a.window ?? 0, a.m);
  if (window > 0 && (!a.obs || !a.obsStride)) {
    throw new RangeError(`${label}: window > 0 needs obs and obsStride`);
  }
  const buffers = [a.q, c.meta, c.k, c.v, a.out];
  if (window > 0) buffers.push(a.obs!);
  return { ldq, q0, ldo, window, withObs: window > 0, buffers };
}

/**
 * The uniform block of the prefill attention kernels: `H, Hkv, group, M, ldq4, q04, ldo4, scale,
 * window, obsStride, win` (the sliding window, 0 for none), then the `extra` u32 fields the kernel declared in its preamble.
 */
export function prefillParams(
  a: PrefillAttentionArgs,
  l: PrefillLayout,
  extra: number[] = [],
): ArrayBuffer {
  const c = a.cache;
  const fields: Array<["u32" | "f32", number]> = [
    ["u32", a.numHeads],
    ["u32", c.numKvHeads],
    ["u32", a.numHeads / c.numKvHeads],
    ["u32", a.m],
    ["u32", l.ldq / 4],
    ["u32", l.q0 / 4],
    ["u32", l.ldo / 4],
    ["f32", a.scale ?? 1 / Math.sqrt(c.headDim)],
    ["u32", l.window],
    ["u32", a.obsStride ?? 0],
    ["u32", a.slidingWindow ?? 0],
  ];
  for (const v of extra) fields.push(["u32", v]);
  return packParams(fields);
}

/** Prepares prefill attention for one chunk of one layer (one dispatch). */
export function prefillAttention(ctx: GpuContext, a: PrefillAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim, D4 = D / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`prefillAttention: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const layout = prefillLayout("prefillAttention", a);
  // A row attends up to every cached key (about 2 loop iterations each), then the window pass.
  const keys = Math.max(0, ...c.capacities);
  checkLoopBudget(
    ctx,
    keys * (2 + 1 / ATTENTION_TILE) + (layout.withObs ? a.obsStride ?? 0 : 0) + 8,
    `prefill attention (prefill=thread) over ${keys} keys`,
  );
  return dispatchOp(ctx, {
    label: "prefillAttention",
    pipeline: ctx.pipeline(
      `prefillAttn:${c.dtype}:${D4}:${layout.withObs}`,
      () => code(kvStorage(ctx, c.dtype), D4, layout.withObs),
    ),
    params: prefillParams(a, layout),
    buffers: layout.buffers,
    workgroups: [Math.ceil(a.m / 64), H],
  });
}
