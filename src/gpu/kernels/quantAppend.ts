/**
 * Appends `m` new tokens to every KV head of a quantised layer and settles it, KIVI's decode step
 * (`models/llama_kivi.py`) on the GPU, so the decode loop needs no CPU round trip. Per head:
 * - settle: when R + 1 values are in full precision, the oldest is packed (one token); when R
 *   keys have gathered in full precision, they are packed (R/G blocks of G);
 * - append (per new token): settle, then the token goes to ring row `rbase + T % rcap` (or is
 *   dropped and counted when the head holds its capacity).
 * A decode step runs {@link quantAppend} (m = 1) before attention — which then sees 1 … R full
 * keys and up to R + 1 full values, as KIVI's attention does — and {@link quantSettle} after it,
 * so between steps each head is settled exactly as KIVI leaves it (see `quantKvCache.ts`).
 *
 * One workgroup of 64 threads per KV head; the head's meta is loaded once, updated in registers
 * and written back at the end. Both ops use one pipeline (a uniform says which).
 *
 * Bindings: 0 params, 1 meta (read_write), 2 ring K, 3 ring V (read_write),
 * 4 k f32 `[m][ldk]`, 5 v f32 `[m][ldv]` (read; head h at columns h·D …), 6 codes, 7 pairs
 * (read_write).
 *
 * @module
 */

import { type BufferRef, type GpuContext, STORAGE_USAGE } from "../device.ts";
import { kvDecl, type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { quantBuffersWgsl, quantConstsWgsl, type QuantKvLayer } from "../quantKvCache.ts";
import { packWgsl } from "./quantPackWgsl.ts";
import { checkLoopBudget } from "../loopBudget.ts";

/** Arguments of {@link quantAppend}. */
export interface QuantAppendArgs {
  /** The layer's quantised cache. */
  cache: QuantKvLayer;
  /** New keys (after RoPE): element (t, h, d) at `t·Hkv·D + h·D + d` f32. */
  k: BufferRef;
  /** New values, laid out like `k`. */
  v: BufferRef;
  /** Number of new tokens. */
  m: number;
}

function code(c: QuantKvLayer, storage: KvStorage): string {
  return `struct Params { Hkv: u32, M: u32, vq0: u32, vp0: u32, one: f32, settleAfter: u32 };
@group(0) @binding(0) var<uniform> p: Params;
${quantConstsWgsl(c.headDim, c.quant)}
@group(0) @binding(1) var<storage, read_write> kvmeta: array<u32>;
${kvDecl("RK", 2, storage, true)}
${kvDecl("RV", 3, storage, true)}
@group(0) @binding(4) var<storage, read> ks: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> vs: array<vec4<f32>>;
${quantBuffersWgsl(6, true)}
${packWgsl("RK4", "RV4")}
var<workgroup> wm: array<u32, 10>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  if (li < 10u) { wm[li] = kvmeta[li * p.Hkv + h]; }
  let m = workgroupUniformLoad(&wm);
  let rbase = m[0];
  var T = m[1];
  let rcap = m[2];
  var dropped = m[3];
  let R = m[4];
  var nqk = m[5];
  var nqv = m[6];
  let kbase = m[7];
  let vbase = m[8];
  let cap = m[9];
  for (var t = 0u; t <= p.M; t++) {
    // Settle before each new token, and after the last one when asked.
    if (R > 0u && (t < p.M || p.settleAfter != 0u)) {
      if (T - nqv > R) {
        packValues(li, rbase, nqv % rcap, rcap, vbase + nqv, 1u);
        nqv += 1u;
      }
      if (T - nqk == R) {
        for (var q = 0u; q < R; q += G) {
          packKeys(li, rbase, (nqk + q) % rcap, rcap, kbase + nqk + q);
        }
        nqk += R;
      }
      storageBarrier();
    }
    if (t == p.M) { break; }
    if (T < cap) {
      let row = rbase + T % rcap;
      for (var d = li; d < D4; d += 64u) {
        RKw(row * D4 + d, ks[(t * p.Hkv + h) * D4 + d]);
        RVw(row * D4 + d, vs[(t * p.Hkv + h) * D4 + d]);
      }
      T += 1u;
    } else {
      dropped += 1u;
    }
    storageBarrier();
  }
  if (li == 0u) {
    kvmeta[p.Hkv + h] = T;
    kvmeta[3u * p.Hkv + h] = dropped;
    kvmeta[5u * p.Hkv + h] = nqk;
    kvmeta[6u * p.Hkv + h] = nqv;
  }
}
`;
}

/** Prepares the append of `m` tokens to every head of a quantised layer (one dispatch). */
export function quantAppend(ctx: GpuContext, a: QuantAppendArgs): GpuOp {
  const c = a.cache;
  // One workgroup appends the chunk token by token and packs as it goes: its loops must fit
  // llvmpipe's budget (\`../loopBudget.ts\`).
  const D = c.headDim, { group: G, kbits, vbits } = c.quant;
  const R = Math.max(G, ...c.quant.residuals.map((r) => r ?? 0));
  const kPer = Math.floor(32 / kbits), vPer = Math.floor(32 / vbits);
  const keyBlock = Math.ceil(D / 64) * (G + 1) +
    Math.ceil(G * Math.ceil(D / kPer) / 64) * (kPer + 1);
  const valueToken = Math.ceil(Math.ceil(D / G) / 64) * (G + 1) + (vPer + 1);
  checkLoopBudget(
    ctx,
    a.m * (2 + Math.ceil(D / 256) + valueToken) + Math.ceil(a.m / R + 1) * (R / G) * keyBlock,
    `a quantised prefill chunk of ${a.m} tokens (quantAppend)`,
  );
  return appendOp(ctx, c, a.k, a.v, a.m, false);
}

/**
 * Prepares the settle that follows a decode step's attention (see the module doc): packs the
 * oldest value once R + 1 are in full precision and the keys once R have gathered.
 */
export function quantSettle(ctx: GpuContext, cache: QuantKvLayer): GpuOp {
  // No new tokens: bindings 4 and 5 get a placeholder (meta is bound writable already).
  const none = ctx.createBuffer(16, STORAGE_USAGE, "quantSettle.none");
  const op = appendOp(ctx, cache, none, none, 0, true);
  return {
    label: op.label,
    encode: (pass) => op.encode(pass),
    destroy() {
      op.destroy();
      ctx.release(none);
    },
  };
}

function appendOp(
  ctx: GpuContext,
  c: QuantKvLayer,
  k: BufferRef,
  v: BufferRef,
  m: number,
  settleAfter: boolean,
): GpuOp {
  const { kbits, vbits, group } = c.quant;
  const key = `quantAppend:${c.dtype}:${c.headDim}:${kbits}:${vbits}:${group}`;
  return dispatchOp(ctx, {
    label: settleAfter ? "quantSettle" : "quantAppend",
    pipeline: ctx.pipeline(key, () => code(c, kvStorage(ctx, c.dtype))),
    params: packParams([
      ["u32", c.numKvHeads],
      ["u32", m],
      ["u32", c.valueCodes],
      ["u32", c.valueParams],
      ["f32", 1],
      ["u32", settleAfter ? 1 : 0],
    ]),
    buffers: [c.meta, c.rk, c.rv, k, v, c.codes, c.params],
    workgroups: [c.numKvHeads],
  });
}
