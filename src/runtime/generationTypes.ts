/**
 * The data types of a generation: the request (sampling, attention to observe for the press
 * layer, the `afterPrefill` hook), what the press layer sees after prefill, and the result with
 * its timings and KV accounting. The {@link Engine} in `engine.ts` runs them.
 *
 * @module
 */

import type { SharedPrefill } from "./sharedPrefill.ts";
import type { ChunkedPrefill } from "./chunkedPrefill.ts";
import type { KvReport } from "./kvReport.ts";
import type { PhaseGate } from "./phaseGate.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";
import type { QueryStatisticsRecorder } from "./queryStatistics.ts";

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
  /** The prompt's query statistics, when requested (read per layer). */
  queryStatistics?: QueryStatisticsRecorder;
  /** The prompt's token ids (KVzip feeds its context again). */
  promptIds?: readonly number[];
  /**
   * Results that depend only on the prompt and the model, kept across the plans of a shared
   * prefill (`sharedPrefill.ts`; KVzip's reconstruction scores); absent for a prefill of one.
   */
  memo?: Map<string, unknown>;
}

/** Attention the press layer wants recorded (see {@link PrefillState}). */
export interface ObserveRequest {
  /** Last prompt queries to record (0 = none). */
  promptWindow: number;
  /** Record the first decoding step's attention (SimLayerKV measures laziness there). */
  firstStep: boolean;
  /** Accumulate every prompt query's attention per key (H2O's scores). */
  columnSums?: boolean;
  /**
   * Accumulate the pre-RoPE queries' mean and covariance over the prompt positions from `sink` on
   * (Expected Attention).
   */
  queryStatistics?: { sink: number };
}

/** A recompression run while decoding (see {@link GenerationRequest.duringDecode}). */
export interface DecodeRecompression {
  /** Decoding steps between runs. */
  every: number;
  /** Recompresses `cache` (its layers are replaced: steps are rebuilt afterwards). */
  run(cache: RaggedKvCache, next: number, remaining: number): Promise<void>;
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
  /**
   * Asked once after `afterPrefill`: a recompression to run every `every` decoding steps
   * (`decoding(every=N)`), given the cache, the position of the next token to be fed and the
   * steps still to come; undefined for none.
   */
  duringDecode?: () => DecodeRecompression | undefined;
  /**
   * Asked before prefill: compression between prefill chunks (`chunked(size=C)`), or undefined
   * to prefill in one piece (see `chunkedPrefill.ts`).
   */
  chunkedPrefill?: (promptLength: number) => Promise<ChunkedPrefill | undefined>;
  /**
   * Asked before prefill: rows the cache needs beyond the prompt while the press runs (KVzip's
   * repeat passes); the cache is sized for the larger of that and the tokens to generate.
   */
  prefillRoom?: (promptLength: number) => number;
  /**
   * Take turns with other generations holding the same gate: the prefill stage (press included)
   * and each decode batch of `readEvery` tokens are phases, and `prefillMs` / `decodeMs` count only
   * the time this generation holds the gate.
   */
  gate?: PhaseGate;
  /**
   * The prompt already prefilled for several plans (`sharedPrefill.ts`): its rows are copied into
   * this generation's cache instead of prefilling again, and `prefillMs` counts the copy, not the
   * shared prefill. It must hold `promptIds`, in the chunks this request would use, and record
   * what `observe` asks for (`usableShared` says); no chunked prefill.
   */
  shared?: SharedPrefill;
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
  /** Steady decoding wall time (ms), after the press: the decode batches' times, summed. */
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
  /**
   * Device memory in buffers (`GpuContext.memory`): the most bytes live at once during this
   * generation (weights, activations, the KV cache, scratch; the whole device's, so overlapping
   * generations count each other), and the weights' share of it.
   */
  deviceMemory: { peakBytes: number; weightBytes: number };
}
