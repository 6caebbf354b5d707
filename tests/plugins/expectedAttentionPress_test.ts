/**
 * Expected Attention (kvpress `expected_attention_press.py`): the formula written out from the
 * reference code — explicit RoPE matrices averaged over the future positions, the Gaussian's mean
 * and covariance, softmax, group mean, value norms, sinks padded with the maximum.
 */
import assert from "node:assert/strict";
import {
  averageRotation,
  expectedAttentionScores,
  selectExpectedAttention,
} from "../../src/plugins/expectedAttentionPress.ts";
import { ropeInverseFrequencies } from "../../src/model/rope.ts";
import { lcg, referenceTop } from "./_inputs.ts";

const D = 8, N = 30, KV = 2, G = 2, H = KV * G, SINK = 4, FUTURE = 16;

/** kvpress's R: cos·I + sin·P per position (cos/sin = cat(freqs, freqs)), averaged. */
function referenceRotation(invFreq: Float64Array, from: number, count: number): number[][] {
  const half = D / 2;
  const r = Array.from({ length: D }, () => new Array(D).fill(0));
  for (let t = from; t < from + count; t++) {
    const angle = (i: number) => t * invFreq[i % half];
    for (let row = 0; row < D; row++) {
      r[row][row] += Math.cos(angle(row)) / count;
      // P[d/2:, :d/2] = I, P[:d/2, d/2:] = −I
      if (row < half) r[row][row + half] -= Math.sin(angle(row)) / count;
      else r[row][row - half] += Math.sin(angle(row)) / count;
    }
  }
  return r;
}

function setup(seed: number) {
  const rand = lcg(seed);
  const v = () => Array.from({ length: D }, () => rand() * 2 - 1);
  const queries = Array.from({ length: H }, () => Array.from({ length: N }, v)); // pre-RoPE
  const keys = Array.from({ length: KV }, () => Array.from({ length: N }, v)); // post-RoPE
  const values = Array.from({ length: KV }, () => Array.from({ length: N }, v));
  const invFreq = ropeInverseFrequencies(D, 10000, { kind: "none" });
  const stats = {
    count: N - SINK,
    mean: queries.map((q) => {
      const mu = new Float64Array(D);
      for (let t = SINK; t < N; t++) q[t].forEach((x, e) => mu[e] += x / (N - SINK));
      return mu;
    }),
    covariance: [] as Float64Array[],
    invFreq,
  };
  stats.covariance = queries.map((q, h) => {
    const c = new Float64Array(D * D);
    for (let t = SINK; t < N; t++) {
      for (let e = 0; e < D; e++) {
        for (let f = 0; f < D; f++) {
          c[e * D + f] += (q[t][e] - stats.mean[h][e]) * (q[t][f] - stats.mean[h][f]) / (N - SINK);
        }
      }
    }
    return c;
  });
  const input = {
    promptLength: N,
    numKvHeads: KV,
    groupSize: G,
    headDim: D,
    keys: (kv: number) => Float32Array.from(keys[kv].flat()),
    values: (kv: number) => Float32Array.from(values[kv].flat()),
    queryStatistics: () => stats,
  };
  return { input, keys, values, stats, invFreq };
}

function reference(seed: number, cov: boolean, vnorm: boolean, eps: number): number[][] {
  const { keys, values, stats, invFreq } = setup(seed);
  const r = referenceRotation(invFreq, N, FUTURE);
  const mv = (m: number[][], x: ArrayLike<number>) =>
    m.map((row) => row.reduce((s, a, j) => s + a * x[j], 0));
  const scores = keys.map((kRows, kv) => {
    const groupMean = new Array(N - SINK).fill(0);
    for (let h = kv * G; h < (kv + 1) * G; h++) {
      const mu = mv(r, stats.mean[h]);
      const sigma = stats.covariance[h];
      // Σ' = R Σ Rᵀ
      const rs = r.map((row) =>
        Array.from({ length: D }, (_, j) => row.reduce((s, a, k) => s + a * sigma[k * D + j], 0))
      );
      const sp = rs.map((row) => r.map((other) => row.reduce((s, a, k) => s + a * other[k], 0)));
      const z = kRows.slice(SINK).map((k) => {
        const k32 = k.map(Math.fround);
        let s = mu.reduce((acc, m, e) => acc + m * k32[e], 0) / Math.sqrt(D);
        if (cov) s += k32.reduce((acc, a, e) => acc + a * mv(sp, k32)[e], 0) / D / 2;
        return s;
      });
      const max = Math.max(...z);
      const total = z.reduce((acc, x) => acc + Math.exp(x - max), 0);
      z.forEach((x, i) => groupMean[i] += Math.exp(x - max) / total / G);
    }
    return groupMean.map((p, i) =>
      vnorm ? (p + eps) * Math.hypot(...values[kv][SINK + i].map(Math.fround)) : p
    );
  });
  const top = Math.max(...scores.flat());
  return scores.map((s) => [...new Array(SINK).fill(top), ...s]);
}

Deno.test("expected: the averaged rotation equals kvpress's mean of cos·I + sin·P", () => {
  const invFreq = ropeInverseFrequencies(D, 10000, { kind: "none" });
  const got = averageRotation(invFreq, 100, 37);
  const want = referenceRotation(invFreq, 100, 37);
  want.forEach((row, i) => row.forEach((x, j) => assert.ok(Math.abs(got[i * D + j] - x) < 1e-12)));
});

Deno.test("expected: scores match the formula (covariance, value norms, eps, sinks)", () => {
  for (const seed of [1, 2]) {
    for (
      const [cov, vnorm, eps] of [[true, true, 0], [false, true, 0.01], [true, false, 0]] as const
    ) {
      const { input } = setup(seed);
      const params = { k: { tokens: 10 }, future: FUTURE, sink: SINK, cov, vnorm, eps };
      const got = expectedAttentionScores(input, params);
      const want = reference(seed, cov, vnorm, eps);
      got.forEach((head, kv) =>
        head.forEach((s, i) =>
          assert.ok(Math.abs(s - want[kv][i]) < 1e-9, `${kv},${i}: ${s} vs ${want[kv][i]}`)
        )
      );
      const kept = selectExpectedAttention(input, params);
      kept.forEach((k, kv) => assert.deepEqual(k, referenceTop(want[kv], 10)));
      // The sinks are kept (they score the maximum).
      for (const k of kept) assert.deepEqual(k.slice(0, SINK), [0, 1, 2, 3]);
    }
  }
});
