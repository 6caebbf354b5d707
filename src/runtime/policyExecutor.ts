/**
 * Executes a compiled plan on the real cache: runs the plan's detectors, assigns every
 * (layer, KV head) its pipeline by first match, computes what the selecting presses need
 * (observation-window attention, keys), selects the kept entries per head and compacts the
 * cache on the GPU — leaving bounded presses (StreamingLLM's window) a ring that evicts the
 * oldest non-sink entry as tokens arrive. A `quant` press (KIVI) then packs the kept entries of
 * its heads on the GPU (see `quantKvCache.ts`); it cannot yet be combined with a bounded press.
 * `h2o` selects from GPU-accumulated attention column sums and keeps evicting at every decoding
 * step on the GPU (`h2oRuntime.ts`); `compensate` adds RazorAttention's compensation token to the
 * heads whose select press dropped entries (`compensation.ts`).
 *
 * @module
 */

import type { Plan, PlanPress } from "../plan/plan.ts";
import { defaultRegistry } from "../plugins/builtins.ts";
import type { HeadScores } from "../plugins/retrievalDetector.ts";
import type { H2oHeadState } from "../plugins/h2oPress.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { PressSchema } from "../plugins/schema.ts";
import { evictsWhileDecoding } from "../plugins/press.ts";
import type { ModelConfig } from "../model/types.ts";
import type { GpuContext } from "../gpu/device.ts";
import type { ObserveRequest, PrefillState } from "./engine.ts";
import { runDetectors } from "./detectors.ts";
import { checkCombinations, checkExecutable, UnsupportedPolicyError } from "./executable.ts";
import { createH2oStepHook } from "./h2oRuntime.ts";
import {
  bothHooks,
  chunkedRecompressor,
  type DecodingRecompressor,
  recompressorFor,
  recompressWindow,
} from "./decodingRecompress.ts";
import type { CompactCompensation } from "./raggedKvCache.ts";
import { LayerLayout } from "./headLayout.ts";
import { traceSlidingLayers } from "./slidingLayers.ts";
import type { LayerTrace } from "./policyTrace.ts";
import { planObservations } from "./observeRequest.ts";
import { quantizeLayer } from "./quantLayer.ts";
import { callText } from "../plan/explain.ts";
import { type DetectorVerdicts, type HeadAssignment, resolvePlan } from "./planResolver.ts";
import { readWindowVotes, votesRequests } from "./observationVotes.ts";
import { PressClock, type PressTiming } from "./pressClock.ts";
import { readLayerScoresInput } from "./layerScoresInput.ts";
import {
  memoReconstruction,
  reconstructionRoom,
  type ReconstructionSources,
} from "./reconstruction.ts";

/**
 * Model-level inputs the executor cannot compute from the prompt's cache (they need the engine):
 * the retrieval detector's scores, the output projection (CriticalKV), KVzip's repeat passes.
 * `src/runtime/retrievalProfile.ts` `engineSources(engine)` provides them.
 */
export interface ModelSources {
  /** Per layer, per KV head RazorAttention scores (`echo[h]`, `induction[h]`). */
  retrievalScores(): Promise<HeadScores[]>;
  /**
   * The layer's attention output projection (o_proj's weight) as f32 `[hidden][H · headDim]`,
   * for presses that weigh values by it (CriticalKV).
   */
  outputProjection?(layer: number): Float32Array;
  /** What KVzip's context reconstruction needs (repeat prompts, forward passes). */
  reconstruction?: ReconstructionSources;
}

/** Runs a plan's detectors and presses after prefill. */
export class PolicyExecutor {
  /** Per layer, filled by {@link apply}. */
  trace: LayerTrace[] = [];
  /** Per layer and KV head, filled by {@link apply}. */
  assignments: HeadAssignment[][] = [];
  /** Phases of the last {@link apply} (the benchmark's press breakdown). */
  timing: PressTiming = { readMs: 0, selectMs: 0, compactMs: 0 };
  /** `decoding(every=N)`'s recompression, set by {@link apply} when the policy has one. */
  recompressor: DecodingRecompressor | undefined;
  /** Chunked prefill's recompression (`chunked`), set by {@link chunkedPrefill}. */
  chunked: DecodingRecompressor | undefined;
  private registry: PluginRegistry;
  private retrieval: HeadScores[] | undefined;

  /**
   * Prepares the executor; throws for plans the runtime cannot run. `sources` supplies what
   * model-level detectors and presses need (retrieval scores, o_proj, KVzip's repeat passes); a
   * plan using one without it fails in {@link apply}.
   */
  constructor(
    private plan: Plan,
    private config: ModelConfig,
    private ctx: GpuContext,
    registry?: PluginRegistry,
    private sources?: ModelSources,
  ) {
    this.registry = registry ?? defaultRegistry();
    checkExecutable(plan, this.registry);
    checkCombinations(plan, (p) => this.evicts(p));
  }

  /**
   * Whether the plan acts on the cache while decoding — a press that evicts (a rolling window,
   * H2O), `decoding`, KIVI's packing (`quant`), a folding compensation token — so that tokens
   * appended after the press must go one per decoding step, as generated tokens do; otherwise
   * they can be appended in prefill chunks with the same result.
   */
  get actsWhileDecoding(): boolean {
    const acting = new Set(["decoding", "quant", "compensate"]);
    return this.plan.rules.some((r) =>
      r.pipeline.some((p) => acting.has(p.name) || this.evicts(p))
    );
  }

  /** Whether the plan prefills in chunks (`chunked`). */
  get isChunked(): boolean {
    return this.chunkSize !== undefined;
  }

  /** The plan's `chunked(size=C)` (every chunked rule has the same size), if any. */
  get chunkSize(): number | undefined {
    const press = this.plan.rules.flatMap((r) => r.pipeline).find((p) => p.name === "chunked");
    return press?.params.size as number | undefined;
  }

  /**
   * Whether an `n`-token prompt is prefilled in chunks: a chunked plan whose prompt fits in one
   * chunk is compressed once after prefill, as the plan without `chunked` would be (its one
   * chunk's step is that compression), with the scores computed on the GPU.
   */
  usesChunks(n: number): boolean {
    return this.isChunked && n > this.chunkSize!;
  }

  /**
   * For a policy with `chunked(size=C)`, before prefill: resolves its rules (only the model-level
   * `retrieval` detector can run before the prompt is cached) and returns what prefill runs
   * between chunks; undefined for other policies.
   */
  async chunkedPrefill(promptLength: number): Promise<DecodingRecompressor | undefined> {
    if (!this.isChunked) return undefined;
    const c = this.config;
    await this.prepare();
    this.checkChunked();
    if (!this.usesChunks(promptLength)) return undefined; // one chunk: compressed after prefill
    // `retrieval` reads the model's profile, no prompt state.
    const noPrompt = {} as PrefillState;
    const { verdicts } = await runDetectors(
      this.plan,
      c,
      this.ctx,
      this.registry,
      this.retrieval,
      noPrompt,
    );
    this.assignments = this.resolve(verdicts);
    this.chunked = chunkedRecompressor(
      this.ctx,
      c,
      this.assignments,
      (p) => this.press(p),
      promptLength,
    );
    return this.chunked;
  }

  /**
   * What a chunked plan cannot do, refused whatever the prompt's length (a prompt of one chunk
   * takes the one-shot path, but the policy must not change meaning with the prompt): detectors
   * that need the whole prompt cached, and presses reading more queries than a chunk holds.
   */
  private checkChunked(): void {
    const other = this.plan.detectors.find((d) => d.name !== "retrieval");
    if (other) {
      throw new UnsupportedPolicyError(
        `detector '${other.name}' needs the whole prompt cached: not with chunked prefill`,
      );
    }
    const size = this.chunkSize!;
    for (const rule of this.plan.rules) {
      if (!rule.pipeline.some((p) => p.name === "chunked")) continue;
      const press = rule.pipeline[0];
      const window = recompressWindow({ press, schema: this.press(press) });
      if (window > size) {
        throw new UnsupportedPolicyError(
          `chunked(size=${size}): '${press.name}' reads the last ${window} queries of each ` +
            "chunk; use chunks at least that long",
        );
      }
    }
  }

  /** The last chunk's compression (after prefill, with room for decoding) and the trace. */
  private async finishChunked(state: PrefillState): Promise<void> {
    const chunked = this.chunked!;
    const t0 = performance.now();
    await chunked.runChunk(state.cache, state.cachedLength, state.decodeBudget);
    state.cache.stepHook?.release(); // the chunks' query rings
    state.cache.stepHook = undefined;
    const kept = chunked.keptPositions();
    const all = Array.from({ length: state.promptLength }, (_, i) => i);
    this.trace = this.assignments.map((row, l) => ({
      heads: row.map((a, h) => ({
        rule: a.rule,
        pipeline: a.pipeline.map(callText).join(" + ") || "full",
        kept: kept[l][h]?.filter((p) => p < state.promptLength) ?? all,
      })),
    }));
    traceSlidingLayers(this.trace, this.config, state);
    this.timing = { readMs: 0, selectMs: 0, compactMs: performance.now() - t0 };
  }

  /** Every (layer, KV head)'s rule; Gemma 3's sliding layers take none (see `resolvePlan`). */
  private resolve(verdicts: DetectorVerdicts): HeadAssignment[][] {
    const c = this.config;
    return resolvePlan(this.plan, c.numLayers, c.numKvHeads, verdicts, c.gemma3?.layerWindows);
  }

  /** Whether `p` evicts entries while decoding (H2O, a rolling window). */
  private evicts(p: PlanPress): boolean {
    return p.name === "h2o" || evictsWhileDecoding(this.press(p), p);
  }

  /**
   * Fetches model-level detector results (the retrieval profile) now, e.g. before generation so
   * that a first-time probe is not timed as decoding; {@link apply} does it otherwise.
   */
  async prepare(): Promise<void> {
    if (!this.plan.detectors.some((d) => d.name === "retrieval") || this.retrieval) return;
    if (!this.sources) {
      throw new UnsupportedPolicyError(
        "the 'retrieval' detector needs the engine: construct PolicyExecutor with model sources",
      );
    }
    this.retrieval = await this.sources.retrievalScores();
  }

  private press(p: PlanPress): PressSchema {
    const schema = this.registry.press(p.name);
    if (!schema) throw new UnsupportedPolicyError(`unknown press '${p.name}'`);
    return schema;
  }

  /** The chunk of KVzip's reconstruction when the plan has a press that needs it. */
  private reconstructionChunk(): number | undefined {
    for (const rule of this.plan.rules) {
      for (const p of rule.pipeline) {
        const want = this.press(p).needs?.reconstruction?.(p.params);
        if (want) return want.chunk;
      }
    }
    return undefined;
  }

  /**
   * Rows the cache must have beyond a prompt of `promptLength` during the press (KVzip's repeat
   * passes append there before the selection); 0 for other plans.
   */
  prefillRoom(promptLength: number): number {
    const chunk = this.reconstructionChunk();
    const sources = this.sources?.reconstruction;
    return chunk === undefined || !sources
      ? 0
      : reconstructionRoom(promptLength, chunk, sources.prompts());
  }

  /** KVzip's scores of every layer, when the plan needs them (before any compaction). */
  private reconstruct(state: PrefillState): Promise<Float64Array[][] | undefined> {
    const chunk = this.reconstructionChunk();
    if (chunk === undefined) return Promise.resolve(undefined);
    return memoReconstruction(this.ctx, this.config, state, chunk, this.sources?.reconstruction);
  }

  /**
   * The attention the engine must record for this plan, on a prompt of `promptLength` tokens
   * (unknown: as for a prompt longer than any chunk).
   */
  observeRequest(promptLength = Infinity): ObserveRequest {
    // Chunked prefill keeps each chunk's last queries itself (no prompt-wide observation).
    if (this.usesChunks(promptLength)) {
      return { promptWindow: 0, firstStep: false, columnSums: false };
    }
    return planObservations(this.plan, (p) => this.press(p));
  }

  /** The `afterPrefill` hook: detect, select, compact. */
  async apply(state: PrefillState): Promise<void> {
    const c = this.config;
    const clock = new PressClock();
    this.trace = Array.from({ length: c.numLayers }, () => ({ heads: [] }));
    await this.prepare();
    if (this.isChunked) this.checkChunked();
    if (this.usesChunks(state.promptLength)) {
      if (!this.chunked) {
        throw new UnsupportedPolicyError(
          "this caller prefills in one piece: a chunked policy needs the engine's chunked prefill",
        );
      }
      return await this.finishChunked(state);
    }
    const { verdicts, lazy, duo } = await runDetectors(
      this.plan,
      c,
      this.ctx,
      this.registry,
      this.retrieval,
      state,
    );
    lazy?.forEach((v, l) => {
      if (!v) return;
      this.trace[l].lazy_score = v.score;
      this.trace[l].lazy = v.lazy;
    });
    this.assignments = this.resolve(verdicts);
    const reconstruction = this.reconstructionChunk() === undefined
      ? undefined
      : await clock.read(() => this.reconstruct(state));
    const promptObs = state.promptObservation;
    const votes = promptObs
      ? await clock.read(() =>
        readWindowVotes(
          this.ctx,
          promptObs,
          c.numHeads,
          votesRequests(this.assignments, (p) => this.press(p).needs, state.promptLength),
        )
      )
      : new Map();
    const h2oStates: (H2oHeadState | undefined)[][] = [];
    const everyKept: (number[] | undefined)[][] = Array.from({ length: c.numLayers }, () => []);
    // Heads that keep everything share one position list (and its prompt part for the trace).
    const all = Array.from({ length: state.cachedLength }, (_, i) => i);
    const allPrompt = all.slice(0, state.promptLength);
    for (let l = 0; l < c.numLayers; l++) {
      const row = this.assignments[l];
      const request = {
        needs: row.flatMap((a) =>
          a.pipeline.map((p) => ({ name: p.name, ...this.press(p).needs }))
        ),
        votes,
        outputProjection: this.sources?.outputProjection,
        reconstruction,
      };
      // Only reading back counts as the press's read time (a layer may need nothing).
      const reads = request.needs.some((n) =>
        n.keys || n.values || n.queryStatistics || n.projectedValueNorms || n.name === "h2o" ||
        (n.observationWindow && !n.windowVotesOnly)
      );
      const read = () => readLayerScoresInput(this.ctx, c, state, l, request);
      const input = reads ? await clock.read(read) : await read();
      const layout = new LayerLayout(input, state, (p) => this.press(p), all);
      const heads = row.map((a, h) => layout.head(h, a));
      const keep = heads.map((x) => x.rows);
      const extra = heads.map((x) => x.extra);
      const ring = heads.map((x) => x.ring);
      const rerotate = heads.map((x) => x.rerotate);
      const compensation: CompactCompensation = {
        rows: heads.map((x) => x.token?.rows),
        bias: heads.map((x) => x.token?.bias),
        fold: heads.map((x) => x.fold),
      };
      const changed = heads.some((x) => x.changed);
      h2oStates.push(heads.map((x) => x.h2o));
      heads.forEach((x, h) => {
        if (x.every) everyKept[l][h] = x.kept;
        const a = row[h];
        this.trace[l].heads.push({
          rule: a.rule,
          pipeline: a.pipeline.map(callText).join(" + ") || "full",
          kept: x.kept === all ? allPrompt : x.kept.filter((p) => p < state.promptLength),
          ...(this.retrieval && {
            retrieval_score: this.retrieval[l].induction[h],
            echo_score: this.retrieval[l].echo[h],
          }),
          ...(duo && { duo_score: duo[l][h] }),
          ...(x.token && { compensated: x.token.rows.dropped.length }),
        });
      });
      const compensated = compensation.rows.some((r) => r);
      if (changed) {
        clock.compact(() =>
          state.cache.compact(l, keep, extra, ring, compensated ? compensation : undefined)
        );
      }
      if (rerotate.some((n) => n > 0)) {
        if (c.headDim % 8 !== 0) {
          throw new UnsupportedPolicyError(
            `window(rerotate=true) needs head_dim a multiple of 8 (this model: ${c.headDim})`,
          );
        }
        state.cache.enableRerotate(l, rerotate);
      }
      clock.compact(() =>
        quantizeLayer(
          state.cache,
          l,
          row,
          keep.map((k, h) => k.length + extra[h]),
          (p) => this.evicts(p),
        )
      );
    }
    if (h2oStates.some((heads) => heads.some((s) => s))) {
      state.cache.stepHook = createH2oStepHook(this.ctx, state.cache, c, h2oStates);
    }
    this.recompressor = recompressorFor(
      this.ctx,
      c,
      this.assignments,
      everyKept,
      (p) => this.press(p),
      state.promptLength,
      state.cachedLength,
    );
    state.cache.stepHook = bothHooks(state.cache.stepHook, this.recompressor?.stepHook());
    traceSlidingLayers(this.trace, this.config, state);
    this.timing = clock.done();
  }
}
