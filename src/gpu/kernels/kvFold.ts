/**
 * RazorAttention's compensation token while decoding (`compensate(decode=fold)`): the entries a
 * bounded head's ring is about to overwrite — the oldest non-sink entries, leaving the window —
 * join the head's compensation token, so it stays the mean key and mean value of every entry the
 * window dropped, prompt and generation alike, and its logit bias ln N_d follows N_d
 * (`weight=count`). Run right before `kvAppend` with the same `m`: for each new token t that will
 * overwrite a row (the head full), that row's key and value are added to the head's f32 sums,
 * N_d grows by one, and the token's row is rewritten as sums / N_d. The sums start, on a head's
 * first fold, as the prefill token × N_d (the token `kvCompensate` wrote). Folds only the rows
 * that exist before the append: with more new tokens than ring rows, those the append itself
 * overwrites are not folded.
 *
 * State buffer (vec4 f32), per KV head h at `h·(1 + 2·D/4)`: a header vec4 (N_d, mode — 0 off,
 * 1 plain, 2 count —, initialised, 0), then the key sums and the value sums (`D/4` vec4 each).
 *
 * One workgroup of 64 threads per KV head, each owning head-dimension vec4s. Bindings: 0 params,
 * 1 meta (read_write: the bias value is rewritten), 2 K, 3 V (read_write), 4 state (read_write).
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "../device.ts";
import { type KvCacheLayer, kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** How a head's compensation token follows the window while decoding. */
export type FoldMode = "count" | "plain" | undefined;

/**
 * Creates the fold state of a layer: per KV head, its compensation token's N_d and weight (or
 * `undefined`: the head does not fold).
 */
export function createFoldState(
  ctx: GpuContext,
  headDim: number,
  heads: { count: number; weight: FoldMode }[],
  label = "fold",
): GPUBuffer {
  const stride = 4 + 2 * headDim;
  const data = new Float32Array(heads.length * stride);
  heads.forEach((h, i) => {
    data[i * stride] = h.count;
    data[i * stride + 1] = h.weight === "count" ? 2 : h.weight === "plain" ? 1 : 0;
  });
  return ctx.upload(data, STORAGE_USAGE, label);
}

function code(storage: KvStorage): string {
  return `struct Params { Hkv: u32, D4: u32, M: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("KC", 2, storage, true)}
${kvDecl("VC", 3, storage, true)}
@group(0) @binding(4) var<storage, read_write> S: array<vec4<f32>>;
var<workgroup> hdr: vec4<f32>;
var<workgroup> wm: array<u32, 6>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let st = h * (1u + 2u * p.D4);
  if (li == 0u) {
    hdr = S[st];
    for (var f = 0u; f < 6u; f++) { wm[f] = kvmeta[f * p.Hkv + h]; }
  }
  let head = workgroupUniformLoad(&hdr);
  let m = workgroupUniformLoad(&wm);
  let base = m[0];
  let len = m[1];
  let cap = m[2];
  let dropped = m[3];
  let ring = m[4];
  let row = m[5];
  if (head.y == 0.0 || ring >= cap) { return; }
  var n = head.x;
  for (var d4 = li; d4 < p.D4; d4 += 64u) {
    let at = (base + row) * p.D4 + d4;
    var sk = S[st + 1u + d4];
    var sv = S[st + 1u + p.D4 + d4];
    if (head.z == 0.0) {
      sk = KC4(at) * n;
      sv = VC4(at) * n;
    }
    var count = n;
    for (var t = 0u; t < p.M; t++) {
      let r = len + t;
      if (r < cap) { continue; }
      if (r - cap >= cap - ring) { break; }
      let victim = (base + ring + (dropped + r - cap) % (cap - ring)) * p.D4 + d4;
      sk += KC4(victim);
      sv += VC4(victim);
      count += 1.0;
    }
    S[st + 1u + d4] = sk;
    S[st + 1u + p.D4 + d4] = sv;
    KCw(at, sk / count);
    VCw(at, sv / count);
  }
  if (li == 0u) {
    for (var t = 0u; t < p.M; t++) {
      let r = len + t;
      if (r >= cap && r - cap < cap - ring) { n += 1.0; }
    }
    S[st] = vec4<f32>(n, head.y, 1.0, 0.0);
    if (head.y == 2.0) { kvmeta[6u * p.Hkv + h] = bitcast<u32>(log(n)); }
  }
}
`;
}

/** Arguments of {@link kvFold}. */
export interface KvFoldArgs {
  /** The layer's cache, with its fold state. */
  cache: KvCacheLayer;
  /** The fold state ({@link createFoldState}). */
  state: GPUBuffer;
  /** Tokens the following `kvAppend` appends. */
  m: number;
}

/** Prepares the fold that precedes an append of `m` tokens (one dispatch). */
export function kvFold(ctx: GpuContext, a: KvFoldArgs): GpuOp {
  const c = a.cache;
  return dispatchOp(ctx, {
    label: "kvFold",
    pipeline: ctx.pipeline(`kvFold:${c.dtype}`, () => code(kvStorage(ctx, c.dtype))),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", c.headDim / 4],
      ["u32", a.m],
    ]),
    buffers: [c.meta, c.k, c.v, a.state],
    workgroups: [c.numKvHeads],
  });
}
