/**
 * WGSL shared by the attention kernels: an online-softmax accumulator over tiles of keys, and the
 * preamble of the decode split passes.
 *
 * @module
 */

import { kvDecl, type KvStorage } from "../kvCache.ts";
import { each, unrolledDot } from "./wgslUnroll.ts";

/** Keys scored per online-softmax rescale. */
export const ATTENTION_TILE = 8;

/**
 * WGSL for `fn attend(base, j0, j1)`: accumulates keys `j0 .. j1-1` of the region starting at
 * row `base` into the private state `q`, `o`, `mx`, `l` (declared by the caller, `q` pre-scaled),
 * reading caches through `KC4` / `VC4`; the caller also declares the WGSL constant `D4` (the
 * argument's value). The head dimension is written out, so a row's loops count about 2 iterations per key against llvmpipe's
 * loop budget (`../loopBudget.ts`).
 *
 * With `customEntries`, the caller defines how entry `j` (= base + index) is read instead:
 * `fn entryScore(j: u32) -> f32` (q·k_j) and `fn entryValue(j: u32, pk: f32)` (o += pk·v_j) —
 * e.g. dequantising packed entries — and `score`, `KC4`, `VC4` are not used.
 *
 * Logit bias (RazorAttention's compensation token): `attend` adds `biasValue` to the logit of the
 * absolute row `biasRow` (private, none by default). A kernel over a plain cache calls
 * `useBias(base, kvmeta[5·Hkv + kvh], kvmeta[6·Hkv + kvh])` (see `kvCache.ts`) before attending.
 */
export function onlineSoftmaxWgsl(D4: number, customEntries = false): string {
  const entries = customEntries ? "" : `fn score(row: u32) -> f32 {
  var s = vec4<f32>(0.0);
${unrolledDot("s", D4, (d) => `q[${d}]`, (d) => `KC4(row * D4 + ${d}u)`)}
  return (s.x + s.y) + (s.z + s.w);
}
fn entryScore(row: u32) -> f32 { return score(row); }
fn entryValue(row: u32, pk: f32) {
${each(D4, (d) => `  o[${d}] += pk * VC4(row * D4 + ${d}u);`)}
}
`;
  return `const TILE = ${ATTENTION_TILE}u;
const NEG = -3.0e38;
var<private> q: array<vec4<f32>, D4>;
var<private> o: array<vec4<f32>, D4>;
var<private> mx: f32;
var<private> l: f32;
var<private> biasRow: u32 = 0xffffffffu;
var<private> biasValue: f32 = 0.0;
fn useBias(base: u32, row: u32, bits: u32) {
  biasRow = select(0xffffffffu, base + row, row != 0xffffffffu);
  biasValue = bitcast<f32>(bits);
}
fn rowBias(row: u32) -> f32 { return select(0.0, biasValue, row == biasRow); }
${entries}fn attend(base: u32, j0: u32, j1: u32) {
  for (var j = j0; j < j1; j += TILE) {
    var s: array<f32, TILE>;
    var tm = NEG;
    let n = min(TILE, j1 - j);
    for (var t = 0u; t < n; t++) {
      s[t] = entryScore(base + j + t) + rowBias(base + j + t);
      tm = max(tm, s[t]);
    }
    let mnew = max(mx, tm);
    let c = exp(mx - mnew);
    l *= c;
${each(D4, (d) => `    o[${d}] *= c;`)}
    for (var t = 0u; t < n; t++) {
      let pk = exp(s[t] - mnew);
      l += pk;
      entryValue(base + j + t, pk);
    }
    mx = mnew;
  }
}
`;
}

/**
 * The WGSL a decode split pass starts with: its params (H, Hkv, group, splits, splitSize, scale,
 * q04, chunks), `D4`, `NEG` and bindings 1–5 (q, meta, K, V, partials).
 */
export function decodeSplitPreambleWgsl(dtype: KvStorage, D4: number): string {
  return `struct Params { H: u32, Hkv: u32, group: u32, splits: u32, splitSize: u32, scale: f32,
  q04: u32, chunks: u32 };
@group(0) @binding(0) var<uniform> p: Params;
const D4 = ${D4}u;
const NEG = -3.0e38;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kvmeta: array<u32>;
${kvDecl("KC", 3, dtype, false)}
${kvDecl("VC", 4, dtype, false)}
@group(0) @binding(5) var<storage, read_write> part: array<vec4<f32>>;`;
}

/**
 * WGSL statements reading KV head `kvh`'s cache metadata (`kvCache.ts` meta; `kvmeta` and `p.Hkv`
 * in scope): `base` (first row), `len`, and its logit bias as `biasRow` (absolute row, or
 * 0xffffffff for none) and `biasValue`.
 */
export function kvHeadMetaWgsl(): string {
  return `  let base = kvmeta[kvh];
  let len = kvmeta[p.Hkv + kvh];
  let br = kvmeta[5u * p.Hkv + kvh];
  let biasRow = select(0xffffffffu, base + br, br != 0xffffffffu);
  let biasValue = bitcast<f32>(kvmeta[6u * p.Hkv + kvh]);`;
}
