/**
 * KVzip's context reconstruction (`src/plugins/kvzipPress.ts`): after prefill, each chunk of the
 * context is fed again over the cache behind its repeat prompt, the repeat's queries are captured
 * per layer (`captureQuery`, a multi-row step hook), every entry of the chunk is scored by its
 * highest attention weight among them (on the GPU, `kvzipScores`; the group's maximum on the
 * CPU), and the repeat's entries are dropped again. The cache needs room for the longest repeat
 * ({@link reconstructionRoom}).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { captureQuery, createQueryRing, type QueryRing } from "../gpu/kernels/captureQuery.ts";
import type { ModelConfig } from "../model/types.ts";
import { attentionScale } from "../model/attentionScale.ts";
import {
  KVZIP_QUOTE,
  KVZIP_SINK,
  kvzipChunks,
  kvzipRepeatIds,
  type RepeatPrompts,
} from "../plugins/kvzipPress.ts";
import { kvzipScores } from "../gpu/kernels/kvzipScores.ts";
import { runOps } from "../gpu/op.ts";
import { isQuantLayer } from "../gpu/quantKvCache.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";
import type { PrefillState } from "./engine.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import {
  releaseSlidingWindows,
  restoreSlidingWindows,
  setAsideSlidingWindows,
} from "./slidingLayers.ts";

/** What the reconstruction needs from the engine. */
export interface ReconstructionSources {
  /** The repeat prompts' token ids. */
  prompts(): RepeatPrompts;
  /** Runs `ids` through the model, appending to `cache` from position `firstPosition`. */
  forward(cache: RaggedKvCache, ids: number[], firstPosition: number): Promise<void>;
}

/** Rows the longest repeat appends after a context of `n` tokens (room the cache must have). */
export function reconstructionRoom(n: number, chunk: number, prompts: RepeatPrompts): number {
  const quote = Math.max(prompts.first.length, prompts.later.length + KVZIP_QUOTE);
  return quote + prompts.suffix.length + Math.min(n, chunk);
}

/** Every layer's KVzip scores (`[layer][kvHead][position]`) for the context `context` in `cache`. */
export async function reconstructionScores(
  ctx: GpuContext,
  c: ModelConfig,
  cache: RaggedKvCache,
  context: readonly number[],
  chunk: number,
  sources: ReconstructionSources,
): Promise<Float64Array[][]> {
  const n = context.length, D = c.headDim, H = c.numHeads, g = H / c.numKvHeads;
  const prompts = sources.prompts();
  const chunks = kvzipChunks(n, chunk);
  const scores = cache.layerWindows.map((w) =>
    Array.from({ length: c.numKvHeads }, () => new Float64Array(w === null ? n : 0))
  );
  // Gemma 3's sliding layers: their last W context entries wait aside while the repeats roll
  // through the layers, and come back after each.
  const aside = setAsideSlidingWindows(ctx, cache, n);
  try {
    for (let i = 0; i < chunks.length; i++) {
      await scoreChunk(i);
      restoreSlidingWindows(ctx, cache, aside);
    }
  } finally {
    releaseSlidingWindows(ctx, aside);
  }
  return scores;

  async function scoreChunk(i: number): Promise<void> {
    const ids = kvzipRepeatIds(context, chunks, i, prompts);
    const rows = ids.length;
    cache.layers.forEach((layer, l) => {
      const room = Math.min(...layer.capacities), need = n + rows;
      if (cache.layerWindows[l] === null && room < need) {
        throw new RangeError(
          `kvzip: layer ${l} holds ${room} rows per head, the reconstruction needs ${need} ` +
            "(size it with GenerationRequest.prefillRoom)",
        );
      }
    });
    const rings: QueryRing[] = Array.from(
      { length: c.numLayers },
      () => createQueryRing(ctx, rows, H * D),
    );
    const release = () => {
      for (const r of rings.splice(0)) {
        ctx.release(r.queries);
        ctx.release(r.positions);
      }
    };
    try {
      cache.stepHook = {
        op: (l, _layer, q, positions, positionsOffset, m) =>
          captureQuery(ctx, { q, width: H * D, positions, positionsOffset, ring: rings[l], m }),
        multiRow: true,
        buffers: () => rings.flatMap((r) => [r.queries, r.positions]),
        release,
      };
      await sources.forward(cache, ids, n);
      cache.stepHook = undefined;
      const [start, end] = chunks[i];
      const width = end - start;
      const out = ctx.createBuffer(H * width * 4, undefined, "kvzip scores");
      try {
        for (let l = 0; l < c.numLayers; l++) {
          const layer = cache.layers[l];
          if (isQuantLayer(layer)) throw new RangeError("kvzip runs before any quantisation");
          // A sliding layer takes no rule: not scored, not in the cut (restored by the caller).
          if (cache.layerWindows[l] !== null) continue;
          // Row r sits at position n + r: ring slot (n + r) mod rows.
          const op = kvzipScores(ctx, {
            cache: layer,
            queries: rings[l].queries,
            slot0: n % rows,
            rows,
            n,
            sink: Math.min(KVZIP_SINK, start),
            start,
            end,
            numHeads: H,
            out,
            scale: attentionScale(c),
          });
          runOps(ctx, [op]);
          op.destroy();
          const perQueryHead = await ctx.readF32(out, 0, H * width);
          for (let kv = 0; kv < c.numKvHeads; kv++) {
            for (let j = 0; j < width; j++) {
              let best = 0;
              for (let h = kv * g; h < (kv + 1) * g; h++) {
                best = Math.max(best, perQueryHead[h * width + j]);
              }
              scores[l][kv][start + j] = best;
            }
          }
          cache.truncate(l, n);
        }
      } finally {
        ctx.release(out);
      }
    } finally {
      cache.stepHook = undefined;
      release();
    }
  }
}

/**
 * KVzip's scores for a plan after prefill (`PolicyExecutor`): refuses callers that cannot run the
 * model again and caches that recorded a decoding step first; the scores depend on the prompt and
 * the model only, so plans sharing a prefill reuse them through `state.memo`.
 */
export async function memoReconstruction(
  ctx: GpuContext,
  c: ModelConfig,
  state: PrefillState,
  chunk: number,
  sources: ReconstructionSources | undefined,
): Promise<Float64Array[][]> {
  if (!sources || !state.promptIds) {
    throw new UnsupportedPolicyError(
      "this caller cannot run the model again after prefill: kvzip's reconstruction needs it",
    );
  }
  if (state.cachedLength !== state.promptLength) {
    throw new UnsupportedPolicyError(
      "kvzip cannot follow a first decoding step recorded before compression (lazy(at=decode))",
    );
  }
  const key = `kvzip reconstruction, chunk ${chunk}`;
  const known = state.memo?.get(key) as Float64Array[][] | undefined;
  if (known) return known;
  const scores = await reconstructionScores(ctx, c, state.cache, state.promptIds, chunk, sources);
  state.memo?.set(key, scores);
  return scores;
}
