/**
 * A plan resolved on a model without a prompt: which rule every (layer, KV head) takes when the
 * plan's detectors depend only on the model (RazorAttention's `retrieval` heads, from the model's
 * cached probe profile). `export --to kvpress --model M` embeds this table, so the kvpress bridge
 * runs `heads retrieval -> full; else -> ...` with exactly the heads kvpolicy would pick.
 * Prompt-dependent detectors (`lazy`, `duo`) cannot be resolved ahead of a prompt.
 *
 * @module
 */

import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { runDetectors } from "./detectors.ts";
import type { Engine } from "./engine.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import type { PrefillState } from "./generationTypes.ts";
import { resolvePlan } from "./planResolver.ts";
import { engineSources } from "./retrievalProfile.ts";

/** `[layer][kvHead]`: the index of the rule in `plan.rules`, or null (no rule: the full cache). */
export async function assignmentsWithoutPrompt(
  engine: Engine,
  plan: Plan,
  registry: PluginRegistry,
): Promise<(number | null)[][]> {
  const perPrompt = plan.detectors.filter((d) => d.name !== "retrieval");
  if (perPrompt.length) {
    throw new UnsupportedPolicyError(
      `the ${perPrompt.map((d) => `'${d.name}'`).join(", ")} detector decides per prompt; ` +
        "only per-model detectors (retrieval) can be resolved without one",
    );
  }
  const c = engine.config;
  const retrieval = plan.detectors.length
    ? await engineSources(engine).retrievalScores()
    : undefined;
  const noPrompt = {} as PrefillState; // retrieval reads the model's profile, not the prompt
  const { verdicts } = await runDetectors(plan, c, engine.ctx, registry, retrieval, noPrompt);
  const windows = c.gemma3?.layerWindows;
  return resolvePlan(plan, c.numLayers, c.numKvHeads, verdicts, windows).map((row) =>
    row.map((a) => a.rule)
  );
}
