/**
 * The inference engine: a model loaded onto a WebGPU device, with chunked prefill and a decode
 * loop that stays on the GPU (sampling on the GPU, the sampled id feeding the next step's
 * embedding lookup there, ids read back in batches, one command encoder per batch of steps).
 *
 * @module
 */

import { acquireDevice, type GpuContext } from "../gpu/device.ts";
import { argmax } from "../gpu/kernels/argmax.ts";
import { h2oColumnSums } from "../gpu/kernels/h2oColumnSums.ts";
import { sample } from "../gpu/kernels/sample.ts";
import type { KvCacheLayer, KvDType } from "../gpu/kvCache.ts";
import { type GpuOp, sequenceOp } from "../gpu/op.ts";
import { createSamplerState, readSampledIds, type SamplerState } from "../gpu/samplerState.ts";
import { ModelError } from "../model/errors.ts";
import { loadModel } from "../model/loadModel.ts";
import { loadTokenizer, type TextTokenizer } from "../model/tokenizer.ts";
import type { ModelConfig, ModelWeights } from "../model/types.ts";
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
import { type GpuModelWeights, releaseWeights, uploadWeights } from "./gpuWeights.ts";
import { type KvReport, kvReport } from "./kvReport.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";

/** How tokens are drawn: greedy when `temperature` is 0. */
export interface SamplingConfig {
  /** 0 = greedy (argmax, lowest id on ties). */
  temperature: number;
  /** Keep the k most likely tokens (0 = off). */
  topK: number;
  /** Nucleus mass (1 = off). */
  topP: number;
  /** Seed of the sampler. */
  seed: number;
}

/** Attention probabilities recorded during prefill or the first decoding step. */
export interface Observation {
  /** Query rows recorded (the last `rows` queries). */
  rows: number;
  /** Keys per row. */
  stride: number;
  /** Per layer: `[H][rows][stride]` f32 on the GPU. */
  buffers: GPUBuffer[];
}

/** H2O's accumulated prompt attention, summed over every prompt query (see `h2oColumnSums`). */
export interface ColumnSums {
  /** Keys per head (the prompt length). */
  stride: number;
  /** Per layer: `[H][stride]` f32 on the GPU. */
  buffers: GPUBuffer[];
}

/** What the press layer sees after prefill: the cache, to score and compact. */
export interface PrefillState {
  /** The cache holding the prompt (compact it to shrink it). */
  cache: RaggedKvCache;
  /** Prompt length. */
  promptLength: number;
  /** Entries per head now: the prompt, plus the first generated token if it was observed. */
  cachedLength: number;
  /** Tokens still to be appended while decoding (room to leave per head when compacting). */
  decodeBudget: number;
  /** The last prompt queries' attention, when requested. */
  promptObservation?: Observation;
  /** The first generated token's attention over prompt + itself, when requested. */
  firstStepObservation?: Observation;
  /** Attention column sums over all prompt queries, when requested (H2O). */
  promptColumnSums?: ColumnSums;
}

/** Attention the press layer wants recorded (see {@link PrefillState}). */
export interface ObserveRequest {
  /** Last prompt queries to record (0 = none). */
  promptWindow: number;
  /** Record the first decoding step's attention (SimLayerKV measures laziness there). */
  firstStep: boolean;
  /** Accumulate every prompt query's attention per key (H2O's scores). */
  columnSums?: boolean;
}

/** One generation request. */
export interface GenerationRequest {
  /** Prompt token ids (BOS included if the model wants it). */
  promptIds: number[];
  /** Tokens to generate (≥ 0). */
  maxNewTokens: number;
  /** Sampling; greedy by default. */
  sampling?: SamplingConfig;
  /** Generation stops after any of these ids (kept in `tokens`). */
  stopIds?: number[];
  /** Prompt tokens per prefill chunk. */
  prefillChunk?: number;
  /** Tokens decoded per readback (each readback costs ≥ 10 ms in Deno). */
  readEvery?: number;
  /** Called with each batch of new ids as they are read back. */
  onTokens?: (ids: number[]) => void;
  /** Attention to record for the press layer. */
  observe?: ObserveRequest;
  /** Called after prefill, before decoding: where presses compress the cache. */
  afterPrefill?: (state: PrefillState) => Promise<void> | void;
}

/**
 * Timings of one generation. As in SnapKV and kvpress, compressing the cache is part of the
 * prefill stage: `prefillMs` runs from the start to the moment steady decoding can begin (prompt,
 * first token, a first-step observation if one was asked for, and the press), and the decode
 * rate counts only the tokens generated after that, over the time they took.
 */
export interface GenerationTiming {
  /** Prefill-stage wall time (ms): prompt, first token, observation step, press. */
  prefillMs: number;
  /** Of `prefillMs`, the time spent in `afterPrefill` (scoring, selection, compaction; GPU work included). */
  pressMs: number;
  /** Steady decoding wall time (ms), after the press. */
  decodeMs: number;
  /** Time to first token (ms): the first id read back, before the press runs. */
  ttftMs: number;
  /** Prompt tokens per second of the prefill stage. */
  prefillTokensPerSecond: number;
  /** Tokens generated after the prefill stage per second of `decodeMs` (0 when none). */
  decodeTokensPerSecond: number;
}

/** The outcome of one generation. */
export interface GenerationResult {
  /** Generated ids (a stop id, if hit, is the last one). */
  tokens: number[];
  /** Why generation ended. */
  stopReason: "stop" | "length";
  /** Timings. */
  timing: GenerationTiming;
  /** KV-cache accounting at the end of generation. */
  kv: KvReport;
}

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

/** Default prompt tokens per prefill chunk. */
export const DEFAULT_PREFILL_CHUNK = 512;
const DEFAULT_READ_EVERY = 16;

/** Options of {@link Engine.open}. */
export interface EngineOptions {
  /** KV cache element type (default f32). */
  kvDtype?: KvDType;
  /** Progress of loading (`phase`, done, total). */
  onProgress?: (phase: "read" | "upload", done: number, total: number) => void;
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

  /** Loads a Hugging Face folder onto the default WebGPU adapter. */
  static async open(dir: string, opts: EngineOptions = {}): Promise<Engine> {
    const weights = await loadModel(dir, {
      onProgress: (done, total) => opts.onProgress?.("read", done, total),
    });
    return await Engine.fromWeights(weights, await loadTokenizer(dir), opts);
  }

  /** Puts already-loaded weights (e.g. random ones for benchmarks) on the default adapter. */
  static async fromWeights(
    weights: ModelWeights,
    tokenizer: TextTokenizer | null,
    opts: EngineOptions = {},
  ): Promise<Engine> {
    const ctx = await acquireDevice({ maxBindingBytes: bindingCapFromEnv() });
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

  private checkIds(ids: number[], what: string): void {
    const V = this.config.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new ModelError(`${what}: token id ${id} is outside the vocabulary (0..${V - 1})`);
      }
    }
  }

  /**
   * Runs the prompt through the model in chunks, appending to `cache`. With `logits: "all"`,
   * returns every position's logits (read back per chunk; for tests and perplexity); otherwise
   * leaves the last position's logits in `acts.logits` row 0. With `observe`, the last chunk
   * (made at least that long) records its last rows' attention; with `columnSums`, every chunk
   * adds its queries' attention to them. A cache with a step hook (H2O) is fed one token per
   * chunk, each recording the hook.
   */
  async prefill(
    cache: RaggedKvCache,
    ids: number[],
    chunk: number,
    logits: "all" | "last",
    observe?: Observation,
    firstPosition = 0,
    columnSums?: ColumnSums,
  ): Promise<{ acts: Activations; logits: Float32Array[] }> {
    const starts = chunkStarts(ids.length, chunk, observe?.rows ?? 0);
    const rows = Math.max(1, ...starts.map((s, i) => (starts[i + 1] ?? ids.length) - s));
    if (cache.stepHook && rows > 1) {
      throw new ModelError(
        `this cache's policy (H2O) evicts at every token: feed it one token per chunk, not ${rows}`,
      );
    }
    const acts = createActivations(this.ctx, this.gpu, rows, logits === "all" ? rows : 1);
    const out: Float32Array[] = [];
    const prepared = new Map<string, Step[]>();
    try {
      for (let i = 0; i < starts.length; i++) {
        const start = starts[i];
        const m = (starts[i + 1] ?? ids.length) - start;
        const last = i === starts.length - 1;
        const positions = Uint32Array.from({ length: m }, (_, j) => firstPosition + start + j);
        this.ctx.device.queue.writeBuffer(
          acts.ids,
          0,
          Uint32Array.from(ids.slice(start, start + m)),
        );
        this.ctx.device.queue.writeBuffer(acts.positions, 0, positions);
        const key = `${m}:${last && observe ? "observe" : ""}`;
        let steps = prepared.get(key);
        if (!steps) {
          steps = forwardSteps(this.ctx, this.gpu, cache.layers, acts, {
            m,
            mode: "prefill",
            logits,
            source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
            observation: last && observe
              ? { window: observe.rows, stride: observe.stride, buffers: observe.buffers }
              : undefined,
            afterAttention: (l, layer, a, source) =>
              this.afterAttention(cache, l, layer, a, source, m, columnSums),
          });
          prepared.set(key, steps);
        }
        const encoder = this.ctx.device.createCommandEncoder();
        encodeSteps(encoder, steps);
        this.ctx.device.queue.submit([encoder.finish()]);
        if (logits === "all") {
          const V = this.config.vocabSize;
          const flat = await this.ctx.readF32(acts.logits, 0, m * V);
          for (let j = 0; j < m; j++) out.push(flat.slice(j * V, (j + 1) * V));
        }
      }
    } catch (e) {
      releaseActivations(this.ctx, acts);
      throw e;
    } finally {
      for (const steps of prepared.values()) destroySteps(steps);
    }
    return { acts, logits: out };
  }

  /** The per-layer work recorded after attention: column sums and the cache's step hook. */
  private afterAttention(
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
      ops.push(h2oColumnSums(this.ctx, {
        cache: layer,
        q: acts.q,
        m,
        numHeads: this.config.numHeads,
        sums: columnSums.buffers[l],
        stride: columnSums.stride,
      }));
    }
    const step = cache.stepHook?.op(l, layer, acts.q, source.positions, source.positionsOffset);
    if (step) ops.push(step);
    return ops.length ? sequenceOp("afterAttention", ops) : undefined;
  }

  /** Logits at every prompt position with the full cache (a test and perplexity helper). */
  async promptLogits(ids: number[], chunk = DEFAULT_PREFILL_CHUNK): Promise<Float32Array[]> {
    this.checkIds(ids, "prompt");
    const cache = new RaggedKvCache(this.ctx, this.config, Math.max(1, ids.length), this.kvDtype);
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
    const chunk = Math.max(1, req.prefillChunk ?? DEFAULT_PREFILL_CHUNK);
    const observeWindow = Math.min(N, req.observe?.promptWindow ?? 0);
    const observeFirst = (req.observe?.firstStep ?? false) && maxNew >= 2;

    const t0 = performance.now();
    const cache = new RaggedKvCache(this.ctx, c, N + maxNew, this.kvDtype);
    const sampler = createSamplerState(this.ctx, {
      token: req.promptIds[N - 1],
      position: N - 1,
      idsCapacity: Math.max(1, maxNew),
    });
    const promptObs = observeWindow > 0 ? this.createObservation(observeWindow, N) : undefined;
    const firstObs = observeFirst ? this.createObservation(1, N + 1) : undefined;
    const columnSums: ColumnSums | undefined = req.observe?.columnSums
      ? { stride: N, buffers: this.createObservation(1, N).buffers }
      : undefined;
    const owned: Step[] = [];
    let acts: Activations | undefined;
    let decodeActs: Activations | undefined;
    try {
      const tokens: number[] = [];
      let stopReason: "stop" | "length" = "length";
      const take = (ids: number[]) => {
        const stop = ids.findIndex((id) => stopIds.has(id));
        if (stop >= 0) {
          ids = ids.slice(0, stop + 1);
          stopReason = "stop";
        }
        tokens.push(...ids);
        req.onTokens?.(ids);
      };
      acts = (await this.prefill(cache, req.promptIds, chunk, "last", promptObs, 0, columnSums))
        .acts;
      if (maxNew > 0) {
        const pick = this.sampleOp(acts, sampler, sampling);
        owned.push(pick);
        this.submit([pick]);
        take(await readSampledIds(this.ctx, sampler, 0, 1));
      } else {
        await this.ctx.sync();
      }
      const ttftMs = performance.now() - t0;
      releaseActivations(this.ctx, acts);
      acts = undefined;

      let fed = 0; // decode steps run (each appends one entry per head)
      decodeActs = createActivations(this.ctx, this.gpu, 1, 1);
      const source = {
        ids: sampler.state,
        idsOffset: 0,
        positions: sampler.state,
        positionsOffset: 2,
      };
      if (firstObs && stopReason === "length") {
        // The first decoding step, recording its attention (e.g. for SimLayerKV).
        const probe = forwardSteps(this.ctx, this.gpu, cache.layers, decodeActs, {
          m: 1,
          mode: "prefill",
          logits: "last",
          source,
          observation: { window: 1, stride: N + 1, buffers: firstObs.buffers },
        });
        probe.push(this.sampleOp(decodeActs, sampler, sampling));
        owned.push(...probe);
        this.submit(probe);
        fed++;
        take(await readSampledIds(this.ctx, sampler, 1, 2));
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
      });
      if (req.afterPrefill) await this.ctx.sync(); // the press's GPU work belongs to prefill
      const t1 = performance.now();
      const pressMs = req.afterPrefill ? t1 - tPress : 0;
      const prefillMs = t1 - t0;
      const beforeLoop = tokens.length;
      if (stopReason === "length" && tokens.length < maxNew) {
        const steps = forwardSteps(this.ctx, this.gpu, cache.layers, decodeActs, {
          m: 1,
          mode: "decode",
          logits: "last",
          source,
          afterAttention: (l, layer, a, src) => this.afterAttention(cache, l, layer, a, src, 1),
        });
        steps.push(this.sampleOp(decodeActs, sampler, sampling));
        owned.push(...steps);
        while (tokens.length < maxNew && stopReason === "length") {
          const batch = Math.min(readEvery, maxNew - tokens.length);
          const encoder = this.ctx.device.createCommandEncoder();
          for (let i = 0; i < batch; i++) encodeSteps(encoder, steps);
          this.ctx.device.queue.submit([encoder.finish()]);
          fed += batch;
          take(await readSampledIds(this.ctx, sampler, tokens.length, tokens.length + batch));
        }
      }
      const decodeMs = performance.now() - t1;
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
      };
    } finally {
      destroySteps(owned);
      if (acts) releaseActivations(this.ctx, acts);
      if (decodeActs) releaseActivations(this.ctx, decodeActs);
      const observed = [promptObs, firstObs, columnSums].flatMap((o) => o?.buffers ?? []);
      for (const b of observed) {
        this.ctx.release(b);
      }
      this.ctx.release(sampler.state);
      this.ctx.release(sampler.ids);
      cache.release();
    }
  }

  private submit(steps: Step[]): void {
    const encoder = this.ctx.device.createCommandEncoder();
    encodeSteps(encoder, steps);
    this.ctx.device.queue.submit([encoder.finish()]);
  }

  private sampleOp(acts: Activations, sampler: SamplerState, s: SamplingConfig): GpuOp {
    const V = this.config.vocabSize;
    if (s.temperature <= 0) return argmax(this.ctx, { logits: acts.logits, vocabSize: V, sampler });
    return sample(this.ctx, {
      logits: acts.logits,
      vocabSize: V,
      sampler,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      seed: s.seed,
    });
  }
}
