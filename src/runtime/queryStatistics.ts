/**
 * The prompt's query statistics for Expected Attention (`needs.queryStatistics`): a step hook
 * that, during prefill, accumulates per layer and query head the sums of the pre-RoPE queries and
 * of their outer products on the GPU (`src/gpu/kernels/queryStatistics.ts`), and the read-back
 * that turns them into each head's mean and population covariance, in float64.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { queryStatistics } from "../gpu/kernels/queryStatistics.ts";
import type { ModelConfig } from "../model/types.ts";
import type { QueryStatistics } from "../plugins/press.ts";
import type { RaggedKvCache, StepHook } from "./raggedKvCache.ts";
import type { ObserveRequest } from "./generationTypes.ts";
import type { GpuModelWeights } from "./gpuWeights.ts";
import { bothHooks } from "./decodingRecompress.ts";

/** The accumulation of every layer's statistics during one prefill. */
export class QueryStatisticsRecorder {
  readonly #sums: GPUBuffer[];
  readonly #squares: GPUBuffer[];
  #counted = 0;

  /** Allocates zeroed sums for every layer; `sink`: positions below it are not counted. */
  constructor(
    private ctx: GpuContext,
    private config: ModelConfig,
    private invFreq: GPUBuffer,
    readonly sink: number,
  ) {
    const { numLayers, numHeads: H, headDim: D } = config;
    this.#sums = Array.from(
      { length: numLayers },
      (_, l) => ctx.upload(new Float32Array(H * D), undefined, `query sums ${l}`),
    );
    this.#squares = Array.from(
      { length: numLayers },
      (_, l) => ctx.upload(new Float32Array(H * D * D), undefined, `query squares ${l}`),
    );
  }

  /** The hook to install on the cache before prefill (every pass of the prompt is counted). */
  stepHook(): StepHook {
    const c = this.config;
    return {
      op: (l, _layer, q, positions, positionsOffset, rows) =>
        queryStatistics(this.ctx, {
          q,
          positions,
          positionsOffset,
          invFreq: this.invFreq,
          sum: this.#sums[l],
          sq: this.#squares[l],
          m: rows,
          numHeads: c.numHeads,
          headDim: c.headDim,
          sink: this.sink,
        }),
      multiRow: true,
      buffers: () => [...this.#sums, ...this.#squares],
      release: () => this.release(),
    };
  }

  /** Notes that the prompt of `promptLength` tokens (positions 0 …) has been prefilled. */
  finish(promptLength: number): void {
    this.#counted = Math.max(0, promptLength - this.sink);
  }

  /** Reads layer `l`'s sums back and returns its statistics. */
  async read(l: number): Promise<QueryStatistics> {
    const { numHeads: H, headDim: D } = this.config;
    const n = this.#counted;
    if (n === 0) {
      // A prompt no longer than the sink: nothing counted (the press keeps such prompts whole).
      const zeros = (size: number) => Array.from({ length: H }, () => new Float64Array(size));
      return {
        count: 0,
        mean: zeros(D),
        covariance: zeros(D * D),
        invFreq: this.config.ropeInvFreq,
      };
    }
    const sums = await this.ctx.readF32(this.#sums[l], 0, H * D);
    const squares = await this.ctx.readF32(this.#squares[l], 0, H * D * D);
    const mean: Float64Array[] = [];
    const covariance: Float64Array[] = [];
    for (let h = 0; h < H; h++) {
      const mu = Float64Array.from({ length: D }, (_, e) => sums[h * D + e] / n);
      const cov = new Float64Array(D * D);
      for (let e = 0; e < D; e++) {
        for (let f = 0; f < D; f++) {
          cov[e * D + f] = squares[(h * D + e) * D + f] / n - mu[e] * mu[f];
        }
      }
      mean.push(mu);
      covariance.push(cov);
    }
    return { count: n, mean, covariance, invFreq: this.config.ropeInvFreq };
  }

  /** Frees the sums. */
  release(): void {
    for (const b of [...this.#sums, ...this.#squares]) this.ctx.release(b);
    this.#sums.length = 0;
    this.#squares.length = 0;
  }
}

/**
 * When `observe` asks for query statistics: a recorder whose hook is now installed on `cache`, to
 * count the prompt's prefill passes; call {@link stopQueryStatistics} right after them.
 */
export function startQueryStatistics(
  ctx: GpuContext,
  gpu: GpuModelWeights,
  cache: RaggedKvCache,
  observe: ObserveRequest | undefined,
): QueryStatisticsRecorder | undefined {
  const want = observe?.queryStatistics;
  return startQueryStatisticsSinks(ctx, gpu, cache, want ? [want.sink] : [])[0];
}

/**
 * Recorders for every sink in `sinks`, counted in the same prefill passes (a shared prefill
 * serving Expected Attention and DuoAttention's on-the-fly scores at once): their hooks are now
 * installed on `cache` as one; call {@link stopQueryStatistics} for each right after the passes.
 */
export function startQueryStatisticsSinks(
  ctx: GpuContext,
  gpu: GpuModelWeights,
  cache: RaggedKvCache,
  sinks: readonly number[],
): QueryStatisticsRecorder[] {
  if (sinks.length === 0) return [];
  if (cache.stepHook) {
    throw new RangeError("query statistics cannot be recorded beside another step hook (chunked)");
  }
  const recorders = [...new Set(sinks)].map((sink) =>
    new QueryStatisticsRecorder(ctx, gpu.config, gpu.invFreq, sink)
  );
  cache.stepHook = recorders.reduce<StepHook | undefined>(
    (hook, r) => bothHooks(hook, r.stepHook()),
    undefined,
  );
  return recorders;
}

/** Detaches the recorder's hook after the prompt's `promptLength` tokens were prefilled. */
export function stopQueryStatistics(
  recorder: QueryStatisticsRecorder | undefined,
  cache: RaggedKvCache,
  promptLength: number,
): void {
  if (!recorder) return;
  cache.stepHook = undefined; // the recorder keeps its sums until released
  recorder.finish(promptLength);
}

/**
 * The mean pre-RoPE key of each KV head of layer `l`, over the prompt's first `n` entries (still
 * at positions 0 … n − 1: before any compaction), read back and rotated back by their positions
 * in float64 (DuoAttention's on-the-fly scores).
 */
export async function meanKeysBeforeRope(
  cache: RaggedKvCache,
  config: ModelConfig,
  l: number,
  n: number,
): Promise<Float64Array[]> {
  const D = config.headDim, half = D / 2, f = config.ropeInvFreq;
  const means: Float64Array[] = [];
  for (let kv = 0; kv < config.numKvHeads; kv++) {
    const keys = await cache.readKeys(l, kv, n);
    const mean = new Float64Array(D);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < half; i++) {
        const c = Math.cos(t * f[i]), s = Math.sin(t * f[i]);
        const y1 = keys[t * D + i], y2 = keys[t * D + i + half];
        mean[i] += (y1 * c + y2 * s) / n;
        mean[i + half] += (y2 * c - y1 * s) / n;
      }
    }
    means.push(mean);
  }
  return means;
}
