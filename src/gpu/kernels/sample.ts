/**
 * Seeded temperature / top-k / top-p sampling of one token on the GPU (one workgroup of 256
 * threads), in Hugging Face's order: scale by 1/temperature, keep the top-k logits, then the
 * smallest set of most probable tokens whose probability reaches top-p, renormalise and draw.
 *
 * Thresholds are found exactly by radix descent over the order-preserving u32 encoding of the
 * scaled logits, 4 bits per pass (8 passes each: top-k counts keys per digit, top-p sums their
 * probability mass per digit), so nothing is sorted; tokens tied at a threshold are all kept (as in
 * HF's top-k). The draw uses `u = samplerUniform(seed, step)` (see `prng.ts`; `step` is the
 * sampler state's counter) and returns the first token, in index order, whose cumulative kept
 * probability exceeds `u` — the same walk the TypeScript reference does. NaN logits are never
 * drawn. All sums use a fixed order, so the same inputs always give the same token.
 *
 * Bindings: 0 params, 1 logits f32 (read), 2 state u32, 3 ids u32 (read_write).
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";
import { PRNG_WGSL, seedWords } from "../prng.ts";
import { emitWgsl, type SamplerState, STATE_STEP } from "../samplerState.ts";

/** Sampling settings. */
export interface SamplingOptions {
  /** Temperature (> 0; use {@link argmax} for greedy decoding). */
  temperature: number;
  /** Keep the `topK` largest logits (0 = off). */
  topK?: number;
  /** Nucleus mass in (0, 1] (1 = off). */
  topP?: number;
  /** Seed (a non-negative safe integer). */
  seed: number;
}

/** Arguments of {@link sample}. */
export interface SampleArgs extends SamplingOptions {
  /** Logits `[V]` f32 starting at element `logitsOffset`. */
  logits: BufferRef;
  /** First logit (default 0). */
  logitsOffset?: number;
  /** Vocabulary size. */
  vocabSize: number;
  /** Where the id goes. */
  sampler: SamplerState;
}

const CODE =
  `struct Params { V: u32, l0: u32, invT: f32, topK: u32, topP: f32, seedLo: u32, seedHi: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
${emitWgsl(2, 3)}
${PRNG_WGSL}
const WG = 256u;
var<workgroup> ru: array<u32, WG>;
var<workgroup> rf: array<f32, WG>;
var<workgroup> zmaxShared: f32;
var<workgroup> totalShared: f32;
var<workgroup> hist: array<atomic<u32>, 16>;
fn sumU(x: u32, li: u32) -> u32 {
  ru[li] = x;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (li < w) { ru[li] += ru[li + w]; }
    workgroupBarrier();
  }
  let r = ru[0];
  workgroupBarrier();
  return r;
}
fn maxU(x: u32, li: u32) -> u32 {
  ru[li] = x;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (li < w) { ru[li] = max(ru[li], ru[li + w]); }
    workgroupBarrier();
  }
  let r = ru[0];
  workgroupBarrier();
  return r;
}
fn minU(x: u32, li: u32) -> u32 {
  ru[li] = x;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (li < w) { ru[li] = min(ru[li], ru[li + w]); }
    workgroupBarrier();
  }
  let r = ru[0];
  workgroupBarrier();
  return r;
}
// order-preserving key of a scaled logit; 0 for NaN (never kept: keys of numbers are ≥ 0x7fffff)
fn key(i: u32) -> u32 {
  let z = logits[p.l0 + i] * p.invT;
  let b = bitcast<u32>(z);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn weight(i: u32) -> f32 { return exp(logits[p.l0 + i] * p.invT - zmaxShared); }
// each thread owns a contiguous chunk, so every sum below has one fixed order
fn massAbove(t: u32, c0: u32, c1: u32) -> f32 {
  var s = 0.0;
  for (var i = c0; i < c1; i++) { if (key(i) >= t) { s += weight(i); } }
  return s;
}
// bin masses of the whole workgroup, each summed in one fixed order: 16 partials of each thread
// are staged 8 bins at a time, 16 threads per bin add 16 partials each, one thread adds those
var<workgroup> stage: array<f32, ${8 * 256}>;
var<workgroup> binMass: array<f32, 16>;
fn binSums(m: ptr<function, array<f32, 16>>, li: u32) {
  for (var half = 0u; half < 2u; half++) {
    for (var b = 0u; b < 8u; b++) { stage[b * WG + li] = (*m)[half * 8u + b]; }
    workgroupBarrier();
    if (li < 128u) {
      let at = (li / 16u) * WG + (li % 16u) * 16u;
      var s = 0.0;
      for (var j = 0u; j < 16u; j++) { s += stage[at + j]; }
      stage[at] = s;
    }
    workgroupBarrier();
    if (li < 8u) {
      var s = 0.0;
      for (var j = 0u; j < 16u; j++) { s += stage[li * WG + j * 16u]; }
      binMass[half * 8u + li] = s;
    }
    workgroupBarrier();
  }
}
fn sumF(x: f32, li: u32) -> f32 {
  rf[li] = x;
  workgroupBarrier();
  if (li == 0u) {
    var s = 0.0;
    for (var j = 0u; j < WG; j++) { s += rf[j]; }
    rf[0] = s;
  }
  workgroupBarrier();
  let r = rf[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  let chunk = (p.V + WG - 1u) / WG;
  let c0 = min(li * chunk, p.V);
  let c1 = min(c0 + chunk, p.V);
  var kmax = 0u;
  var nv = 0u; // keys that are numbers
  for (var i = c0; i < c1; i++) {
    let k = key(i);
    kmax = max(kmax, k);
    nv += select(0u, 1u, k != 0u);
  }
  kmax = maxU(kmax, li);
  nv = sumU(nv, li);
  if (li == 0u) {
    let b = select(~kmax, kmax & 0x7fffffffu, (kmax & 0x80000000u) != 0u);
    zmaxShared = bitcast<f32>(b);
  }
  workgroupBarrier();
  // top-k: the k-th largest key (radix select, 4 bits per pass); all valid keys when fewer
  var tk = 1u;
  if (p.topK > 0u && p.topK < p.V) {
    var prefix = 0u;
    var mask = 0u;
    var need = p.topK;
    for (var r = 0u; r < 8u; r++) {
      let shift = 28u - 4u * r;
      if (li < 16u) { atomicStore(&hist[li], 0u); }
      workgroupBarrier();
      var cnt = array<u32, 16>(); // (naga zeroes \`var cnt: T;\` in a loop only once)
      for (var i = c0; i < c1; i++) {
        let k = key(i);
        if (k != 0u && (k & mask) == prefix) { cnt[(k >> shift) & 15u] += 1u; }
      }
      for (var b = 0u; b < 16u; b++) { if (cnt[b] > 0u) { atomicAdd(&hist[b], cnt[b]); } }
      workgroupBarrier();
      // the highest digit at which the count from the top reaches \`need\`
      var d = 15u;
      var above = 0u;
      loop {
        let c = atomicLoad(&hist[d]);
        if (above + c >= need || d == 0u) { break; }
        above += c;
        d -= 1u;
      }
      need -= above;
      prefix |= d << shift;
      mask |= 15u << shift;
      workgroupBarrier();
    }
    tk = select(prefix, 1u, nv <= p.topK);
  }
  // top-p: the largest key t ≥ tk whose mass at or above it reaches topP of the top-k mass (radix
  // descent: A is the mass above the current prefix's range, bins split the range by 4 bits)
  let zk = sumF(massAbove(tk, c0, c1), li);
  var th = tk;
  if (p.topP < 1.0) {
    let goal = p.topP * zk;
    var prefix = 0u;
    var mask = 0u;
    var above = 0.0;
    var found = true;
    for (var r = 0u; r < 8u; r++) {
      let shift = 28u - 4u * r;
      var m = array<f32, 16>();
      for (var i = c0; i < c1; i++) {
        let k = key(i);
        if (k >= tk && (k & mask) == prefix) { m[(k >> shift) & 15u] += weight(i); }
      }
      binSums(&m, li);
      var d = 15u;
      var s = above;
      var hit = false;
      loop {
        s += binMass[d];
        if (s >= goal) { hit = true; break; }
        if (d == 0u) { break; }
        d -= 1u;
      }
      found = found && hit;
      above = s - binMass[d];
      prefix |= d << shift;
      mask |= 15u << shift;
      workgroupBarrier();
    }
    // float sums that never reach the goal (topP ≈ 1) keep the whole top-k set
    th = select(tk, prefix, found);
  }
  // draw: walk the kept tokens in index order
  let part = massAbove(th, c0, c1);
  rf[li] = part;
  workgroupBarrier();
  if (li == 0u) {
    var s = 0.0;
    for (var j = 0u; j < WG; j++) {
      let x = rf[j];
      rf[j] = s;
      s += x;
    }
    totalShared = s;
  }
  workgroupBarrier();
  let before = rf[li];
  let u = samplerUniform(p.seedLo, p.seedHi, state[${STATE_STEP}]) * totalShared;
  var pick = 0xffffffffu;
  var last = 0u;
  var acc = before;
  if (u >= before && u < before + part) {
    for (var i = c0; i < c1; i++) {
      if (key(i) >= th) {
        acc += weight(i);
        if (acc > u) { pick = i; break; }
      }
    }
  }
  for (var i = c0; i < c1; i++) { if (key(i) >= th) { last = i + 1u; } }
  pick = minU(pick, li);
  last = maxU(last, li);
  if (li == 0u) { emit(select(pick, max(last, 1u) - 1u, pick == 0xffffffffu)); }
}
`;

/** Prepares seeded sampling of one token. */
export function sample(ctx: GpuContext, a: SampleArgs): GpuOp {
  if (!(a.temperature > 0)) throw new RangeError("sample: temperature must be > 0 (use argmax)");
  const topK = a.topK ?? 0, topP = a.topP ?? 1;
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError("sample: topK must be ≥ 0");
  if (!(topP > 0 && topP <= 1)) throw new RangeError("sample: topP must be in (0, 1]");
  const [lo, hi] = seedWords(a.seed);
  return dispatchOp(ctx, {
    label: "sample",
    pipeline: ctx.pipeline("sample", () => CODE),
    params: packParams([
      ["u32", a.vocabSize],
      ["u32", a.logitsOffset ?? 0],
      ["f32", 1 / a.temperature],
      ["u32", topK],
      ["f32", topP],
      ["u32", lo],
      ["u32", hi],
    ]),
    buffers: [a.logits, a.sampler.state, a.sampler.ids],
    workgroups: [1],
  });
}
