/**
 * The compiled plan: plain, JSON/YAML-serialisable data the runtime executes. It holds the
 * ordered rules with fully typed, defaulted, range-checked parameters, the detectors they need and
 * a hash of the source.
 *
 * @module
 */

import type { ParamValue, PressRole } from "../plugins/schema.ts";

/** Identifies the plan format. */
export const PLAN_FORMAT = "kvpolicy-plan/1";

/** A plugin invocation with every parameter present (defaults filled in). */
export interface PlanCall {
  /** Plugin name. */
  name: string;
  /** Parameter values by name, in schema order. `null` means "auto" (decided at run time). */
  params: Record<string, ParamValue>;
}

/** A press in a pipeline, with its role. */
export interface PlanPress extends PlanCall {
  /** select / augment / store. */
  role: PressRole;
  /** Acts once after prefill, or keeps the cache bounded while decoding. */
  when: "prefill" | "bounded";
}

/** What a rule picks among layers or heads. */
export type PlanSelector =
  | { kind: "all" }
  | { kind: "indices"; ranges: [number, number | null][] }
  | { kind: "detector"; detector: PlanCall };

/** One rule, first match wins. */
export interface PlanRule {
  /** 1-based source line, for explanations. */
  line: number;
  /** The rule as canonically written. */
  text: string;
  /** True for `else` (matches every layer and head). */
  isElse: boolean;
  /** Layer selector, or `null` for any layer. */
  layers: PlanSelector | null;
  /** KV-head selector, or `null` for any head. */
  heads: PlanSelector | null;
  /** The presses applied, in order. */
  pipeline: PlanPress[];
}

/** A compiled policy. */
export interface Plan {
  /** Always {@link PLAN_FORMAT}. */
  format: typeof PLAN_FORMAT;
  /** `policy "name"`, or `null`. */
  name: string | null;
  /** `sha256:` + hex digest of the policy source text. */
  sourceHash: string;
  /** Plugin modules named by `use` (recorded; loading needs `--allow-plugins`). */
  uses: string[];
  /** Distinct detector invocations the rules need, in order of first use. */
  detectors: PlanCall[];
  /** The rules in order. */
  rules: PlanRule[];
  /** What heads matched by no rule get: always the full cache. */
  unmatched: "full";
}
