/**
 * Executes a compiled plan on the real cache: runs the plan's detectors, assigns every
 * (layer, KV head) its pipeline by first match, computes what the selecting presses need
 * (observation-window attention, keys), selects the kept entries per head and compacts the
 * cache on the GPU — leaving bounded presses (StreamingLLM's window) a ring that evicts the
 * oldest non-sink entry as tokens arrive.
 *
 * @module
 */

import type { Plan, PlanPress } from "../plan/plan.ts";
import { defaultRegistry } from "../plugins/builtins.ts";
import { lazyLayers, lazyLayerScore, lazyThresholdFor } from "../plugins/lazyDetector.ts";
import type { LayerScoresInput } from "../plugins/press.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { formatParamValue, type PressSchema } from "../plugins/schema.ts";
import type { ModelConfig } from "../model/types.ts";
import type { GpuContext } from "../gpu/device.ts";
import type { Observation, ObserveRequest, PrefillState } from "./engine.ts";
import {
  detectorKey,
  type DetectorVerdicts,
  type HeadAssignment,
  resolvePlan,
} from "./planResolver.ts";

/** Raised for a policy the runtime cannot execute yet (a user-facing error). */
export class UnsupportedPolicyError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** Presses and detectors the runtime executes today. */
const RUNNABLE_PRESSES = new Set(["full", "window", "snap", "pyramid", "adakv", "knorm", "random"]);
const RUNNABLE_DETECTORS = new Set(["lazy"]);

/** Throws {@link UnsupportedPolicyError} for anything the runtime does not execute yet. */
export function checkExecutable(plan: Plan): void {
  for (const rule of plan.rules) {
    for (const press of rule.pipeline) {
      if (!RUNNABLE_PRESSES.has(press.name)) {
        throw new UnsupportedPolicyError(
          `the runtime does not execute '${press.name}' yet (line ${rule.line}); it runs ${
            [...RUNNABLE_PRESSES].join(", ")
          } — 'deno task check' validates any policy`,
        );
      }
    }
  }
  for (const d of plan.detectors) {
    if (!RUNNABLE_DETECTORS.has(d.name)) {
      throw new UnsupportedPolicyError(`the runtime does not run the '${d.name}' detector yet`);
    }
  }
}

/** What a policy did to one KV head. */
export interface HeadTrace {
  /** Index of the rule that took it (`null`: none, full cache). */
  rule: number | null;
  /** The pipeline, e.g. `snap(k=64)`. */
  pipeline: string;
  /** Sorted original positions kept after prefill. */
  kept: number[];
}

/** What a policy did to one layer. */
export interface LayerTrace {
  /** SimLayerKV score, when the lazy detector ran. */
  lazy_score?: number;
  /** Whether the layer was found lazy. */
  lazy?: boolean;
  /** Per KV head. */
  heads: HeadTrace[];
}

/** Runs a plan's detectors and presses after prefill. */
export class PolicyExecutor {
  /** Per layer, filled by {@link apply}. */
  trace: LayerTrace[] = [];
  /** Per layer and KV head, filled by {@link apply}. */
  assignments: HeadAssignment[][] = [];
  private registry: PluginRegistry;

  /** Prepares the executor; throws for plans the runtime cannot run. */
  constructor(
    private plan: Plan,
    private config: ModelConfig,
    private ctx: GpuContext,
    registry?: PluginRegistry,
  ) {
    checkExecutable(plan);
    this.registry = registry ?? defaultRegistry();
  }

  private press(p: PlanPress): PressSchema {
    const schema = this.registry.press(p.name);
    if (!schema) throw new UnsupportedPolicyError(`unknown press '${p.name}'`);
    return schema;
  }

  /** The attention the engine must record for this plan. */
  observeRequest(): ObserveRequest {
    let promptWindow = 0;
    let firstStep = false;
    for (const rule of this.plan.rules) {
      for (const p of rule.pipeline) {
        const w = this.press(p).needs?.observationWindow?.(p.params) ?? 0;
        promptWindow = Math.max(promptWindow, w);
      }
    }
    for (const d of this.plan.detectors) {
      if (d.name === "lazy") {
        // at=decode measures the first decoding step; the last prompt query is the fallback
        // (and the prefill variant) when fewer than two tokens are generated.
        if (d.params.at === "decode") firstStep = true;
        promptWindow = Math.max(promptWindow, 1);
      }
    }
    return { promptWindow, firstStep };
  }

  /** The `afterPrefill` hook: detect, select, compact. */
  async apply(state: PrefillState): Promise<void> {
    const c = this.config;
    const verdicts = await this.detect(state);
    this.assignments = resolvePlan(this.plan, c.numLayers, c.numKvHeads, verdicts);
    const promptObs = state.promptObservation;
    for (let l = 0; l < c.numLayers; l++) {
      const row = this.assignments[l];
      let obsCache: Float32Array | undefined;
      const readObs = async () => (obsCache ??= await this.readObservation(promptObs!, l));
      const keysCache = new Map<number, Float32Array>();
      // Everything the layer's presses may ask for, read lazily.
      const needsObs = row.some((a) =>
        a.pipeline.some((p) => this.press(p).needs?.observationWindow)
      );
      const needsKeys = row.some((a) => a.pipeline.some((p) => this.press(p).needs?.keys));
      const obs = needsObs ? await readObs() : undefined;
      if (needsKeys) {
        for (let h = 0; h < c.numKvHeads; h++) {
          keysCache.set(h, await state.cache.readKeys(l, h, state.promptLength));
        }
      }
      const input = this.scoresInput(l, state.promptLength, obs, promptObs, keysCache);
      const keep: number[][] = [];
      const extra: number[] = [];
      const ring: (number | undefined)[] = [];
      const selections = new Map<string, number[][]>();
      let changed = false;
      for (let h = 0; h < c.numKvHeads; h++) {
        const a = row[h];
        const select = a.pipeline.find((p) =>
          this.press(p).role === "select" && this.press(p).select
        );
        const schema = select && this.press(select);
        let kept: number[];
        if (schema?.bound) {
          // Bounded presses select over everything cached so far and then stay at capacity.
          const key = JSON.stringify(select!.params) + schema.name + ":all";
          if (!selections.has(key)) {
            selections.set(
              key,
              schema.select!({ ...input, promptLength: state.cachedLength }, select!.params),
            );
          }
          kept = selections.get(key)![h];
          const { capacity, ringStart } = schema.bound(select!.params, state.promptLength);
          extra.push(Math.max(0, capacity - kept.length));
          ring.push(ringStart);
          changed = true;
        } else if (schema) {
          const key = JSON.stringify(select!.params) + schema.name;
          if (!selections.has(key)) selections.set(key, schema.select!(input, select!.params));
          kept = selections.get(key)![h];
          for (let p = state.promptLength; p < state.cachedLength; p++) kept = [...kept, p];
          extra.push(state.decodeBudget);
          ring.push(undefined);
          if (kept.length < state.cachedLength) changed = true;
        } else {
          kept = Array.from({ length: state.cachedLength }, (_, i) => i);
          extra.push(state.decodeBudget);
          ring.push(undefined);
        }
        keep.push(kept);
        this.trace[l].heads.push({
          rule: a.rule,
          pipeline: a.pipeline.map(describe).join(" + ") || "full",
          kept: kept.filter((p) => p < state.promptLength),
        });
      }
      if (changed) state.cache.compact(l, keep, extra, ring);
    }
  }

  private scoresInput(
    layer: number,
    promptLength: number,
    obs: Float32Array | undefined,
    promptObs: Observation | undefined,
    keys: Map<number, Float32Array>,
  ): LayerScoresInput {
    const c = this.config;
    return {
      layer,
      numLayers: c.numLayers,
      promptLength,
      numKvHeads: c.numKvHeads,
      groupSize: c.numHeads / c.numKvHeads,
      headDim: c.headDim,
      windowAttention: (window: number) => {
        if (!obs || !promptObs || window > promptObs.rows) {
          throw new Error(`observation window ${window} was not recorded`);
        }
        const rows = promptObs.rows, N = promptObs.stride;
        return Array.from(
          { length: c.numHeads },
          (_, h) => obs.subarray((h * rows + rows - window) * N, (h * rows + rows) * N),
        );
      },
      attentionColumnSums: () => {
        throw new Error("accumulated attention (h2o) is not computed by the runtime yet");
      },
      keys: (kvHead: number) => {
        const k = keys.get(kvHead);
        if (!k) throw new Error("keys were not read back");
        return k;
      },
    };
  }

  private async readObservation(o: Observation, layer: number): Promise<Float32Array> {
    return await this.ctx.readF32(o.buffers[layer]);
  }

  private async detect(state: PrefillState): Promise<DetectorVerdicts> {
    const c = this.config;
    this.trace = Array.from({ length: c.numLayers }, () => ({ heads: [] }));
    const verdicts: DetectorVerdicts = { layers: new Map(), heads: new Map() };
    for (const d of this.plan.detectors) {
      if (d.name !== "lazy") continue;
      const sink = d.params.sink as number;
      const recent = d.params.recent as number;
      const threshold = (d.params.threshold as number | null) ?? lazyThresholdFor(c);
      const scores: number[] = [];
      for (let l = 0; l < c.numLayers; l++) {
        let perHead: Float32Array[];
        let length: number;
        if (d.params.at === "decode" && state.firstStepObservation) {
          const o = state.firstStepObservation;
          const all = await this.readObservation(o, l);
          length = o.stride;
          perHead = Array.from(
            { length: c.numHeads },
            (_, h) => all.subarray(h * length, (h + 1) * length),
          );
        } else {
          // Prefill variant (or a generation too short to decode): the last prompt query.
          const o = state.promptObservation;
          if (!o) throw new Error("lazy detector: no attention was recorded");
          const all = await this.readObservation(o, l);
          length = o.stride;
          perHead = Array.from(
            { length: c.numHeads },
            (_, h) =>
              all.subarray((h * o.rows + o.rows - 1) * length, (h * o.rows + o.rows) * length),
          );
        }
        scores.push(lazyLayerScore(perHead, length, sink, recent));
      }
      const lazy = lazyLayers(scores, threshold);
      verdicts.layers.set(detectorKey(d), lazy);
      scores.forEach((s, l) => {
        this.trace[l].lazy_score = s;
        this.trace[l].lazy = lazy[l];
      });
    }
    return verdicts;
  }
}

function describe(p: PlanPress): string {
  const args = Object.entries(p.params).map(([k, v]) => `${k}=${formatParamValue(v)}`);
  return args.length ? `${p.name}(${args.join(", ")})` : p.name;
}
