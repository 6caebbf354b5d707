/**
 * Which policies the runtime can execute: every built-in press and detector, and plugin presses
 * and detectors that bring their runtime part (`select`, `classify`).
 *
 * @module
 */

import type { Plan } from "../plan/plan.ts";
import { BUILTIN_PLUGINS } from "../plugins/builtins.ts";
import type { PluginRegistry } from "../plugins/registry.ts";

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
