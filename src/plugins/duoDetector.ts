/** `duo`: DuoAttention's on-the-fly head scoring. @module */
import type { DetectorSchema } from "./schema.ts";

/**
 * DuoAttention's head scores as kvpress computes them on the fly (Xiao et al., 2024, arXiv
 * 2410.10819; kvpress `duo_attention_press.py`, `DuoAttentionPress(on_the_fly_scoring=True)`):
 * per layer, the mean pre-RoPE query of each query head and the mean pre-RoPE key of each KV head
 * are tiled over `qlen` positions and rotated by RoPE at positions 0 … qlen − 1; the last
 * position's query attends (softmax, 1/√d) to all qlen keys; a head's score is the mean of the
 * cumulative sum of that row (the area under its cumulative-attention curve), averaged over the
 * GQA group. The `ratio` lowest-scoring KV heads of the whole model become streaming heads;
 * `heads duo` selects the others, so `heads duo -> full; else -> window(sink=128, recent=256)`
 * is kvpress's press. kvpress averages its means over 50 BookSum chapters, a data set that is not
 * here; these means are the prompt's own (every position), so the heads adapt to each prompt.
 * They are the queries and keys the model really uses (after Qwen3's q_norm/k_norm, which
 * kvpress's on-the-fly path applies too).
 */
export const duoDetector: DetectorSchema = {
  kind: "detector",
  name: "duo",
  target: "heads",
  params: [
    {
      name: "ratio",
      type: { kind: "fraction" },
      default: 0.5,
      doc: "share of KV heads that become streaming heads (kvpress head_compression_ratio)",
    },
    {
      name: "qlen",
      type: { kind: "int", min: 2, max: 1 << 16 },
      default: 500,
      doc: "positions the mean query and key are tiled over",
    },
  ],
  doc: "DuoAttention (on the fly): heads whose tiled mean query spreads its attention stay whole.",
};

/** Parameters of {@link duoDetector}. */
export interface DuoParams {
  /** Share of KV heads made streaming. */
  ratio: number;
  /** Positions tiled. */
  qlen: number;
}

/**
 * One layer's scores per KV head: `meanQuery[h]` (H arrays of d) and `meanKey[kv]` (H_kv arrays
 * of d) are pre-RoPE means; `invFreq` the rotate_half RoPE frequencies (d/2).
 */
export function duoHeadScores(
  meanQuery: readonly ArrayLike<number>[],
  meanKey: readonly ArrayLike<number>[],
  invFreq: ArrayLike<number>,
  qlen: number,
): number[] {
  const kvHeads = meanKey.length, g = meanQuery.length / kvHeads;
  const d = 2 * invFreq.length, half = invFreq.length;
  const rotate = (x: ArrayLike<number>, t: number) => {
    const out = new Float64Array(d);
    for (let i = 0; i < half; i++) {
      const c = Math.cos(t * invFreq[i]), s = Math.sin(t * invFreq[i]);
      out[i] = x[i] * c - x[i + half] * s;
      out[i + half] = x[i + half] * c + x[i] * s;
    }
    return out;
  };
  return Array.from({ length: kvHeads }, (_, kv) => {
    const keys = Array.from({ length: qlen }, (_, t) => rotate(meanKey[kv], t));
    let total = 0;
    for (let h = kv * g; h < (kv + 1) * g; h++) {
      const q = rotate(meanQuery[h], qlen - 1);
      const logits = keys.map((k) => {
        let dot = 0;
        for (let e = 0; e < d; e++) dot += q[e] * k[e];
        return dot / Math.sqrt(d);
      });
      const max = Math.max(...logits);
      const exps = logits.map((x) => Math.exp(x - max));
      const sum = exps.reduce((a, b) => a + b, 0);
      let cumulative = 0, area = 0;
      for (const e of exps) area += cumulative += e / sum;
      total += area / qlen;
    }
    return total / g;
  });
}

/**
 * The verdict: per layer and KV head, true unless the head is among the
 * `round(layers · H_kv · ratio)` lowest scores of the model — Python's `round`, halves to even, as
 * kvpress counts them (ties → the later head streams first, so the earlier stays whole).
 */
export function selectDuoHeads(scores: readonly number[][], ratio: number): boolean[][] {
  const all = scores.flatMap((row, l) => row.map((s, h) => ({ s, l, h })));
  const streaming = roundHalfEven(all.length * ratio);
  const order = all.sort((a, b) => a.s - b.s || b.l - a.l || b.h - a.h);
  const verdict = scores.map((row) => row.map(() => true));
  for (const { l, h } of order.slice(0, streaming)) verdict[l][h] = false;
  return verdict;
}

/** `x` rounded to the nearest integer, halves to the even neighbour (Python's `round`). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}
