/**
 * The inference engine: a model loaded onto a WebGPU device, with chunked prefill and a decode
 * loop that stays on the GPU (sampling on the GPU, the sampled id feeding the next step's
 * embedding lookup there, ids read back in batches, one command encoder per batch of steps).
 *
 * @module
 */

import {
  type QueryStatisticsRecorder,
  startQueryStatistics,
  stopQueryStatistics,
} from "./queryStatistics.ts";
import { acquireDevice, type GpuContext } from "../gpu/device.ts";
import type { KernelChoice } from "../gpu/kernelChoice.ts";
import type { KvDType } from "../gpu/kvCache.ts";
import { createSamplerState, readSampledIds } from "../gpu/samplerState.ts";
import type { ChatTemplate } from "../model/chatTemplate.ts";
import { ModelError } from "../model/errors.ts";
import { openModel } from "../model/openModel.ts";
import type { TextTokenizer } from "../model/tokenizer.ts";
import type { ModelConfig, ModelWeights } from "../model/types.ts";
import {
  type Activations,
  createActivations,
  destroySteps,
  forwardSteps,
  releaseActivations,
  type Step,
} from "./forwardPass.ts";
import { decodeRest, decodeStepOps, sampleOp, submitSteps, TokenSink } from "./decodeLoop.ts";
import { type GpuModelWeights, releaseWeights, uploadWeights } from "./gpuWeights.ts";
import { kvReport } from "./kvReport.ts";
import { prefillChunks, widestPass } from "./prefillPass.ts";
import { chunkedCapacity, prefillChunked } from "./chunkedPrefill.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";
import { NO_OBSERVATION, prefillRecorders, usableShared } from "./sharedPrefill.ts";
import { GateTurn } from "./phaseGate.ts";

export { chunkStarts } from "./prefillPass.ts";
import { DEFAULT_PREFILL_CHUNK, DEFAULT_READ_EVERY, defaultPrefillChunk } from "./workSizes.ts";
import { boundSlidingLayers, rollSlidingLayers } from "./slidingLayers.ts";

import type {
  ColumnSums,
  GenerationRequest,
  GenerationResult,
  Observation,
  SamplingConfig,
} from "./generationTypes.ts";

export type {
  ColumnSums,
  GenerationRequest,
  GenerationResult,
  GenerationTiming,
  Observation,
  ObserveRequest,
  PrefillState,
  SamplingConfig,
} from "./generationTypes.ts";

/**
 * `KVPOLICY_MAX_BINDING_BYTES` caps the bytes bound per buffer below the device's limit (to
 * test, or to mimic a smaller GPU); unset or unreadable means the device's own limit.
 */
function bindingCapFromEnv(): number | undefined {
  let text: string | undefined;
  try {
    text = Deno.env.get("KVPOLICY_MAX_BINDING_BYTES");
  } catch {
    return undefined; // no --allow-env
  }
  const n = Number(text);
  return text && Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Options of {@link Engine.open}. */
export interface EngineOptions {
  /** KV cache element type (default f32). */
  kvDtype?: KvDType;
  /** Progress of loading (`phase`, done, total). */
  onProgress?: (phase: "read" | "upload", done: number, total: number) => void;
  /** Kernel choices over the adapter's defaults and `KVPOLICY_KERNELS` (see `kernelChoice.ts`). */
  kernels?: Partial<KernelChoice>;
  /** Progress of compiling GPU kernels ahead of their first use (see `GpuContext.compilePending`). */
  onCompile?: (done: number, total: number, ms: number) => void;
}

/** A model on a GPU, ready to generate. */
export class Engine {
  private constructor(
    /** The device. */
    readonly ctx: GpuContext,
    /** The checkpoint as loaded (host copy). */
    readonly weights: ModelWeights,
    /** Weights on the GPU. */
    readonly gpu: GpuModelWeights,
    /** The tokenizer, or null when the folder has none. */
    readonly tokenizer: TextTokenizer | null,
    /** KV element type. */
    readonly kvDtype: KvDType,
  ) {}

  /** Milliseconds spent reading (and dequantizing) the checkpoint, when opened from disk. */
  loadMs: number | null = null;

  /** The checkpoint's chat template, when opened from disk and it has one. */
  chat: ChatTemplate | null = null;

  /**
   * Loads a model onto the default WebGPU adapter: a Hugging Face folder, a GGUF file, or a
   * folder holding one GGUF file (see `openModel`).
   */
  static async open(path: string, opts: EngineOptions = {}): Promise<Engine> {
    const opened = await openModel(path, {
      onProgress: (done, total) => opts.onProgress?.("read", done, total),
    });
    const engine = await Engine.fromWeights(opened.weights, opened.tokenizer, opts);
    engine.loadMs = opened.loadMs;
    engine.chat = opened.chat;
    return engine;
  }

  /** Puts already-loaded weights (e.g. random ones for benchmarks) on the default adapter. */
  static async fromWeights(
    weights: ModelWeights,
    tokenizer: TextTokenizer | null,
    opts: EngineOptions = {},
  ): Promise<Engine> {
    const ctx = await acquireDevice({
      maxBindingBytes: bindingCapFromEnv(),
      kernels: opts.kernels,
    });
    ctx.onCompileProgress = opts.onCompile ?? null;
    try {
      const gpu = uploadWeights(ctx, weights, (d, t) => opts.onProgress?.("upload", d, t));
      const engine = new Engine(ctx, weights, gpu, tokenizer, opts.kvDtype ?? "f32");
      await engine.warmUp();
      return engine;
    } catch (e) {
      ctx.destroy();
      throw e;
    }
  }

  /** Compiles every pipeline once (shader compilation is lazy), so timings measure compute. */
  async warmUp(): Promise<void> {
    const id = this.config.bosTokenId ?? 0;
    await this.generate({ promptIds: [id, id], maxNewTokens: 2, readEvery: 1, prefillChunk: 1 });
    await this.generate({ promptIds: [id, id], maxNewTokens: 1 });
  }

  /** The model's config. */
  get config(): ModelConfig {
    return this.weights.config;
  }

  /** Frees the device and everything on it. */
  close(): void {
    releaseWeights(this.ctx, this.gpu);
    this.ctx.destroy();
  }

  /** Throws {@link ModelError} naming `what` when an id lies outside the vocabulary. */
  checkIds(ids: number[], what: string): void {
    const V = this.config.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new ModelError(`${what}: token id ${id} is outside the vocabulary (0..${V - 1})`);
      }
    }
  }

  /**
   * Runs the prompt through the model in chunks, appending to `cache`; see {@link prefillChunks}
   * (`logits: "all"` returns every position's logits, `observe` records the last rows'
   * attention, `columnSums` accumulates H2O's scores).
   */
  prefill(
    cache: RaggedKvCache,
    ids: number[],
    chunk: number,
    logits: "all" | "last",
    observe?: Observation,
    firstPosition = 0,
    columnSums?: ColumnSums,
  ): Promise<{ acts: Activations; logits: Float32Array[] }> {
    return prefillChunks(this.ctx, this.gpu, cache, {
      ids,
      chunk,
      logits,
      observe,
      firstPosition,
      columnSums,
    });
  }

  /** Prompt tokens per prefill chunk when a request names none ({@link defaultPrefillChunk}). */
  get prefillChunk(): number {
    return defaultPrefillChunk(this.ctx, this.config);
  }

  /**
   * Logits at every prompt position with the full cache (a test and perplexity helper). Chunks
   * default to 512 tokens on every adapter, fewer when `chunk × vocab` f32 logits would exceed a
   * storage binding (128 rows of Gemma 3's 262K vocabulary in 128 MiB); each chunk's logits are
   * read back whole.
   */
  async promptLogits(ids: number[], chunk = DEFAULT_PREFILL_CHUNK): Promise<Float32Array[]> {
    this.checkIds(ids, "prompt");
    const cache = new RaggedKvCache(
      this.ctx,
      this.config,
      Math.max(1, ids.length),
      this.kvDtype,
      chunk,
    );
    try {
      const { acts, logits } = await this.prefill(cache, ids, chunk, "all");
      releaseActivations(this.ctx, acts);
      return logits;
    } finally {
      cache.release();
    }
  }

  /** Allocates per-layer buffers to record `rows` query rows over `stride` keys. */
  createObservation(rows: number, stride: number): Observation {
    const c = this.config;
    const bytes = c.numHeads * rows * stride * 4;
    const buffers = this.gpu.layers.map((_, l) =>
      this.ctx.createBuffer(bytes, undefined, `obs ${l}`)
    );
    return { rows, stride, buffers };
  }

  /** Generates from a prompt; see {@link GenerationRequest}. */
  async generate(req: GenerationRequest): Promise<GenerationResult> {
    const c = this.config;
    const N = req.promptIds.length;
    const maxNew = req.maxNewTokens;
    if (N === 0) throw new ModelError("the prompt is empty: give at least one token");
    if (!Number.isInteger(maxNew) || maxNew < 0) {
      throw new ModelError(`max new tokens must be a non-negative integer, not ${maxNew}`);
    }
    if (N + maxNew > c.maxPositions) {
      throw new ModelError(
        `prompt (${N} tokens) + ${maxNew} new tokens exceed the model's context of ${c.maxPositions} (max_position_embeddings)`,
      );
    }
    if (c.slidingWindow !== undefined && N + maxNew > c.slidingWindow) {
      throw new ModelError(
        `sequences longer than the model's sliding_window (${c.slidingWindow}) are not supported yet`,
      );
    }
    this.checkIds(req.promptIds, "prompt");
    const sampling = req.sampling ?? { temperature: 0, topK: 0, topP: 1, seed: 0 };
    const stopIds = new Set(req.stopIds ?? []);
    const readEvery = Math.max(1, req.readEvery ?? DEFAULT_READ_EVERY);
    const chunk = Math.max(1, req.prefillChunk ?? this.prefillChunk);
    // With a gate, the prefill stage and each decode batch are phases run in turns (`phaseGate.ts`);
    // the clocks run only while this generation holds the gate.
    const turn = new GateTurn(req.gate);
    try {
      return await this.#run(req, turn, { sampling, stopIds, readEvery, chunk });
    } finally {
      turn.give();
    }
  }

  async #run(
    req: GenerationRequest,
    turn: GateTurn,
    o: { sampling: SamplingConfig; stopIds: Set<number>; readEvery: number; chunk: number },
  ): Promise<GenerationResult> {
    const c = this.config;
    const N = req.promptIds.length;
    const maxNew = req.maxNewTokens;
    const { sampling, stopIds, readEvery, chunk } = o;
    const observeFirst = (req.observe?.firstStep ?? false) && maxNew >= 2;
    await turn.take();
    const memory = this.ctx.watchMemory();
    const shared = req.shared;
    const chunked = shared ? undefined : await req.chunkedPrefill?.(N);
    if (shared && !usableShared(shared, req.promptIds, chunk, req.observe ?? NO_OBSERVATION)) {
      throw new Error("shared prefill: it does not hold this prompt or what the plan observes");
    }
    const t0 = performance.now();
    const room = Math.max(maxNew, req.prefillRoom?.(N) ?? 0);
    const capacity = chunked ? chunkedCapacity(N, chunked, room) : N + room;
    const passRows = widestPass(chunk, req.observe?.promptWindow ?? 0);
    const cache = new RaggedKvCache(this.ctx, c, capacity, this.kvDtype, passRows);
    const sampler = createSamplerState(this.ctx, {
      token: req.promptIds[N - 1],
      position: N - 1,
      idsCapacity: Math.max(1, maxNew),
    });
    const recorders = prefillRecorders(this, shared, req.observe, N);
    const { observation: promptObs, columnSums } = recorders;
    const firstObs = observeFirst ? this.createObservation(1, N + 1) : undefined;
    const owned: Step[] = [];
    let acts: Activations | undefined;
    let decodeActs: Activations | undefined;
    let stats: QueryStatisticsRecorder | undefined;
    try {
      const sink = new TokenSink(stopIds, req.onTokens);
      if (shared) cache.copyPrefixFrom(shared.cache, N);
      else stats = startQueryStatistics(this.ctx, this.gpu, cache, req.observe);
      acts = shared ? shared.acts : chunked
        ? await prefillChunked(
          this.prefill.bind(this),
          this.ctx,
          cache,
          req.promptIds,
          chunked,
          chunk,
        )
        : (await this.prefill(cache, req.promptIds, chunk, "last", promptObs, 0, columnSums)).acts;
      stopQueryStatistics(stats, cache, N);
      if (maxNew > 0) {
        const pick = sampleOp(this.ctx, c, acts, sampler, sampling);
        owned.push(pick);
        submitSteps(this.ctx, [pick]);
        sink.take(await readSampledIds(this.ctx, sampler, 0, 1));
      } else {
        await this.ctx.sync();
      }
      const ttftMs = performance.now() - t0;
      if (!shared) releaseActivations(this.ctx, acts);
      acts = undefined;

      let fed = 0; // decode steps run (each appends one entry per head)
      decodeActs = createActivations(this.ctx, this.gpu, 1, 1);
      if (firstObs && sink.stopReason === "length") {
        // The first decoding step, recording its attention (e.g. for SimLayerKV).
        rollSlidingLayers(this.ctx, cache, N, 1);
        const probe = forwardSteps(this.ctx, this.gpu, cache.layers, decodeActs, {
          m: 1,
          mode: "prefill",
          logits: "last",
          source: {
            ids: sampler.state,
            idsOffset: 0,
            positions: sampler.state,
            positionsOffset: 2,
          },
          observation: { window: 1, stride: N + 1, buffers: firstObs.buffers },
        });
        probe.push(sampleOp(this.ctx, c, decodeActs, sampler, sampling));
        owned.push(...probe);
        submitSteps(this.ctx, probe);
        fed++;
        sink.take(await readSampledIds(this.ctx, sampler, 1, 2));
      }
      const tPress = performance.now();
      await req.afterPrefill?.({
        cache,
        promptLength: N,
        cachedLength: N + fed,
        decodeBudget: Math.max(0, maxNew - 1 - fed),
        promptObservation: promptObs,
        firstStepObservation: fed > 0 ? firstObs : undefined,
        promptColumnSums: columnSums,
        queryStatistics: recorders.queryStatistics ?? stats,
        promptIds: req.promptIds,
        memo: shared?.memo,
      });
      stats?.release();
      boundSlidingLayers(cache, N + fed, Math.max(0, maxNew - 1 - fed));
      if (req.afterPrefill) await this.ctx.sync(); // the press's GPU work belongs to prefill
      const t1 = performance.now();
      const pressMs = req.afterPrefill ? t1 - tPress : 0;
      const prefillMs = t1 - t0;
      const beforeLoop = sink.tokens.length;
      let decodeMs = 0;
      if (sink.wants(maxNew)) {
        turn.give(); // back in the queue, behind the others' prefills
        await turn.take();
        const tBuild = performance.now();
        const steps = decodeStepOps(this.ctx, this.gpu, cache, decodeActs, sampler, sampling);
        owned.push(...steps);
        const tCompile = performance.now();
        await this.ctx.compilePending(); // first run: compile new kernels one by one, visibly
        // decode time counts building the steps, not compiling their kernels
        const startedAt = performance.now() - (tCompile - tBuild);
        const recompress = req.duringDecode?.();
        const before = fed;
        const rest = await decodeRest(this.ctx, {
          steps,
          sampler,
          sink,
          maxNew,
          readEvery,
          turn,
          startedAt,
          interrupt: recompress && {
            every: recompress.every,
            run: async (done) => {
              // The next token's position, and the steps still to come after it.
              await recompress.run(cache, N + before + done, maxNew - 1 - before - done);
              const next = decodeStepOps(this.ctx, this.gpu, cache, decodeActs!, sampler, sampling);
              owned.push(...next);
              await this.ctx.compilePending();
              return next;
            },
          },
        });
        decodeMs = rest.decodeMs;
        fed += rest.steps;
      }
      const { tokens, stopReason } = sink;
      await turn.take();
      const lengths = await cache.lengths();
      const decoded = tokens.length - beforeLoop;
      return {
        tokens,
        stopReason,
        timing: {
          prefillMs,
          pressMs,
          decodeMs,
          ttftMs: maxNew > 0 ? ttftMs : 0,
          prefillTokensPerSecond: N / (prefillMs / 1000),
          decodeTokensPerSecond: decoded > 0 ? decoded / (decodeMs / 1000) : 0,
        },
        kv: kvReport(cache, lengths, N + fed),
        deviceMemory: { peakBytes: memory.peak, weightBytes: this.gpu.bytes },
      };
    } finally {
      memory.stop();
      destroySteps(owned);
      stats?.release();
      if (acts && !shared) releaseActivations(this.ctx, acts);
      if (decodeActs) releaseActivations(this.ctx, decodeActs);
      const observed = (recorders.owned ? [promptObs, firstObs, columnSums] : [firstObs])
        .flatMap((o) => o?.buffers ?? []);
      for (const b of observed) {
        this.ctx.release(b);
      }
      this.ctx.release(sampler.state);
      this.ctx.release(sampler.ids);
      cache.release();
    }
  }
}
