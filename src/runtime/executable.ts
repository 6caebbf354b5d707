/**
 * Which policies the runtime can execute: every built-in press and detector, plugin presses and
 * detectors that bring their runtime part (`select`, `classify`), and the pipelines it can combine.
 *
 * @module
 */

import type { Plan, PlanPress } from "../plan/plan.ts";
import { BUILTIN_PLUGINS } from "../plugins/builtins.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { quantWithBounded } from "./quantLayer.ts";

/** Raised for a policy the runtime cannot execute (a user-facing error). */
export class UnsupportedPolicyError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** Names of the built-in presses and detectors (all executable). */
export const BUILTIN_NAMES: ReadonlySet<string> = new Set(BUILTIN_PLUGINS.map((p) => p.name));

/** Throws {@link UnsupportedPolicyError} for a plugin without its runtime part. */
export function checkExecutable(plan: Plan, registry?: PluginRegistry): void {
  for (const rule of plan.rules) {
    for (const press of rule.pipeline) {
      const schema = registry?.press(press.name);
      const runs = press.role === "rescore"
        ? schema?.rescore
        : schema?.select && (!rule.pipeline.some((p) => p.role === "rescore") || schema.score);
      if (BUILTIN_NAMES.has(press.name) || runs) continue;
      const what = press.role === "rescore" ? "rescore()" : schema?.select ? "score()" : "select()";
      throw new UnsupportedPolicyError(
        `press '${press.name}' (line ${rule.line}) has no runtime implementation: a plugin press must define ${what}`,
      );
    }
  }
  for (const d of plan.detectors) {
    if (BUILTIN_NAMES.has(d.name) || registry?.detector(d.name)?.classify) continue;
    throw new UnsupportedPolicyError(
      `detector '${d.name}' has no runtime implementation: a plugin detector must define classify()`,
    );
  }
}

/**
 * Throws {@link UnsupportedPolicyError} for pipelines the runtime cannot combine yet: `quant` with
 * a press that evicts while decoding (`evicts`), and `compensate` with `quant` or `h2o`.
 */
export function checkCombinations(plan: Plan, evicts: (p: PlanPress) => boolean): void {
  for (const rule of plan.rules) {
    const bounded = rule.pipeline.find(evicts);
    if (bounded && rule.pipeline.some((p) => p.name === "quant")) {
      throw new UnsupportedPolicyError(quantWithBounded(`line ${rule.line}`, bounded.name));
    }
    const names = new Set(rule.pipeline.map((p) => p.name));
    if (names.has("compensate") && (names.has("quant") || names.has("h2o"))) {
      throw new UnsupportedPolicyError(
        `line ${rule.line}: 'compensate' cannot be combined with '${
          names.has("quant") ? "quant" : "h2o"
        }' yet (the compensation token is a full-precision row fixed at prefill); use it ` +
          `with window, snap, pyramid, adakv, knorm or random`,
      );
    }
  }
}
