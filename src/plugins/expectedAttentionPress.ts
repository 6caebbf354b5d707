/** `expected`: Expected Attention, scores from the statistics of future queries. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * Expected Attention (Devoto et al., 2025, arXiv 2510.00636; kvpress
 * `expected_attention_press.py`): the prompt's pre-RoPE queries (positions from `sink` on) are
 * modelled per query head as a Gaussian (mean μ, population covariance Σ, accumulated on the GPU
 * during prefill); the RoPE rotation averaged over the next `future` positions, R̄, moves them to
 * where future queries will be (μ' = R̄μ, Σ' = R̄ΣR̄ᵀ); each key i past the sink scores
 * `z_i = μ'·k_i/√d + k_iᵀΣ'k_i/(2d)` (the second term with `cov=true`), softmaxed over the keys
 * and averaged over the GQA group, then scaled by the value's norm, `(p_i + eps)·‖v_i‖₂`
 * (`vnorm=true`). The first `sink` positions score the layer's highest score and so are kept. No
 * attention matrix is needed. Each KV head keeps its top k (a fraction f keeps int(f·N)).
 * kvpress refuses QK-norm models; here the statistics are of the queries the model really uses
 * (after q_norm and any q bias), which is what its formula means for Llama-like models.
 */
export const expectedAttentionPress: PressSchema = {
  kind: "press",
  name: "expected",
  role: "select",
  when: "prefill",
  params: [
    {
      name: "k",
      type: { kind: "budget" },
      doc: "entries kept per KV head; a fraction f keeps int(f·N)",
    },
    {
      name: "future",
      type: { kind: "int", min: 1, max: 1 << 20 },
      default: 512,
      doc: "future positions the RoPE rotation is averaged over",
    },
    {
      name: "sink",
      type: { kind: "int", min: 0, max: 1 << 20 },
      default: 4,
      doc: "first positions left out of the statistics and always kept",
    },
    { name: "cov", type: { kind: "bool" }, default: true, doc: "use the queries' covariance" },
    {
      name: "vnorm",
      type: { kind: "bool" },
      default: true,
      doc: "scale scores by the values' L2 norms",
    },
    {
      name: "eps",
      type: { kind: "number", min: 0 },
      default: 0,
      doc: "added to each probability before the value-norm scaling",
    },
  ],
  doc: "Expected Attention: attention of modelled future queries, times the value norms.",
  needs: { queryStatistics: (p) => ({ sink: p.sink as number }), keys: true, values: true },
  select: (input, p) => selectExpectedAttention(input, p as unknown as ExpectedParams),
  score: (input, p) => expectedAttentionScores(input, p as unknown as ExpectedParams),
};

/** Parameters of {@link selectExpectedAttention}, named as in the schema. */
export interface ExpectedParams {
  /** Entries kept per KV head. */
  k: Budget;
  /** Future positions averaged over. */
  future: number;
  /** Sink positions. */
  sink: number;
  /** Use the covariance term. */
  cov: boolean;
  /** Scale by the value norms. */
  vnorm: boolean;
  /** Added before scaling. */
  eps: number;
}

/** What Expected Attention needs from the runtime. */
export type ExpectedInput = Pick<
  LayerScoresInput,
  | "promptLength"
  | "numKvHeads"
  | "groupSize"
  | "headDim"
  | "keys"
  | "values"
  | "queryStatistics"
  | "memo"
>;

/**
 * R̄: the rotate_half RoPE matrix averaged over positions `from … from + count − 1` (float64,
 * `d × d` row-major): per frequency i, the mean cosine c̄ on the diagonal, −s̄ at (i, i + d/2) and
 * s̄ at (i + d/2, i).
 */
export function averageRotation(
  invFreq: ArrayLike<number>,
  from: number,
  count: number,
): Float64Array {
  const half = invFreq.length, d = 2 * half;
  const r = new Float64Array(d * d);
  for (let i = 0; i < half; i++) {
    let c = 0, s = 0;
    for (let t = from; t < from + count; t++) {
      c += Math.cos(t * invFreq[i]);
      s += Math.sin(t * invFreq[i]);
    }
    c /= count;
    s /= count;
    r[i * d + i] = c;
    r[(i + half) * d + i + half] = c;
    r[i * d + i + half] = -s;
    r[(i + half) * d + i] = s;
  }
  return r;
}

/** `a · b` for `d × d` row-major matrices (`bT`: use b transposed). */
function matMul(a: Float64Array, b: Float64Array, d: number, bT = false): Float64Array {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let sum = 0;
      for (let k = 0; k < d; k++) sum += a[i * d + k] * (bT ? b[j * d + k] : b[k * d + j]);
      out[i * d + j] = sum;
    }
  }
  return out;
}

/**
 * Expected Attention's score of every prompt position per KV head (see
 * {@link expectedAttentionPress}); the sink positions score the layer's maximum. A prompt of at
 * most `sink` tokens scores 0 everywhere.
 */
export function expectedAttentionScores(input: ExpectedInput, p: ExpectedParams): Float64Array[] {
  const n = input.promptLength, d = input.headDim, g = input.groupSize;
  if (n <= p.sink) return Array.from({ length: input.numKvHeads }, () => new Float64Array(n));
  if (!input.queryStatistics || (p.vnorm && !input.values)) {
    throw new Error("expected attention needs the query statistics and the values");
  }
  const stats = input.queryStatistics();
  const rot = averageRotation(stats.invFreq, n, p.future);
  const scale = 1 / Math.sqrt(d);
  const scores = Array.from({ length: input.numKvHeads }, (_, kv) => {
    const keys = input.keys(kv);
    const mean = new Float64Array(n - p.sink);
    for (let h = kv * g; h < (kv + 1) * g; h++) {
      const mu = Float64Array.from({ length: d }, (_, i) => {
        let sum = 0;
        for (let j = 0; j < d; j++) sum += rot[i * d + j] * stats.mean[h][j];
        return sum;
      });
      const sigma = p.cov ? matMul(matMul(rot, stats.covariance[h], d), rot, d, true) : undefined;
      const z = new Float64Array(n - p.sink);
      let max = -Infinity;
      for (let i = p.sink; i < n; i++) {
        const k = keys.subarray(i * d, (i + 1) * d);
        let logit = 0;
        for (let e = 0; e < d; e++) logit += mu[e] * k[e];
        logit *= scale;
        if (sigma) {
          let quad = 0;
          for (let e = 0; e < d; e++) {
            let row = 0;
            for (let f = 0; f < d; f++) row += sigma[e * d + f] * k[f];
            quad += k[e] * row;
          }
          logit += quad / (2 * d);
        }
        z[i - p.sink] = logit;
        max = Math.max(max, logit);
      }
      let total = 0;
      for (let i = 0; i < z.length; i++) total += z[i] = Math.exp(z[i] - max);
      for (let i = 0; i < z.length; i++) mean[i] += z[i] / total / g;
    }
    if (p.vnorm) {
      const values = input.values!(kv);
      for (let i = p.sink; i < n; i++) {
        let sq = 0;
        for (let e = 0; e < d; e++) sq += values[i * d + e] ** 2;
        mean[i - p.sink] = (mean[i - p.sink] + p.eps) * Math.sqrt(sq);
      }
    }
    return mean;
  });
  let top = -Infinity;
  for (const head of scores) for (const s of head) top = Math.max(top, s);
  return scores.map((head) => {
    const out = new Float64Array(n).fill(top);
    out.set(head, p.sink);
    return out;
  });
}

/**
 * Expected Attention selection for one layer: with k = `int(f·N)` for a fraction (else the token
 * count), N ≤ k keeps everything; otherwise each KV head keeps its top k
 * {@link expectedAttentionScores} (ties → lower position).
 */
export function selectExpectedAttention(input: ExpectedInput, p: ExpectedParams): number[][] {
  const n = input.promptLength;
  const k = resolveBudget(p.k, n, "floor");
  if (n <= k) return keepAllHeads(input.numKvHeads, n);
  // The scores depend on every parameter but the budget: one computation for all budgets.
  const { k: _, ...rest } = p;
  const scores = input.memo
    ? input.memo(
      `expected ${JSON.stringify(rest)} of ${n}`,
      () => expectedAttentionScores(input, p),
    )
    : expectedAttentionScores(input, p);
  return scores.map((s) => topPositions(s, k));
}
