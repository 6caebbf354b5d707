/** `chunkkv`: ChunkKV, keep whole chunks of the prompt. @module */
import { resolveBudget } from "./budget.ts";
import { topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * ChunkKV (Liu et al., 2025, arXiv 2502.00299; kvpress `chunkkv_press.py`), after a scorer press
 * (kvpress's registry: `ChunkKVPress(SnapKVPress(), chunk_length=20)`, written here
 * `snap(k=…, window=64, pool=5, reduce=avg) + chunkkv`): the scorer's per-head scores are summed
 * over the KV heads, averaged within consecutive chunks of `chunk` positions (a trailing partial
 * chunk is a chunk of its own, averaged over its length), and the top chunks are kept whole — the
 * same positions in every KV head of the layer. It keeps `max(1, int(C·f))` of the C chunks for a
 * budget fraction f (kvpress's `int(C·(1−r))`), `max(1, int(C·k/N))` for k tokens. A prompt
 * shorter than one chunk falls back to the scorer's own per-head top-k, as kvpress does. The
 * paper's layer-wise index reuse is not in kvpress and not here.
 */
export const chunkkvPress: PressSchema = {
  kind: "press",
  name: "chunkkv",
  role: "rescore",
  when: "prefill",
  params: [{
    name: "chunk",
    type: { kind: "int", min: 1, max: 1 << 20 },
    default: 20,
    doc: "positions per chunk",
  }],
  doc: "ChunkKV: keep the prompt's best chunks whole (scores summed over heads, chunk means).",
  rescore: (_input, scores, budget, p) => selectChunks(scores, budget, p.chunk as number),
};

/** The number of chunks ChunkKV keeps out of `chunks` for `budget` over `n` positions. */
export function chunksKept(budget: Budget, chunks: number, n: number): number {
  const kept = "fraction" in budget
    ? Math.floor(chunks * budget.fraction)
    : Math.floor((chunks * resolveBudget(budget, n, "floor")) / n);
  return Math.max(1, Math.min(chunks, kept));
}

/**
 * ChunkKV selection from per-KV-head `scores` (all of one length N): the positions of the best
 * chunks of `chunk` (ties → the lower chunk), in increasing order, for every head alike.
 */
export function selectChunks(scores: Float64Array[], budget: Budget, chunk: number): number[][] {
  const n = scores[0].length;
  const complete = Math.floor(n / chunk);
  if (complete === 0) {
    const k = resolveBudget(budget, n, "floor");
    return scores.map((s) => topPositions(s, Math.min(k, n)));
  }
  const chunks = complete + (n % chunk > 0 ? 1 : 0);
  const means = new Float64Array(chunks);
  for (let c = 0; c < chunks; c++) {
    const from = c * chunk, to = Math.min(n, from + chunk);
    let sum = 0;
    for (const head of scores) for (let j = from; j < to; j++) sum += head[j];
    means[c] = sum / (to - from);
  }
  const kept = topPositions(means, chunksKept(budget, chunks, n)).flatMap((c) =>
    Array.from({ length: Math.min(n, (c + 1) * chunk) - c * chunk }, (_, i) => c * chunk + i)
  );
  return scores.map(() => kept.slice());
}
