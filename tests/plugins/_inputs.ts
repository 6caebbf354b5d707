/**
 * Test inputs for the press selection functions: a random "layer" (queries and post-RoPE keys)
 * from which attention is computed directly, and the references the tests compare against.
 *
 * @module
 */

import type { LayerScoresInput } from "../../src/plugins/press.ts";

/** A tiny linear congruential generator (independent of src/plugins/prng.ts). */
export function lcg(seed: number): () => number {
  let state = (seed * 2654435761 + 12345) % 2147483647 || 1;
  return () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}

/** Random queries and keys of one layer, with attention computed straight from them. */
export interface RandomLayer {
  input: LayerScoresInput;
  /** queries[h][i] = query of head h at position i. */
  queries: number[][][];
  /** keys[kv][j] = key of KV head kv at position j. */
  keyRows: number[][][];
  /** Causal softmax probability of query head h at position i on key j (0 when j > i). */
  prob(h: number, i: number, j: number): number;
}

/** Builds a random layer; `sharpness` scales the logits (higher = peakier attention). */
export function randomLayer(opts: {
  promptLength: number;
  numKvHeads: number;
  groupSize: number;
  headDim?: number;
  layer?: number;
  numLayers?: number;
  seed: number;
  sharpness?: number;
}): RandomLayer {
  const n = opts.promptLength;
  const d = opts.headDim ?? 4;
  const heads = opts.numKvHeads * opts.groupSize;
  const rand = lcg(opts.seed);
  const sharp = opts.sharpness ?? 3;
  const vector = () => Array.from({ length: d }, () => (rand() * 2 - 1) * sharp);
  const queries = Array.from({ length: heads }, () => Array.from({ length: n }, vector));
  const keyRows = Array.from({ length: opts.numKvHeads }, () => Array.from({ length: n }, vector));
  const probCache = new Map<string, number[]>();
  const row = (h: number, i: number): number[] => {
    const key = `${h},${i}`;
    let cached = probCache.get(key);
    if (!cached) {
      const kv = Math.floor(h / opts.groupSize);
      const logits = [];
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += queries[h][i][c] * keyRows[kv][j][c];
        logits.push(dot / Math.sqrt(d));
      }
      const top = Math.max(...logits);
      const exps = logits.map((x) => Math.exp(x - top));
      const total = exps.reduce((a, b) => a + b, 0);
      cached = exps.map((e) => e / total);
      probCache.set(key, cached);
    }
    return cached;
  };
  const prob = (h: number, i: number, j: number) => (j > i ? 0 : row(h, i)[j]);
  const input: LayerScoresInput = {
    layer: opts.layer ?? 0,
    numLayers: opts.numLayers ?? 1,
    promptLength: n,
    numKvHeads: opts.numKvHeads,
    groupSize: opts.groupSize,
    headDim: d,
    windowAttention(window) {
      return Array.from({ length: heads }, (_, h) => {
        const out = new Float32Array(window * n);
        for (let r = 0; r < window; r++) {
          for (let j = 0; j < n; j++) out[r * n + j] = prob(h, n - window + r, j);
        }
        return out;
      });
    },
    attentionColumnSums() {
      return Array.from({ length: heads }, (_, h) => {
        const out = new Float32Array(n);
        for (let j = 0; j < n; j++) {
          let sum = 0;
          for (let i = j; i < n; i++) sum += prob(h, i, j);
          out[j] = sum;
        }
        return out;
      });
    },
    keys(kv) {
      return Float32Array.from(keyRows[kv].flat());
    },
  };
  return { input, queries, keyRows, prob };
}

/**
 * Reference ranking written as repeated argmax: `count` times, the not-yet-chosen index with
 * the strictly largest score (first found wins, i.e. lower index on ties). Sorted result.
 */
export function referenceTop(scores: number[], count: number): number[] {
  const chosen = new Set<number>();
  for (let step = 0; step < Math.min(count, scores.length); step++) {
    let best = -1;
    for (let j = 0; j < scores.length; j++) {
      if (chosen.has(j)) continue;
      if (best < 0 || scores[j] > scores[best]) best = j;
    }
    chosen.add(best);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** Reference SnapKV prefix scores of KV head `kv`, from the definition (explicit padding). */
export function referenceSnapScores(
  layer: RandomLayer,
  kv: number,
  window: number,
  pool: number,
  reduce: "max" | "avg",
): number[] {
  const { promptLength: n, groupSize: g } = layer.input;
  const prefix = n - window;
  const votes: number[] = [];
  for (let j = 0; j < prefix; j++) {
    let total = 0;
    for (let h = kv * g; h < (kv + 1) * g; h++) {
      for (let i = n - window; i < n; i++) total += Math.fround(layer.prob(h, i, j));
    }
    votes.push(total / g);
  }
  const half = Math.floor(pool / 2);
  const padValue = reduce === "max" ? -Infinity : 0;
  const padded = [...Array(half).fill(padValue), ...votes, ...Array(pool).fill(padValue)];
  return votes.map((_, j) => {
    const slice = padded.slice(j, j + pool);
    return reduce === "max" ? Math.max(...slice) : slice.reduce((a, b) => a + b, 0) / pool;
  });
}

/** Positions from..to−1 as an array. */
export function range(from: number, to: number): number[] {
  const out = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}

/** A hand-written input whose window attention is given explicitly (per query head). */
export function explicitWindowInput(
  promptLength: number,
  numKvHeads: number,
  groupSize: number,
  rowsPerHead: number[][][],
): LayerScoresInput {
  return {
    layer: 0,
    numLayers: 1,
    promptLength,
    numKvHeads,
    groupSize,
    headDim: 1,
    windowAttention(window) {
      return rowsPerHead.map((rows) => {
        if (rows.length !== window) throw new Error(`test input has ${rows.length} rows`);
        return Float32Array.from(rows.flat());
      });
    },
    attentionColumnSums() {
      throw new Error("not used");
    },
    keys() {
      throw new Error("not used");
    },
  };
}
