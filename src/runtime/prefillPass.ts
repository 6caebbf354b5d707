/**
 * Chunked prefill: the prompt goes through the forward pass in chunks, each appending its keys
 * and values to the cache, with the per-layer work the press layer asked for recorded after
 * attention (H2O's column sums, a cache's step hook). Gemma 3's sliding layers roll between
 * chunks when their allocation is full (`slidingLayers.ts`).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { h2oColumnSums } from "../gpu/kernels/h2oColumnSums.ts";
import type { KvCacheLayer } from "../gpu/kvCache.ts";
import { type GpuOp, sequenceOp } from "../gpu/op.ts";
import { ModelError } from "../model/errors.ts";
import type { ModelConfig } from "../model/types.ts";
import { attentionScale } from "../model/attentionScale.ts";
import {
  type Activations,
  createActivations,
  destroySteps,
  encodeSteps,
  forwardSteps,
  releaseActivations,
  type Step,
  type TokenSource,
} from "./forwardPass.ts";
import type { ColumnSums, Observation } from "./generationTypes.ts";
import type { GpuModelWeights } from "./gpuWeights.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";
import { rollSlidingLayers } from "./slidingLayers.ts";

/**
 * Chunk start offsets for a prompt of `n` tokens: chunks of `chunk` tokens, except that the last
 * chunk is made at least `minLast` long (so an observation window lies in one chunk).
 */
export function chunkStarts(n: number, chunk: number, minLast: number): number[] {
  const starts: number[] = [];
  for (let s = 0; s < n; s += chunk) starts.push(s);
  if (starts.length === 0) return [0];
  const lastStart = Math.max(0, n - Math.max(minLast, n - starts[starts.length - 1]));
  while (starts.length && starts[starts.length - 1] >= lastStart) starts.pop();
  starts.push(lastStart);
  return starts;
}

/**
 * The most rows one pass of {@link prefillChunks} appends with chunks of `chunk` and an observation
 * window of `observeRows`: a chunk, or the last chunk stretched to hold the window.
 */
export function widestPass(chunk: number, observeRows: number): number {
  return Math.max(chunk, observeRows);
}

/** What {@link prefillChunks} runs. */
export interface PrefillRequest {
  /** Token ids to feed. */
  ids: number[];
  /** Tokens per chunk. */
  chunk: number;
  /** Every position's logits (`all`, read back per chunk) or only the last (`last`). */
  logits: "all" | "last";
  /** Record the last chunk's last `rows` queries' attention (the chunk is made that long). */
  observe?: Observation;
  /** Position of `ids[0]` (default 0). */
  firstPosition?: number;
  /** Add every chunk's attention columns to these sums (H2O). */
  columnSums?: ColumnSums;
}

/**
 * Runs `req.ids` through the model in chunks, appending to `cache`. Returns the activations
 * (the last position's logits in `acts.logits` row 0; the caller releases them) and, with `logits: "all"`, every position's logits. A cache with a step hook (H2O) must be fed one token
 * per chunk, each recording the hook.
 */
export async function prefillChunks(
  ctx: GpuContext,
  model: GpuModelWeights,
  cache: RaggedKvCache,
  req: PrefillRequest,
): Promise<{ acts: Activations; logits: Float32Array[] }> {
  const { ids, observe, columnSums } = req;
  const firstPosition = req.firstPosition ?? 0;
  // Every row's logits live in one binding: a large vocabulary (Gemma 3's 262,144 entries, 1 MiB
  // a row) takes fewer rows per chunk.
  const logitRows = Math.floor(ctx.maxBindingBytes / (model.config.vocabSize * 4));
  const chunk = req.logits === "all" ? Math.max(1, Math.min(req.chunk, logitRows)) : req.chunk;
  const starts = chunkStarts(
    ids.length,
    chunk,
    observe?.rows ?? 0,
  );
  const rows = Math.max(1, ...starts.map((s, i) => (starts[i + 1] ?? ids.length) - s));
  if (cache.stepHook && !cache.stepHook.multiRow && rows > 1) {
    throw new ModelError(
      `this cache's policy (H2O) evicts at every token: feed it one token per chunk, not ${rows}`,
    );
  }
  const acts = createActivations(ctx, model, rows, req.logits === "all" ? rows : 1);
  const out: Float32Array[] = [];
  const prepared = new Map<string, Step[]>();
  try {
    for (let i = 0; i < starts.length; i++) {
      const start = starts[i];
      const m = (starts[i + 1] ?? ids.length) - start;
      const last = i === starts.length - 1;
      const positions = Uint32Array.from({ length: m }, (_, j) => firstPosition + start + j);
      rollSlidingLayers(ctx, cache, firstPosition + start, m); // Gemma 3's, when full
      ctx.device.queue.writeBuffer(acts.ids, 0, Uint32Array.from(ids.slice(start, start + m)));
      ctx.device.queue.writeBuffer(acts.positions, 0, positions);
      const key = `${m}:${last && observe ? "observe" : ""}`;
      let steps = prepared.get(key);
      if (!steps) {
        steps = forwardSteps(ctx, model, cache.layers, acts, {
          m,
          mode: "prefill",
          logits: req.logits,
          source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
          observation: last && observe
            ? { window: observe.rows, stride: observe.stride, buffers: observe.buffers }
            : undefined,
          afterAttention: (l, layer, a, source) =>
            afterAttentionOp(ctx, model.config, cache, l, layer, a, source, m, columnSums),
        });
        prepared.set(key, steps);
        await ctx.compilePending(); // first run: compile new kernels one by one, visibly
      }
      const encoder = ctx.device.createCommandEncoder();
      encodeSteps(encoder, steps);
      ctx.device.queue.submit([encoder.finish()]);
      if (req.logits === "all") {
        const V = model.config.vocabSize;
        const flat = await ctx.readF32(acts.logits, 0, m * V);
        for (let j = 0; j < m; j++) out.push(flat.slice(j * V, (j + 1) * V));
      }
    }
  } catch (e) {
    releaseActivations(ctx, acts);
    throw e;
  } finally {
    for (const steps of prepared.values()) destroySteps(steps);
  }
  return { acts, logits: out };
}

/** The per-layer work recorded after attention: H2O's column sums and the cache's step hook. */
export function afterAttentionOp(
  ctx: GpuContext,
  config: ModelConfig,
  cache: RaggedKvCache,
  l: number,
  layer: KvCacheLayer,
  acts: Activations,
  source: TokenSource,
  m: number,
  columnSums?: ColumnSums,
): GpuOp | undefined {
  const ops: GpuOp[] = [];
  if (columnSums) {
    ops.push(h2oColumnSums(ctx, {
      cache: layer,
      q: acts.q,
      m,
      numHeads: config.numHeads,
      scale: attentionScale(config),
      sums: columnSums.buffers[l],
      stride: columnSums.stride,
    }));
  }
  const step = cache.stepHook?.op(l, layer, acts.q, source.positions, source.positionsOffset, m);
  if (step) ops.push(step);
  return ops.length ? sequenceOp("afterAttention", ops) : undefined;
}
