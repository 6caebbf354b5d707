/**
 * Teacher-forced scoring with a policy applied: the log-probabilities of a text's tokens after a
 * prefix, the prefix compressed as the policy says before the scored tokens are read — the
 * perplexity a compressed cache costs.
 *
 * @module
 */

import {
  type QueryStatisticsRecorder,
  startQueryStatistics,
  stopQueryStatistics,
} from "./queryStatistics.ts";
import { type Activations, releaseActivations } from "./forwardPass.ts";
import type { Engine } from "./engine.ts";
import { prefillRecorders, type SharedPrefill, usableShared } from "./sharedPrefill.ts";
import { type KvReport, kvReport } from "./kvReport.ts";
import type { PolicyExecutor } from "./policyExecutor.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";
import { widestPass } from "./prefillPass.ts";
import { chunkedCapacity, prefillChunked } from "./chunkedPrefill.ts";
import { forcedDecode } from "./forcedDecode.ts";
import { boundSlidingLayers } from "./slidingLayers.ts";

/** Log-probabilities of `ids[from..]` and the cache accounting at the end. */
export interface TokenScores {
  /** Natural-log probability of each scored token. */
  logprobs: number[];
  /** KV accounting after the last token. */
  kv: KvReport;
}

function logSoftmaxAt(logits: Float32Array, id: number): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[id] - max - Math.log(sum);
}

/**
 * Scores `ids[from..]` given `ids[..from)`: the prefix is prefilled (or its rows copied from
 * `shared`, a prefill of the same prefix that recorded what the plan observes) and compressed by
 * `executor` (its detectors see the prefix), then the scored tokens are fed in chunks (one at a time when
 * the policy acts while decoding: then through the decode steps, see {@link forcedDecode}).
 */
export async function scoreTokens(
  engine: Engine,
  ids: number[],
  from: number,
  executor: PolicyExecutor,
  bounded: boolean,
  chunk: number = engine.prefillChunk,
  shared?: SharedPrefill,
): Promise<TokenScores> {
  if (!(from >= 1 && from < ids.length)) {
    throw new RangeError(`scoreTokens: from must be in [1, ${ids.length - 1}], not ${from}`);
  }
  const chunked = await executor.chunkedPrefill(from);
  const room = Math.max(ids.length - from, executor.prefillRoom(from));
  const capacity = chunked ? chunkedCapacity(from, chunked, room) : from + room;
  const want = executor.observeRequest(from);
  const passRows = widestPass(chunk, want.promptWindow);
  const cache = new RaggedKvCache(engine.ctx, engine.config, capacity, engine.kvDtype, passRows);
  const prefixIds = ids.slice(0, from);
  const start = chunked ? undefined : usableShared(shared, prefixIds, chunk, want);
  const rec = prefillRecorders(engine, start, want, from);
  const { observation: obs, columnSums: sums } = rec;
  let stats: QueryStatisticsRecorder | undefined; // this prefill's own statistics
  try {
    let prefix: Activations;
    if (start) {
      cache.copyPrefixFrom(start.cache, from);
      prefix = start.acts;
    } else {
      stats = startQueryStatistics(engine.ctx, engine.gpu, cache, want);
      prefix = chunked
        ? await prefillChunked(
          engine.prefill.bind(engine),
          engine.ctx,
          cache,
          prefixIds,
          chunked,
          chunk,
        )
        : (await engine.prefill(cache, prefixIds, chunk, "last", obs, 0, sums)).acts;
      stopQueryStatistics(stats, cache, from);
    }
    const first = await engine.ctx.readF32(prefix.logits, 0, engine.config.vocabSize);
    if (!start) releaseActivations(engine.ctx, prefix);
    const logprobs = [logSoftmaxAt(first, ids[from])];
    await executor.apply({
      cache,
      promptLength: from,
      cachedLength: from,
      decodeBudget: ids.length - 1 - from,
      promptObservation: obs,
      promptColumnSums: sums,
      queryStatistics: rec.queryStatistics ?? stats,
      promptIds: prefixIds,
      memo: start?.memo,
    });
    stats?.release();
    const rest = ids.slice(from, ids.length - 1);
    if (bounded || executor.recompressor || cache.takesOneTokenPerStep) {
      // Heads that evict while decoding (a ring, a per-step hook), KIVI's quantized layers and
      // `decoding(every=N)` take the scored tokens through generation's own decode steps, and
      // Gemma 3's sliding layers with them, as rings of their window.
      boundSlidingLayers(cache, from, ids.length - 1 - from);
      logprobs.push(
        ...await forcedDecode(engine, cache, {
          fed: rest,
          last: ids[ids.length - 1],
          position: from,
          recompress: executor.recompressor,
        }),
      );
    } else {
      // In chunks: Gemma 3's sliding layers roll through them (`rollSlidingLayers`), then hold
      // their window as generation would leave it.
      const fed = await engine.prefill(cache, rest, chunk, "all", undefined, from);
      releaseActivations(engine.ctx, fed.acts);
      fed.logits.forEach((row, j) => logprobs.push(logSoftmaxAt(row, ids[from + 1 + j])));
      boundSlidingLayers(cache, ids.length - 1, 0);
    }
    return { logprobs, kv: kvReport(cache, await cache.lengths(), ids.length - 1) };
  } finally {
    stats?.release();
    if (rec.owned) {
      for (const b of [...(obs?.buffers ?? []), ...(sums?.buffers ?? [])]) engine.ctx.release(b);
    }
    cache.release();
  }
}
