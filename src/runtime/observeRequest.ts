/**
 * What the engine must record during a plan's prefill so that its presses and detectors can score
 * afterwards: the last prompt queries' attention (SnapKV's observation window, SimLayerKV's
 * `queries`, a plugin detector's last query), the first decoding step (`lazy(at=decode)`),
 * H2O's accumulated attention column sums, and the query statistics (Expected Attention,
 * DuoAttention's on-the-fly scores).
 *
 * @module
 */

import type { Plan, PlanPress } from "../plan/plan.ts";
import type { PressSchema } from "../plugins/schema.ts";
import { BUILTIN_NAMES, UnsupportedPolicyError } from "./executable.ts";
import type { ObserveRequest } from "./generationTypes.ts";

/**
 * The attention `plan` needs recorded over a prompt prefilled in one piece (a chunked prefill
 * keeps each chunk's queries itself and records nothing prompt-wide). Throws when the rules ask
 * for query statistics with different sinks (they are recorded once per prompt).
 */
export function planObservations(
  plan: Plan,
  press: (p: PlanPress) => PressSchema,
): ObserveRequest {
  let promptWindow = 0;
  let firstStep = false;
  for (const rule of plan.rules) {
    for (const p of rule.pipeline) {
      const w = press(p).needs?.observationWindow?.(p.params) ?? 0;
      promptWindow = Math.max(promptWindow, w);
    }
  }
  for (const d of plan.detectors) {
    if (!BUILTIN_NAMES.has(d.name)) promptWindow = Math.max(promptWindow, 1);
    if (d.name === "lazy") {
      // at=decode measures the first decoding step (the last prompt query is the fallback when
      // fewer than two tokens are generated); at=prefill the last `queries` prompt queries.
      if (d.params.at === "decode") firstStep = true;
      const rows = d.params.at === "prefill" ? d.params.queries as number : 1;
      promptWindow = Math.max(promptWindow, rows);
    }
  }
  const columnSums = plan.rules.some((r) => r.pipeline.some((p) => p.name === "h2o"));
  const sinks = new Set(
    plan.rules.flatMap((r) =>
      r.pipeline.flatMap((p) => {
        const want = press(p).needs?.queryStatistics?.(p.params);
        return want ? [want.sink] : [];
      })
    ),
  );
  // DuoAttention's on-the-fly scores average every prompt query.
  if (plan.detectors.some((d) => d.name === "duo")) sinks.add(0);
  if (sinks.size > 1) {
    throw new UnsupportedPolicyError(
      `the query statistics are recorded once per prompt: use one sink for every rule (${
        [...sinks].join(", ")
      })`,
    );
  }
  const queryStatistics = sinks.size ? { sink: [...sinks][0] } : undefined;
  return { promptWindow, firstStep, columnSums, queryStatistics };
}
