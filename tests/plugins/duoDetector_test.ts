/** DuoAttention's on-the-fly head scores (kvpress `duo_attention_press.py`), from the formula. */
import assert from "node:assert/strict";
import { duoHeadScores, selectDuoHeads } from "../../src/plugins/duoDetector.ts";
import { ropeInverseFrequencies } from "../../src/model/rope.ts";
import { lcg } from "./_inputs.ts";

/** kvpress's steps with explicit matrices: R_t = cos·I + sin·P, tile, softmax, cumsum, mean. */
function reference(q: number[], k: number[], invFreq: Float64Array, qlen: number): number {
  const d = q.length, half = d / 2;
  const rot = (x: number[], t: number) =>
    Array.from({ length: d }, (_, r) => {
      const a = t * invFreq[r % half];
      // row r of cos·I + sin·P, with P[d/2:, :d/2] = I and P[:d/2, d/2:] = −I
      const p = r < half ? -x[r + half] : x[r - half];
      return Math.cos(a) * x[r] + Math.sin(a) * p;
    });
  const qLast = rot(q, qlen - 1);
  const logits = Array.from(
    { length: qlen },
    (_, t) => rot(k, t).reduce((s, x, e) => s + x * qLast[e], 0) / Math.sqrt(d),
  );
  const max = Math.max(...logits);
  const p = logits.map((x) => Math.exp(x - max));
  const z = p.reduce((a, b) => a + b, 0);
  let c = 0;
  return p.map((x) => (c += x / z)).reduce((a, b) => a + b, 0) / qlen;
}

Deno.test("duo: scores equal kvpress's tiled-RoPE cumulative attention area, averaged per group", () => {
  const rand = lcg(3);
  const d = 8, g = 2, kvHeads = 2, qlen = 40;
  const invFreq = ropeInverseFrequencies(d, 10000, { kind: "none" });
  const v = () => Array.from({ length: d }, () => (rand() * 2 - 1) * 3);
  const queries = Array.from({ length: kvHeads * g }, v), keys = Array.from({ length: kvHeads }, v);
  const got = duoHeadScores(queries, keys, invFreq, qlen);
  for (let kv = 0; kv < kvHeads; kv++) {
    const want = (reference(queries[2 * kv], keys[kv], invFreq, qlen) +
      reference(queries[2 * kv + 1], keys[kv], invFreq, qlen)) / 2;
    assert.ok(Math.abs(got[kv] - want) < 1e-12, `${got[kv]} vs ${want}`);
  }
  // Uniform attention (a zero query) gives the area of a linear ramp: (qlen + 1) / (2·qlen).
  const flat = duoHeadScores([new Array(d).fill(0)], [v()], invFreq, qlen);
  assert.ok(Math.abs(flat[0] - (qlen + 1) / (2 * qlen)) < 1e-12);
});

Deno.test("duo: the ratio's lowest heads of the whole model stream; the rest are selected", () => {
  const scores = [[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]];
  assert.deepEqual(selectDuoHeads(scores, 0.5), [[true, false, true], [false, true, false]]);
  assert.deepEqual(selectDuoHeads(scores, 0), [[true, true, true], [true, true, true]]);
  assert.deepEqual(selectDuoHeads(scores, 1), [[false, false, false], [false, false, false]]);
  // round(4 · 0.5) = 2 streaming among three tied at 0.5: the later heads stream first.
  assert.deepEqual(selectDuoHeads([[0.5, 0.5], [0.5, 0.9]], 0.5), [[true, false], [false, true]]);
  // kvpress counts with Python's round: 5 · 0.5 = 2.5 → 2 streaming heads, 3 · 0.5 = 1.5 → 2.
  const five = [[0.1, 0.2, 0.3, 0.4, 0.5]];
  assert.deepEqual(selectDuoHeads(five, 0.5), [[false, false, true, true, true]]);
  assert.deepEqual(selectDuoHeads([[0.1, 0.2, 0.3]], 0.5), [[false, false, true]]);
});
