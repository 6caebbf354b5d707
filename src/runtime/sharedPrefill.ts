/**
 * One prompt prefilled once for several policies: an evaluation (a leaderboard above all) runs
 * dozens of plans on the same prompt, and the prefill — the same for all of them, since every
 * press acts on the finished prompt's cache — is most of each run's cost on a slow adapter. The
 * shared prefill keeps the uncompressed cache, the last position's logits and the union of what
 * the plans asked to observe; each plan then copies the prompt's rows into a cache of its own
 * ({@link RaggedKvCache.copyPrefixFrom}), samples its first token from the shared logits and
 * presses its copy exactly as after a prefill of its own. The prefill runs in the same chunks a
 * plan alone would use ({@link shareKey}), so each plan's tokens and kept entries are those of its
 * own run (tested against it). Work that depends only on the prompt and the model — KVzip's
 * reconstruction scores — is kept in {@link SharedPrefill.memo} for the next plan.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import type { Engine } from "./engine.ts";
import { type Activations, releaseActivations } from "./forwardPass.ts";
import type { ColumnSums, Observation, ObserveRequest } from "./generationTypes.ts";
import { chunkStarts, widestPass } from "./prefillPass.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";
import {
  type QueryStatisticsRecorder,
  startQueryStatisticsSinks,
  stopQueryStatistics,
} from "./queryStatistics.ts";

/** A prompt's uncompressed prefill, kept for every plan of a group (see the module doc). */
export interface SharedPrefill {
  /** The prompt. */
  promptIds: readonly number[];
  /** The prefill's chunk starts (plans whose own prefill would chunk otherwise cannot share). */
  starts: readonly number[];
  /** The prompt's entries, every head holding all of them. */
  cache: RaggedKvCache;
  /** The last position's logits (row 0 of `acts.logits`). */
  acts: Activations;
  /** The last prompt queries' attention: the widest window any plan of the group asked for. */
  observation?: Observation;
  /** H2O's column sums, when a plan asked for them. */
  columnSums?: ColumnSums;
  /**
   * The query statistics the group's plans asked for (Expected Attention's, DuoAttention's
   * on-the-fly means), one recorder per sink, all counted in the same prefill.
   */
  queryStatistics: readonly QueryStatisticsRecorder[];
  /** Results that depend only on the prompt and the model, by name (KVzip's scores). */
  memo: Map<string, unknown>;
  /** Wall time of the shared prefill, ms. */
  prefillMs: number;
}

/**
 * What a shared prefill records: the union of its plans' {@link ObserveRequest}s, with query
 * statistics for every sink any of them asks for.
 */
export interface SharedObserve extends Omit<ObserveRequest, "queryStatistics"> {
  /** The sinks of the query statistics to record (none when absent). */
  statisticsSinks?: readonly number[];
}

/**
 * What decides whether plans can share one prefill of an `n`-token prompt in chunks of `chunk`:
 * the chunk starts their observation window imposes ({@link chunkStarts}). Plans with equal keys
 * share ({@link shareGroupsOf}); the shared prefill then records the widest window among them
 * (the rows of a narrower window are its last rows, unchanged) and the query statistics of every
 * sink they ask for.
 */
export function shareKey(n: number, chunk: number, observe: ObserveRequest): string {
  return JSON.stringify(chunkStarts(n, chunk, Math.min(n, observe.promptWindow)));
}

/**
 * The plans observing `observes` in groups that can share one prefill (indices, in order): equal
 * {@link shareKey}s. Query statistics split nothing: the shared prefill records one set per
 * sink, so Expected Attention's and DuoAttention's statistics cost no prefill of their own.
 */
export function shareGroupsOf(
  n: number,
  chunk: number,
  observes: readonly ObserveRequest[],
): number[][] {
  const byKey = new Map<string, number[]>();
  observes.forEach((observe, i) => {
    const key = shareKey(n, chunk, observe);
    byKey.set(key, [...byKey.get(key) ?? [], i]);
  });
  return [...byKey.values()];
}

/**
 * The union of several observe requests (the widest window; column sums if any asks; the query
 * statistics of every sink asked for).
 */
export function unionObserve(requests: readonly ObserveRequest[]): SharedObserve {
  const sinks = new Set(requests.flatMap((r) => r.queryStatistics ? [r.queryStatistics.sink] : []));
  return {
    promptWindow: Math.max(0, ...requests.map((r) => r.promptWindow)),
    firstStep: false, // the first decoding step follows each plan's own first token
    columnSums: requests.some((r) => r.columnSums),
    statisticsSinks: [...sinks].sort((a, b) => a - b),
  };
}

/**
 * Prefills `promptIds` once, uncompressed, in chunks of `chunk` (the engine's default unless
 * given), recording what `observe` asks for.
 */
export async function prefillShared(
  engine: Engine,
  promptIds: readonly number[],
  observe: SharedObserve,
  chunk = engine.prefillChunk,
): Promise<SharedPrefill> {
  const ctx = engine.ctx;
  const N = promptIds.length;
  engine.checkIds(promptIds as number[], "prompt");
  const window = Math.min(N, observe.promptWindow);
  const t0 = performance.now();
  const cache = new RaggedKvCache(ctx, engine.config, N, engine.kvDtype, widestPass(chunk, window));
  const { observation, columnSums } = prefillRecorders(engine, undefined, observe, N);
  let queryStatistics: QueryStatisticsRecorder[] = [];
  try {
    queryStatistics = startQueryStatisticsSinks(
      ctx,
      engine.gpu,
      cache,
      observe.statisticsSinks ?? [],
    );
    const { acts } = await engine.prefill(
      cache,
      [...promptIds],
      chunk,
      "last",
      observation,
      0,
      columnSums,
    );
    for (const recorder of queryStatistics) stopQueryStatistics(recorder, cache, N);
    await ctx.sync();
    return {
      promptIds: [...promptIds],
      starts: chunkStarts(N, chunk, window),
      cache,
      acts,
      observation,
      columnSums,
      queryStatistics,
      memo: new Map(),
      prefillMs: performance.now() - t0,
    };
  } catch (e) {
    releaseBuffers(ctx, cache, observation, columnSums, queryStatistics);
    throw e;
  }
}

/**
 * `shared` if a plan that observes `observe` and prefills in chunks of `chunk` can start from it
 * for `promptIds` (the same prompt, the same chunks, everything it observes recorded), else
 * undefined: the plan then prefills on its own.
 */
export function usableShared(
  shared: SharedPrefill | undefined,
  promptIds: readonly number[],
  chunk: number,
  observe: ObserveRequest,
): SharedPrefill | undefined {
  if (!shared) return undefined;
  const N = promptIds.length;
  if (N !== shared.promptIds.length || promptIds.some((id, i) => id !== shared.promptIds[i])) {
    return undefined;
  }
  const window = Math.min(N, observe.promptWindow);
  const starts = chunkStarts(N, chunk, window);
  if (starts.length !== shared.starts.length || starts.some((s, i) => s !== shared.starts[i])) {
    return undefined;
  }
  if (window > (shared.observation?.rows ?? 0)) return undefined;
  if (observe.columnSums && !shared.columnSums) return undefined;
  const sink = observe.queryStatistics?.sink;
  if (sink !== undefined && !shared.queryStatistics.some((r) => r.sink === sink)) return undefined;
  return shared;
}

/**
 * The buffers a prefill of an `n`-token prompt records into for `observe`: of a shared prefill,
 * only what `observe` asks for (already filled, query statistics included), or fresh ones
 * (`owned`: the caller frees them; query statistics start with the prefill itself).
 */
export function prefillRecorders(
  engine: Pick<Engine, "createObservation">,
  shared: SharedPrefill | undefined,
  observe: ObserveRequest | undefined,
  n: number,
): {
  observation?: Observation;
  columnSums?: ColumnSums;
  queryStatistics?: QueryStatisticsRecorder;
  owned: boolean;
} {
  if (shared) {
    return {
      observation: (observe?.promptWindow ?? 0) > 0 ? shared.observation : undefined,
      columnSums: observe?.columnSums ? shared.columnSums : undefined,
      queryStatistics: shared.queryStatistics.find((r) =>
        r.sink === observe?.queryStatistics?.sink
      ),
      owned: false,
    };
  }
  const window = Math.min(n, observe?.promptWindow ?? 0);
  return {
    observation: window > 0 ? engine.createObservation(window, n) : undefined,
    columnSums: observe?.columnSums
      ? { stride: n, buffers: engine.createObservation(1, n).buffers }
      : undefined,
    owned: true,
  };
}

/** Frees a shared prefill. */
export function releaseShared(ctx: GpuContext, shared: SharedPrefill): void {
  releaseActivations(ctx, shared.acts);
  releaseBuffers(
    ctx,
    shared.cache,
    shared.observation,
    shared.columnSums,
    shared.queryStatistics,
  );
  shared.memo.clear();
}

function releaseBuffers(
  ctx: GpuContext,
  cache: RaggedKvCache,
  observation?: Observation,
  columnSums?: ColumnSums,
  stats: readonly QueryStatisticsRecorder[] = [],
): void {
  for (const recorder of stats) recorder.release();
  for (const b of [...observation?.buffers ?? [], ...columnSums?.buffers ?? []]) ctx.release(b);
  cache.release();
}

/** The request of a plan that observes nothing. */
export const NO_OBSERVATION: ObserveRequest = { promptWindow: 0, firstStep: false };
