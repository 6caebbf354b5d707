/**
 * Resolves a compiled plan for one model and one prompt: given the detectors' verdicts, every
 * (layer, KV head) takes the pipeline of the first rule that matches it; heads no rule takes keep
 * the full cache.
 *
 * @module
 */

import type { Plan, PlanCall, PlanPress, PlanSelector } from "../plan/plan.ts";

/** Detector verdicts, keyed by {@link detectorKey}. */
export interface DetectorVerdicts {
  /** Layer detectors: per layer, flagged or not. */
  layers: Map<string, boolean[]>;
  /** Head detectors: per layer and KV head, flagged or not. */
  heads: Map<string, boolean[][]>;
}

/** What one (layer, KV head) gets. */
export interface HeadAssignment {
  /** Index of the rule in `plan.rules`, or `null` when no rule matched (full cache). */
  rule: number | null;
  /** The presses, in order (empty = full cache). */
  pipeline: PlanPress[];
}

/** A stable key for a detector invocation (name + parameters). */
export function detectorKey(call: PlanCall): string {
  return JSON.stringify([call.name, call.params]);
}

function inIndices(ranges: [number, number | null][], i: number): boolean {
  return ranges.some(([a, b]) => i >= a && (b === null || i <= b));
}

function layerMatches(s: PlanSelector | null, layer: number, v: DetectorVerdicts): boolean {
  if (!s || s.kind === "all") return true;
  if (s.kind === "indices") return inIndices(s.ranges, layer);
  const verdict = v.layers.get(detectorKey(s.detector));
  if (!verdict) throw new Error(`detector ${s.detector.name} was not run`);
  return verdict[layer];
}

function headMatches(
  s: PlanSelector | null,
  layer: number,
  head: number,
  v: DetectorVerdicts,
): boolean {
  if (!s || s.kind === "all") return true;
  if (s.kind === "indices") return inIndices(s.ranges, head);
  const verdict = v.heads.get(detectorKey(s.detector));
  if (!verdict) throw new Error(`detector ${s.detector.name} was not run`);
  return verdict[layer][head];
}

/**
 * The assignment of every (layer, KV head): `[layer][kvHead]`. Layers with a window in
 * `layerWindows` (Gemma 3's sliding layers, `Gemma3Details.layerWindows`, which the model itself
 * bounds) take no rule and keep their cache (kvpress does the same for its multimodal Gemma 3
 * class; docs/kvpress.md, difference 13).
 */
export function resolvePlan(
  plan: Plan,
  numLayers: number,
  numKvHeads: number,
  verdicts: DetectorVerdicts,
  layerWindows: readonly (number | null)[] = [],
): HeadAssignment[][] {
  const out: HeadAssignment[][] = [];
  for (let l = 0; l < numLayers; l++) {
    const row: HeadAssignment[] = [];
    for (let h = 0; h < numKvHeads; h++) {
      const r = layerWindows[l] ? -1 : plan.rules.findIndex((rule) =>
        rule.isElse ||
        (layerMatches(rule.layers, l, verdicts) && headMatches(rule.heads, l, h, verdicts))
      );
      row.push(
        r < 0 ? { rule: null, pipeline: [] } : { rule: r, pipeline: plan.rules[r].pipeline },
      );
    }
    out.push(row);
  }
  return out;
}
