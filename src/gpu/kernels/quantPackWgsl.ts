/**
 * WGSL that packs full-precision tokens into KIVI codes — keys a block of G tokens at a time,
 * values up to G tokens at a time — shared by the prefill-time conversion (`quantConvert`) and the
 * decode-time append and settle (`quantAppend`). It follows the CPU
 * reference (`src/plugins/quantPress.ts`) operation by operation: keys per channel over the block,
 * values per token over groups of G channels, min = the smallest value, scale = (max − min)/(2^b − 1),
 * code = ⌊(x − min)/scale⌉ rounding halves up (as `Math.round` does for x ≥ min), clamped, 0 when
 * scale = 0; codes packed lowest bits first.
 *
 * Bit-exact with the reference although it computes in f64: max − min and x − min are carried
 * exactly as f32 pairs (TwoSum), the scale is the f32 nearest to the exact quotient (checked
 * against its neighbours with exact products of 12-bit halves), and each code is checked against
 * its exact half-way points. The kernels' uniform `p.one` (= 1.0) keeps the shader compiler from
 * simplifying TwoSum's algebra away (Mesa does otherwise).
 *
 * @module
 */

/**
 * WGSL for two functions run by a workgroup of 64 threads (`li` its local index), reading source
 * row i of a run at `rb + (r0 + i) % rm`:
 * - `fn packKeys(li, rb, r0, rm, slot)` packs the keys of the G tokens i = 0 … G−1 into key slots
 *   `slot … slot+G−1` (slot a multiple of G);
 * - `fn packValues(li, rb, r0, rm, slot, n)` packs the values of the n ≤ G tokens i = 0 … n−1 into
 *   value slots `slot … slot+n−1`.
 * Sources are read through `fn ${kLoad}(i4) -> vec4<f32>` and `fn ${vLoad}(i4)` (the `kvDecl`
 * loaders); results go through the writable `quantBuffersWgsl` accessors. Call them from uniform
 * control flow (they synchronise the workgroup). Needs the `quantConstsWgsl` constants.
 */
export function packWgsl(kLoad: string, vLoad: string): string {
  return `var<workgroup> pkMin: array<f32, D>;
var<workgroup> pkScale: array<f32, D>;
var<workgroup> pvMin: array<f32, G * NG>;
var<workgroup> pvScale: array<f32, G * NG>;
fn pkK(row: u32, c: u32) -> f32 { return ${kLoad}(row * D4 + c / 4u)[c % 4u]; }
fn pkV(row: u32, c: u32) -> f32 { return ${vLoad}(row * D4 + c / 4u)[c % 4u]; }
// a + b as an unevaluated sum (hi, lo) with hi = fl(a + b), exactly (Knuth's TwoSum).
fn pkTwoSum(a: f32, b: f32) -> vec2<f32> {
  let s = (a + b) * p.one; // p.one = 1: keeps the compiler from simplifying the algebra away
  let bb = s - a;
  return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}
// x = hi + lo with 12 significant bits each, so that hi·n and lo·n are exact for n < 2^12.
fn pkSplit(x: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
  return vec2<f32>(hi, x - hi);
}
// (d.x + d.y) − t·s, exact up to the final rounding of a value near zero (see module doc).
fn pkResidual(d: vec2<f32>, t: f32, s: f32) -> f32 {
  let sp = pkSplit(s);
  return ((d.x - t * sp.x) - t * sp.y) + d.y;
}
// f32((mx − mn)/LEVELS) correctly rounded from the exact difference (as the f64 reference).
fn pkStep(mx: f32, mn: f32, levels: f32) -> f32 {
  let d = pkTwoSum(mx, -mn);
  let s0 = d.x / levels;
  if (s0 <= 0.0) { return 0.0; }
  var best = s0;
  var err = abs(pkResidual(d, levels, s0));
  // WGSL allows division 2.5 ulp off: try the neighbours within 2 ulp.
  for (var k = 0u; k < 4u; k++) {
    let s1 = bitcast<f32>(bitcast<u32>(s0) + k % 2u * (k / 2u + 1u) - (1u - k % 2u) * (k / 2u + 1u));
    let e1 = abs(pkResidual(d, levels, s1));
    // Ties (the quotient half-way between two f32) go to the even one, as f64 → f32 does.
    if (e1 < err || (e1 == err && (bitcast<u32>(s1) & 1u) == 0u)) {
      best = s1;
      err = e1;
    }
  }
  return best;
}
// round((x − mn)/sc) with halves rounded up, decided exactly against the half-way points.
fn pkCode(x: f32, mn: f32, sc: f32, levels: f32) -> u32 {
  if (sc == 0.0) { return 0u; }
  let d = pkTwoSum(x, -mn);
  var c = floor(d.x / sc + 0.5);
  if (pkResidual(d, c - 0.5, sc) < 0.0) {
    c -= 1.0;
  } else if (pkResidual(d, c + 0.5, sc) >= 0.0) {
    c += 1.0;
  }
  return u32(clamp(c, 0.0, levels));
}
fn packKeys(li: u32, rb: u32, r0: u32, rm: u32, slot: u32) {
  let blk = slot / G;
  // One (min, scale) per channel over the block's G tokens.
  for (var c = li; c < D; c += 64u) {
    var mn = 3.0e38;
    var mx = -3.0e38;
    for (var i = 0u; i < G; i++) {
      let x = pkK(rb + (r0 + i) % rm, c);
      mn = min(mn, x);
      mx = max(mx, x);
    }
    let sc = pkStep(mx, mn, KLEVELS);
    pkMin[c] = mn;
    pkScale[c] = sc;
    kpw(2u * (blk * D + c), mn);
    kpw(2u * (blk * D + c) + 1u, sc);
  }
  workgroupBarrier();
  // Codes: one thread per (token, word).
  for (var x = li; x < G * KW; x += 64u) {
    let i = x / KW;
    let w = x % KW;
    let row = rb + (r0 + i) % rm;
    var kw = 0u;
    for (var k = 0u; k < KPER_WORD; k++) {
      let c = w * KPER_WORD + k;
      if (c >= D) { break; }
      kw |= pkCode(pkK(row, c), pkMin[c], pkScale[c], KLEVELS) << (k * KBITS);
    }
    kqw((slot + i) * KW + w, kw);
  }
  workgroupBarrier();
}
fn packValues(li: u32, rb: u32, r0: u32, rm: u32, slot: u32, n: u32) {
  // One (min, scale) per token and group of G channels.
  for (var x = li; x < n * NG; x += 64u) {
    let i = x / NG;
    let g = x % NG;
    let row = rb + (r0 + i) % rm;
    var mn = 3.0e38;
    var mx = -3.0e38;
    for (var c = g * G; c < min(D, g * G + G); c++) {
      let y = pkV(row, c);
      mn = min(mn, y);
      mx = max(mx, y);
    }
    let sc = pkStep(mx, mn, VLEVELS);
    pvMin[x] = mn;
    pvScale[x] = sc;
    vpw(2u * ((slot + i) * NG + g), mn);
    vpw(2u * ((slot + i) * NG + g) + 1u, sc);
  }
  workgroupBarrier();
  for (var x = li; x < n * VW; x += 64u) {
    let i = x / VW;
    let w = x % VW;
    let row = rb + (r0 + i) % rm;
    var vw = 0u;
    for (var k = 0u; k < VPER_WORD; k++) {
      let c = w * VPER_WORD + k;
      if (c >= D) { break; }
      let vg = i * NG + c / G;
      vw |= pkCode(pkV(row, c), pvMin[vg], pvScale[vg], VLEVELS) << (k * VBITS);
    }
    vqw((slot + i) * VW + w, vw);
  }
  workgroupBarrier();
}
`;
}
