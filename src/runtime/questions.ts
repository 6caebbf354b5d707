/**
 * The query-agnostic protocol of kvpress (its default, and its leaderboard's): a context is
 * prefilled and compressed once with no question in it, then each question is appended to the
 * same compressed cache and answered, and the question's and answer's entries are dropped again
 * (the cache restored from a snapshot, `cacheSnapshot.ts`) before the next question. The
 * query-aware protocol — the question inside the compressed prompt — is {@link Engine.generate}.
 *
 * When a plan acts on the cache while decoding (a rolling window, H2O, KIVI's packing, a folding
 * compensation token, StreamingLLM's re-indexed sinks), the question's tokens go through the
 * decoding path one at a time, exactly as generated tokens do, so those heads treat the question
 * as decoding, as kvpress does with a question appended after prefill. Otherwise
 * ({@link QuestionsRequest.questionInChunks}) the question is appended in prefill chunks, which
 * gives the same attention in far fewer passes. A `lazy(at=decode)` detector has no decoding step
 * before the press here and measures the context's last query instead.
 *
 * @module
 */

import type { MemoryWatch } from "../gpu/device.ts";
import type { GpuOp } from "../gpu/op.ts";
import { createSamplerState, readSampledIds } from "../gpu/samplerState.ts";
import { ModelError } from "../model/errors.ts";
import { releaseSnapshot, restoreCache, snapshotCache } from "./cacheSnapshot.ts";
import { decodeRest, decodeStepOps, sampleOp, submitSteps, TokenSink } from "./decodeLoop.ts";
import type { Engine } from "./engine.ts";
import {
  type Activations,
  createActivations,
  destroySteps,
  releaseActivations,
} from "./forwardPass.ts";
import type {
  ColumnSums,
  GenerationResult,
  GenerationTiming,
  Observation,
  ObserveRequest,
  PrefillState,
  SamplingConfig,
} from "./generationTypes.ts";
import { type KvReport, kvReport } from "./kvReport.ts";
import { GateTurn } from "./phaseGate.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";
import { widestPass } from "./prefillPass.ts";
import {
  type QueryStatisticsRecorder,
  startQueryStatistics,
  stopQueryStatistics,
} from "./queryStatistics.ts";
import { chunkedCapacity, type ChunkedPrefill, prefillChunked } from "./chunkedPrefill.ts";
import { DEFAULT_READ_EVERY } from "./workSizes.ts";
import { boundSlidingLayers } from "./slidingLayers.ts";
import {
  NO_OBSERVATION,
  prefillRecorders,
  type SharedPrefill,
  usableShared,
} from "./sharedPrefill.ts";

/** A context and the questions to answer from its compressed cache. */
export interface QuestionsRequest {
  /** Context ids (BOS first when the model wants it); compressed with no question in it. */
  contextIds: number[];
  /** Each question's ids, appended to the compressed context in turn (at least one). */
  questions: number[][];
  /** Most tokens per answer (≥ 0). */
  maxNewTokens: number;
  /** Sampling; greedy by default. */
  sampling?: SamplingConfig;
  /** An answer stops after any of these ids (kept in its tokens). */
  stopIds?: number[];
  /** Context tokens per prefill chunk. */
  prefillChunk?: number;
  /** Tokens decoded per readback. */
  readEvery?: number;
  /** Called with each batch of an answer's ids as they are read back. */
  onTokens?: (question: number, ids: number[]) => void;
  /** Attention to record for the press (the context's last queries; no decoding step). */
  observe?: ObserveRequest;
  /** Called once after the context's prefill: where presses compress the cache. */
  afterPrefill?: (state: PrefillState) => Promise<void> | void;
  /** Compression between the context's prefill chunks (see `GenerationRequest.chunkedPrefill`). */
  chunkedPrefill?: (promptLength: number) => Promise<ChunkedPrefill | undefined>;
  /** Rows the cache needs beyond the context while the press runs (`GenerationRequest`). */
  prefillRoom?: (promptLength: number) => number;
  /** The context already prefilled for several plans (see `GenerationRequest.shared`). */
  shared?: SharedPrefill;
  /**
   * Whether each question may be appended in prefill chunks: true when nothing acts on the cache
   * while decoding (`PolicyExecutor.actsWhileDecoding` is false). Default false: one token per
   * decoding step. A cache with a step hook, quantized layers or a sliding layer's ring (Gemma 3)
   * always takes one token per step.
   */
  questionInChunks?: boolean;
}

/** The compressed context and every answer given from it. */
export interface QuestionsResult {
  /** The context's stage: prefill and press times, the cache kept, the snapshot's bytes. */
  context: {
    /** Prefill wall time (press included), ms. */
    prefillMs: number;
    /** Of it, the press (scoring, selection, compaction), ms. */
    pressMs: number;
    /** The compressed context's accounting, before any question. */
    kv: KvReport;
    /** Bytes of the snapshot the answers are restored from (a second copy of the cache). */
    snapshotBytes: number;
  };
  /**
   * One result per question: `timing.prefillMs` and `ttftMs` are the question's own (its tokens
   * fed and the first answer token read), `pressMs` is 0, `kv` is the cache at the answer's end.
   */
  answers: GenerationResult[];
}

/** Answers every question of `req` from one compressed context (see the module doc). */
export async function answerQuestions(
  engine: Engine,
  req: QuestionsRequest,
): Promise<QuestionsResult> {
  const c = engine.config;
  const N = req.contextIds.length;
  const maxNew = req.maxNewTokens;
  if (N === 0) throw new ModelError("the context is empty: give at least one token");
  if (req.questions.length === 0) throw new ModelError("give at least one question");
  if (!Number.isInteger(maxNew) || maxNew < 0) {
    throw new ModelError(`max new tokens must be a non-negative integer, not ${maxNew}`);
  }
  req.questions.forEach((q, i) => {
    if (q.length === 0) throw new ModelError(`question ${i + 1} is empty`);
    engine.checkIds(q, `question ${i + 1}`);
  });
  engine.checkIds(req.contextIds, "context");
  const longest = Math.max(...req.questions.map((q) => q.length));
  const limit = Math.min(c.maxPositions, c.slidingWindow ?? Infinity);
  if (N + longest + maxNew > limit) {
    throw new ModelError(
      `the context (${N} tokens) + the longest question (${longest}) + ${maxNew} new tokens ` +
        `exceed the model's context of ${limit}`,
    );
  }
  const ctx = engine.ctx;
  const sampling = req.sampling ?? { temperature: 0, topK: 0, topP: 1, seed: 0 };
  const readEvery = Math.max(1, req.readEvery ?? DEFAULT_READ_EVERY);
  const memory = ctx.watchMemory();
  const chunk = Math.max(1, req.prefillChunk ?? engine.prefillChunk);
  const shared = req.shared;
  if (shared && !usableShared(shared, req.contextIds, chunk, req.observe ?? NO_OBSERVATION)) {
    throw new Error("shared prefill: it does not hold this context or what the plan observes");
  }
  const chunked = shared ? undefined : await req.chunkedPrefill?.(N);
  const more = Math.max(longest + maxNew, req.prefillRoom?.(N) ?? 0);
  const cache = new RaggedKvCache(
    ctx,
    c,
    chunked ? chunkedCapacity(N, chunked, more) : N + more,
    engine.kvDtype,
    widestPass(chunk, req.observe?.promptWindow ?? 0),
  );
  const recorders = prefillRecorders(engine, shared, req.observe, N);
  const { observation: obs, columnSums: sums } = recorders;
  const sampler = createSamplerState(ctx, {
    token: 0,
    position: N,
    idsCapacity: Math.max(1, maxNew),
  });
  let acts: Activations | undefined;
  let snapshot: ReturnType<typeof snapshotCache> | undefined;
  let steps: ReturnType<typeof decodeStepOps> = [];
  let stats: QueryStatisticsRecorder | undefined;
  try {
    const t0 = performance.now();
    if (shared) cache.copyPrefixFrom(shared.cache, N);
    else {
      stats = startQueryStatistics(ctx, engine.gpu, cache, req.observe);
      releaseActivations(ctx, await prefillContext(engine, cache, req, chunked, chunk, obs, sums));
      stopQueryStatistics(stats, cache, N);
    }
    const tPress = performance.now();
    await req.afterPrefill?.({
      cache,
      promptLength: N,
      cachedLength: N,
      decodeBudget: longest + Math.max(0, maxNew - 1),
      promptObservation: obs,
      promptColumnSums: sums,
      queryStatistics: recorders.queryStatistics ?? stats,
      promptIds: req.contextIds,
      memo: shared?.memo,
    });
    stats?.release();
    boundSlidingLayers(cache, N, longest + Math.max(0, maxNew - 1));
    await ctx.sync();
    const t1 = performance.now();
    const contextKv = kvReport(cache, await cache.lengths(), N);
    if (req.questions.length > 1) snapshot = snapshotCache(ctx, cache);
    acts = createActivations(ctx, engine.gpu, 1, 1);
    steps = decodeStepOps(ctx, engine.gpu, cache, acts, sampler, sampling);
    await ctx.compilePending();
    const answers: GenerationResult[] = [];
    for (const [i, question] of req.questions.entries()) {
      if (i > 0) restoreCache(ctx, cache, snapshot!);
      answers.push(
        await answerOne(engine, {
          cache,
          steps,
          sampler,
          question,
          contextLength: N,
          inChunks: (req.questionInChunks ?? false) && !cache.takesOneTokenPerStep,
          chunk,
          sampling,
          maxNew,
          readEvery,
          sink: new TokenSink(new Set(req.stopIds ?? []), (ids) => req.onTokens?.(i, ids)),
          memory,
        }),
      );
    }
    return {
      context: {
        prefillMs: t1 - t0,
        pressMs: req.afterPrefill ? t1 - tPress : 0,
        kv: contextKv,
        snapshotBytes: snapshot?.bytes ?? 0,
      },
      answers,
    };
  } finally {
    stats?.release();
    memory.stop();
    destroySteps(steps);
    if (acts) releaseActivations(ctx, acts);
    if (snapshot) releaseSnapshot(ctx, snapshot);
    if (recorders.owned) {
      for (const b of [...(obs?.buffers ?? []), ...(sums?.buffers ?? [])]) ctx.release(b);
    }
    ctx.release(sampler.state);
    ctx.release(sampler.ids);
    cache.release();
  }
}

/** Prefills the context on its own: in one piece, or compressed between chunks. */
async function prefillContext(
  engine: Engine,
  cache: RaggedKvCache,
  req: QuestionsRequest,
  chunked: ChunkedPrefill | undefined,
  chunk: number,
  obs: Observation | undefined,
  sums: ColumnSums | undefined,
): Promise<Activations> {
  if (chunked) {
    return await prefillChunked(
      engine.prefill.bind(engine),
      engine.ctx,
      cache,
      req.contextIds,
      chunked,
      chunk,
    );
  }
  return (await engine.prefill(cache, req.contextIds, chunk, "last", obs, 0, sums)).acts;
}

/**
 * Feeds one question into the cache — in prefill chunks, or token by token through the decoding
 * steps — then decodes its answer.
 */
async function answerOne(
  engine: Engine,
  o: {
    cache: RaggedKvCache;
    steps: ReturnType<typeof decodeStepOps>;
    sampler: ReturnType<typeof createSamplerState>;
    question: number[];
    contextLength: number;
    inChunks: boolean;
    chunk: number;
    sampling: SamplingConfig;
    maxNew: number;
    readEvery: number;
    sink: TokenSink;
    memory: MemoryWatch;
  },
): Promise<GenerationResult> {
  const ctx = engine.ctx;
  const { question, sink, maxNew } = o;
  const t0 = performance.now();
  let pick: GpuOp | undefined; // with the question in chunks: the pick of the answer's first id
  let fed: Activations | undefined;
  if (o.inChunks) {
    fed = (await engine.prefill(o.cache, question, o.chunk, "last", undefined, o.contextLength))
      .acts;
    // The pick reads the last question token's logits and lands in ids[0]; it advances the
    // position to the answer's first token, as the last decoding step below would.
    const last = o.contextLength + question.length - 1;
    ctx.write(o.sampler.state, 0, new Uint32Array([question.at(-1)!, 0, last, 0]));
    if (maxNew > 0) {
      pick = sampleOp(ctx, engine.config, fed, o.sampler, o.sampling);
      submitSteps(ctx, [pick]);
    }
  } else {
    for (const [j, id] of question.entries()) {
      // The step reads this token at this position; its pick lands in ids[0] (the step counter
      // is reset each time), so after the last question token ids[0] is the answer's first token.
      ctx.write(o.sampler.state, 0, new Uint32Array([id, 0, o.contextLength + j, 0]));
      submitSteps(ctx, o.steps);
    }
  }
  try {
    if (maxNew > 0) sink.take(await readSampledIds(ctx, o.sampler, 0, 1));
    else await ctx.sync();
  } finally {
    pick?.destroy();
    if (fed) releaseActivations(ctx, fed);
  }
  const ttftMs = performance.now() - t0;
  const rest = await decodeRest(ctx, {
    steps: o.steps,
    sampler: o.sampler,
    sink,
    maxNew,
    readEvery: o.readEvery,
    turn: new GateTurn(),
    startedAt: performance.now(),
  });
  const decoded = sink.tokens.length - Math.min(1, maxNew);
  const timing: GenerationTiming = {
    prefillMs: ttftMs,
    pressMs: 0,
    decodeMs: rest.decodeMs,
    ttftMs,
    prefillTokensPerSecond: question.length / (ttftMs / 1000),
    decodeTokensPerSecond: decoded > 0 ? decoded / (rest.decodeMs / 1000) : 0,
  };
  const lengths = await o.cache.lengths();
  return {
    tokens: sink.tokens,
    stopReason: sink.stopReason,
    timing,
    kv: kvReport(o.cache, lengths, o.contextLength + question.length + rest.steps),
    // The peak since the context began (its prefill and press, the snapshot, earlier answers).
    deviceMemory: { peakBytes: o.memory.peak, weightBytes: engine.gpu.bytes },
  };
}
