/**
 * WGSL shared by the attention kernels: an online-softmax accumulator over tiles of keys.
 *
 * @module
 */

/** Keys scored per online-softmax rescale. */
export const ATTENTION_TILE = 8;

/**
 * WGSL for `fn attend(base, j0, j1)`: accumulates keys `j0 .. j1-1` of the region starting at
 * row `base` into the private state `q`, `o`, `mx`, `l` (declared by the caller, `q` pre-scaled),
 * reading caches through `KC4` / `VC4`. `D4` must be a WGSL constant.
 */
export function onlineSoftmaxWgsl(): string {
  return `const TILE = ${ATTENTION_TILE}u;
const NEG = -3.0e38;
var<private> q: array<vec4<f32>, D4>;
var<private> o: array<vec4<f32>, D4>;
var<private> mx: f32;
var<private> l: f32;
fn score(row: u32) -> f32 {
  var s = vec4<f32>(0.0);
  for (var d = 0u; d < D4; d++) { s += q[d] * KC4(row * D4 + d); }
  return (s.x + s.y) + (s.z + s.w);
}
fn attend(base: u32, j0: u32, j1: u32) {
  for (var j = j0; j < j1; j += TILE) {
    var s: array<f32, TILE>;
    var tm = NEG;
    let n = min(TILE, j1 - j);
    for (var t = 0u; t < n; t++) {
      s[t] = score(base + j + t);
      tm = max(tm, s[t]);
    }
    let mnew = max(mx, tm);
    let c = exp(mx - mnew);
    l *= c;
    for (var d = 0u; d < D4; d++) { o[d] *= c; }
    for (var t = 0u; t < n; t++) {
      let pk = exp(s[t] - mnew);
      l += pk;
      let row = (base + j + t) * D4;
      for (var d = 0u; d < D4; d++) { o[d] += pk * VC4(row + d); }
    }
    mx = mnew;
  }
}
`;
}
